"""Subscribers: double opt-in, signed links, notification of incident updates.

Nothing here tells a visitor whether an address is subscribed: a request for
a new, pending or confirmed address answers the same and sends at most one
mail per ``STATUS_MAIL_INTERVAL_SECONDS``.
"""

import hashlib
import hmac
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import Outcome
from audit.services import audit_record
from status import api
from status.models import (
    Component,
    Delivery,
    IncidentUpdate,
    Subscriber,
    SubscriberKind,
)

CONFIRM_SALT = "status.subscribe.confirm"
UNSUBSCRIBE_SALT = "status.unsubscribe"
CONFIRM_MAX_AGE = 7 * 24 * 3600
NOTIFY_PER_HOUR = 20  # per subscriber: a storm of updates stops here
SIGNATURE_HEADER = "X-Kreo-Signature"
TIMESTAMP_HEADER = "X-Kreo-Timestamp"

LINK_INVALID = "This link is not valid or has expired. Subscribe again."
WEBHOOK_NOT_PUBLIC = "The webhook address must be a public https:// address."


class LinkInvalid(Exception):
    pass


def _token(subscriber: Subscriber, salt: str) -> str:
    return signing.dumps(
        {"s": subscriber.pk, "h": _fingerprint(subscriber)}, salt=salt, compress=True
    )


def _fingerprint(subscriber: Subscriber) -> str:
    """Ties a link to this very subscription (its secret), not just an id."""
    return hashlib.sha256(subscriber.secret.encode()).hexdigest()[:16]


def _from_token(token: str, salt: str, max_age: int | None) -> Subscriber:
    try:
        data = signing.loads(token, salt=salt, max_age=max_age)
        subscriber = Subscriber.objects.get(pk=data["s"])
    except (signing.BadSignature, Subscriber.DoesNotExist, KeyError, TypeError) as e:
        raise LinkInvalid(LINK_INVALID) from e
    if not hmac.compare_digest(str(data.get("h", "")), _fingerprint(subscriber)):
        raise LinkInvalid(LINK_INVALID)
    return subscriber


def confirm_url(subscriber: Subscriber) -> str:
    return api.public_link(f"subscribe/confirm/{_token(subscriber, CONFIRM_SALT)}/")


def unsubscribe_url(subscriber: Subscriber) -> str:
    return api.public_link(f"unsubscribe/{_token(subscriber, UNSUBSCRIBE_SALT)}/")


def webhook_public(url: str) -> bool:
    """True if ``url`` is https and every address of its host is public."""
    parts = urlsplit(url)
    if settings.STATUS_WEBHOOK_ALLOW_PRIVATE:
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    if parts.scheme != "https" or not parts.hostname:
        return False
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443)
    except OSError:
        return False
    return all(ipaddress.ip_address(info[4][0]).is_global for info in infos)


def subscription_request(
    *, email: str, url: str = "", components: list[Component], request=None
) -> Subscriber:
    """Record a wish to subscribe and mail a confirmation link (at most one
    mail per address per interval, whatever the address's state)."""
    kind = SubscriberKind.WEBHOOK if url else SubscriberKind.EMAIL
    email = email.strip().lower()
    now = timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                subscriber, _ = Subscriber.objects.get_or_create(
                    kind=kind, email=email, url=url
                )
        except IntegrityError:  # two requests at once: the other one made it
            subscriber = Subscriber.objects.get(kind=kind, email=email, url=url)
        subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
        if subscriber.confirmed_at is None:
            subscriber.components.set(components)
        interval = timedelta(seconds=settings.STATUS_MAIL_INTERVAL_SECONDS)
        due = subscriber.mailed_at is None or subscriber.mailed_at < now - interval
        if due:
            subscriber.mailed_at = now
            subscriber.save(update_fields=["mailed_at"])
            from status.tasks import confirmation_send

            pk = subscriber.pk
            transaction.on_commit(lambda: confirmation_send.delay(subscriber_id=pk))
        audit_record(
            event_type="status.subscription.requested",
            request=request,
            actor_label=email,
            target_type="status.subscriber",
            target_id=str(subscriber.pk),
            details={"kind": kind, "mailed": due},
        )
    return subscriber


def confirmation_mail(*, subscriber_id: int) -> bool:
    """The double opt-in mail: a link to confirm, or, once confirmed, the way out."""
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None:
        return False
    what = subscriber.url or "incidents on the Kreo status page"
    if subscriber.confirmed_at is None:
        subject = "Confirm your subscription to Kreo status"
        body = (
            f"Someone asked to send updates about {what} to this address.\n\n"
            f"To confirm, open:\n{confirm_url(subscriber)}\n\n"
            "If it was not you, ignore this mail: nothing will be sent."
        )
    else:
        subject = "You are subscribed to Kreo status"
        body = (
            f"This address already receives updates about {what}.\n\n"
            f"To stop them, open:\n{unsubscribe_url(subscriber)}\n"
        )
    _send(subscriber, subject, body)
    return True


def _send(subscriber: Subscriber, subject: str, body: str) -> None:
    link = unsubscribe_url(subscriber)
    EmailMessage(
        subject=subject,
        body=body,
        to=[subscriber.email],
        headers={
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    ).send()


def subscription_confirm(*, token: str, request=None) -> Subscriber:
    subscriber = _from_token(token, CONFIRM_SALT, CONFIRM_MAX_AGE)
    if subscriber.confirmed_at is None:
        subscriber.confirmed_at = timezone.now()
        subscriber.save(update_fields=["confirmed_at"])
        audit_record(
            event_type="status.subscription.confirmed",
            request=request,
            actor_label=subscriber.email,
            target_type="status.subscriber",
            target_id=str(subscriber.pk),
            details={"kind": subscriber.kind},
        )
    return subscriber


def subscriber_for_confirm(*, token: str) -> Subscriber:
    return _from_token(token, CONFIRM_SALT, CONFIRM_MAX_AGE)


def subscriber_for_unsubscribe(*, token: str) -> Subscriber:
    return _from_token(token, UNSUBSCRIBE_SALT, None)


def subscription_cancel(*, token: str, request=None) -> None:
    """One-click unsubscribe: the signed link is the only credential."""
    subscriber = _from_token(token, UNSUBSCRIBE_SALT, None)
    audit_record(
        event_type="status.subscription.cancelled",
        request=request,
        actor_label=subscriber.email,
        target_type="status.subscriber",
        target_id=str(subscriber.pk),
        details={"kind": subscriber.kind},
    )
    subscriber.delete()


def _recipients(update: IncidentUpdate):
    affected = set(update.incident.components.values_list("pk", flat=True))
    for subscriber in Subscriber.objects.filter(
        confirmed_at__isnull=False
    ).prefetch_related("components"):
        chosen = {c.pk for c in subscriber.components.all()}
        if not chosen or not affected or chosen & affected:
            yield subscriber


def update_notify(*, update_id: int) -> int:
    """Send ``update`` to each matching subscriber once; returns how many sent.

    A delivery row is claimed before sending (unique per subscriber and
    update), so a retried or duplicated task never sends twice.
    """
    update = IncidentUpdate.objects.select_related("incident").get(pk=update_id)
    sent = 0
    for subscriber in _recipients(update):
        try:
            with transaction.atomic():
                delivery = Delivery.objects.create(subscriber=subscriber, update=update)
        except IntegrityError:
            continue  # claimed before: never twice
        hour_ago = timezone.now() - timedelta(hours=1)
        recent = Delivery.objects.filter(
            subscriber=subscriber, sent_at__gte=hour_ago
        ).count()
        if recent >= NOTIFY_PER_HOUR:
            delivery.error = "rate limited"
        else:
            try:
                _deliver(subscriber, update)
                delivery.sent_at = timezone.now()
                sent += 1
            except OSError as exc:
                delivery.error = f"{type(exc).__name__}: {exc}"[:200]
        delivery.save(update_fields=["sent_at", "error"])
    IncidentUpdate.objects.filter(pk=update.pk).update(notified_at=timezone.now())
    return sent


def _deliver(subscriber: Subscriber, update: IncidentUpdate) -> None:
    incident = update.incident
    if subscriber.kind == SubscriberKind.EMAIL:
        body = (
            f"{incident.title}\n"
            f"{update.get_status_display()} - "
            f"{update.created_at:%Y-%m-%d %H:%M} UTC\n\n{update.body}\n\n"
            f"Details: {api.public_link(incident.get_absolute_url())}\n"
            f"Unsubscribe: {unsubscribe_url(subscriber)}\n"
        )
        _send(subscriber, f"[Kreo status] {incident.title}", body)
        return
    webhook_send(subscriber, update)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect could lead anywhere, a private address too


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over ``timestamp.body``, hex: what a receiver recomputes."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def webhook_send(subscriber: Subscriber, update: IncidentUpdate) -> None:
    if not webhook_public(subscriber.url):
        raise OSError(WEBHOOK_NOT_PUBLIC)
    page = api.page()
    body = json.dumps(
        {
            "meta": {"unsubscribe": unsubscribe_url(subscriber)},
            "page": {
                "id": page["id"],
                "status_indicator": api.selectors.overall()["indicator"],
            },
            "incident": api.incident(update.incident, page["id"]),
        }
    ).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(  # noqa: S310 - checked public above
        subscriber.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "kreo-status-webhook",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(subscriber.secret, timestamp, body),
        },
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(
            request, timeout=settings.STATUS_WEBHOOK_TIMEOUT_SECONDS
        ) as response:
            if response.status >= 300:
                raise OSError(f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code}") from exc
    except ValueError as exc:
        raise OSError(str(exc)) from exc


def limited(*, request, scope: str, email: str | None = None) -> int:
    """Count one attempt at ``scope`` per client IP or, given ``email``, per
    address (django-ratelimit on the shared cache, as accounts.limits); the
    seconds to wait, 0 if allowed."""
    from django_ratelimit.core import get_usage

    from kreo.net import client_ip

    keys = [] if email is not None else [("ip", client_ip(request))]
    if email is not None:
        keys.append(("account", hashlib.sha256(email.lower().encode()).hexdigest()))
    wait = 0
    for kind, value in keys:
        rate = settings.STATUS_RATES.get(f"{scope}-{kind}")
        if rate is None:
            continue
        usage = get_usage(
            request,
            group=f"status.{scope}-{kind}",
            key=lambda group, req, value=value: value,
            rate=rate,
            increment=True,
        )
        if usage and usage["should_limit"]:
            wait = max(wait, usage["time_left"], 1)
    if wait:
        audit_record(
            event_type="status.ratelimit.hit",
            request=request,
            outcome=Outcome.DENIED,
            error_code="rate_limited",
            details={"scope": scope, "retry_after": wait},
        )
    return wait

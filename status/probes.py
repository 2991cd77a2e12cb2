"""What each component is, and how it is probed.

HTTP probes ask our own endpoints as a client would (``STATUS_PROBE_BASE_URL``),
with a short timeout: a timeout is a failure, never an error of the task.
The other checks use only Django's public interfaces (caches, storages, mail
connection) and the backups app's selectors, never another app's internals.
"""

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from status.models import ProbeResult

# slug -> (name, description, position); the six components of the page.
COMPONENTS = {
    "web": ("Web app", "Pages of the application", 1),
    "api": ("API", "The REST API under /api/", 2),
    "signin": ("Sign-in", "Password and single sign-on", 3),
    "storage": ("File storage", "Project files", 4),
    "backups": ("Backups", "Scheduled 3-2-1 backups", 5),
    "email": ("Email", "Outgoing mail", 6),
}


@dataclass
class Outcome:
    result: str
    latency_ms: int
    detail: str


def _http(path: str, expect: tuple[int, ...]) -> tuple[bool, str]:
    url = settings.STATUS_PROBE_BASE_URL.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        return False, f"GET {path}: STATUS_PROBE_BASE_URL is not an http(s) URL"
    request = urllib.request.Request(  # noqa: S310 - our own configured base URL
        url, headers={"User-Agent": "kreo-status-probe", "Accept": "*/*"}
    )
    try:
        with urllib.request.urlopen(  # noqa: S310  # nosec B310 - http(s) only
            request, timeout=settings.STATUS_PROBE_TIMEOUT_SECONDS
        ) as response:
            code = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
        return False, f"GET {path}: {type(exc).__name__}"
    if code not in expect:
        return False, f"GET {path}: HTTP {code}"
    return True, ""


def _cache() -> tuple[bool, str]:
    from django.core.cache import caches

    try:
        cache = caches[settings.RATELIMIT_USE_CACHE]
        cache.set("status-probe", "1", 60)
        if cache.get("status-probe") != "1":
            return False, "cache: value not read back"
    except Exception as exc:  # noqa: BLE001 - any cache failure is an outage
        return False, f"cache: {type(exc).__name__}"
    return True, ""


def _storage() -> tuple[bool, str]:
    from django.core.files.storage import default_storage

    try:
        default_storage.exists("status-probe/none")
    except Exception as exc:  # noqa: BLE001 - any storage failure is an outage
        return False, f"storage: {type(exc).__name__}"
    return True, ""


def _backups() -> tuple[bool, str]:
    from django.utils import timezone

    from backups.selectors import backup_set_latest

    latest = backup_set_latest(good_only=True)
    if latest is None:
        return False, "backups: no good backup set yet"
    age = (timezone.now() - latest.created_at).total_seconds()
    if age > 2 * settings.BACKUP_INTERVAL_SECONDS:
        return False, "backups: the last good set is overdue"
    return True, ""


def _email() -> tuple[bool, str]:
    from django.core.mail import get_connection

    try:
        connection = get_connection(timeout=settings.STATUS_PROBE_TIMEOUT_SECONDS)
        connection.open()
        connection.close()
    except Exception as exc:  # noqa: BLE001 - refused, timed out, TLS, auth
        return False, f"mail relay: {type(exc).__name__}"
    return True, ""


def checks() -> dict[str, list[Callable[[], tuple[bool, str]]]]:
    """slug -> the checks whose failures put the component out."""
    return {
        "web": [lambda: _http("/healthz", (200,)), lambda: _http("/readyz", (200,))],
        "api": [lambda: _http("/api/projects/", (200, 401, 403))],
        "signin": [lambda: _http("/accounts/login/", (200,)), _cache],
        "storage": [_storage],
        "backups": [_backups],
        "email": [_email],
    }


def run(probe: list[Callable[[], tuple[bool, str]]]) -> Outcome:
    """Run one component's checks: fail on the first failure, slow past the
    threshold."""
    started = time.monotonic()
    for check in probe:
        ok, detail = check()
        if not ok:
            elapsed = int((time.monotonic() - started) * 1000)
            return Outcome(ProbeResult.FAIL, elapsed, detail[:200])
    elapsed = int((time.monotonic() - started) * 1000)
    if elapsed > settings.STATUS_PROBE_SLOW_MS:
        return Outcome(ProbeResult.SLOW, elapsed, f"answered in {elapsed} ms")
    return Outcome(ProbeResult.OK, elapsed, "")

"""Traffic filtering: the IP deny list and the ``/admin/`` allow list, held
in each process and checked before any database work.

The entries live in ``monitoring.models.IPRule``. Each process keeps them in
a ``Table`` (networks grouped by prefix length, so a check is one dict
lookup per prefix length in use) and, at most every
``MONITORING_IPFILTER_REFRESH_SECONDS``, reads one version key in the shared
cache; every change writes a new version after its commit, so a change made
on one instance applies on all of them within that interval. A request
between refreshes touches neither the cache nor the database; the database
is read only when the version changed. Expiry is checked per request against
the clock, so a temporary block ends by itself on time.

A refused request costs no database work either: it is counted in
``/metrics`` and in a per-window counter in the shared cache, which the
``ip_block_summary`` task turns into one audit event per entry and window
(a flood writes a summary, not a row per request).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from kreo.cache import CacheUnavailable
from kreo.net import client_ip
from monitoring import metrics

logger = logging.getLogger(__name__)

VERSION_KEY = "monitoring:ipfilter:version"
COUNT_KEY = "monitoring:ipfilter:blocked:{entry}:{window}"
FIRST_IP_KEY = "monitoring:ipfilter:first:{entry}:{window}"
ADMIN_ENTRY = "admin"  # counter name of refusals by the /admin/ allow list
ADMIN_PREFIX = "/admin/"
# Liveness answers from the table as it is (no cache or database read, even
# in a fresh process): a pod is not restarted because the database is out.
PROBE_PATHS = frozenset({"/healthz"})
# After the entries could not be read, the next try waits this long (a
# database that is out is not asked again by every request).
LOAD_RETRY_SECONDS = 30.0

# Texts users and staff see (tests assert them).
BLOCKED_TEXT = "Access from your network address is blocked.\n"
ADMIN_BLOCKED_TEXT = "The admin is not reachable from your network address.\n"
NETWORK_MALFORMED = (
    "“{value}” is not an IP address or CIDR range "
    "(for example 203.0.113.0/24 or 2001:db8::/48)."
)
NETWORK_HOST_BITS = (
    "“{value}” has address bits set past its /{prefix} prefix: did you mean {network}?"
)
NETWORK_EVERYTHING = "A deny entry cannot cover every address ({network})."

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkError(ValueError):
    pass


def parse_network(value: str, *, deny: bool = False) -> Network:
    """``value`` as a network: an address (a /32 or /128) or a CIDR range.

    A range with host bits set (``10.0.0.1/8``) is refused rather than
    silently widened: whoever typed it meant something else.
    """
    text = (value or "").strip()
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise NetworkError(NETWORK_MALFORMED.format(value=text)) from None
    try:
        ipaddress.ip_network(text)  # strict: no bits set past the prefix
    except ValueError:
        raise NetworkError(
            NETWORK_HOST_BITS.format(
                value=text, prefix=network.prefixlen, network=network
            )
        ) from None
    if deny and network.prefixlen == 0:
        raise NetworkError(NETWORK_EVERYTHING.format(network=network))
    return network


@functools.lru_cache(maxsize=4096)  # the same clients ask again and again
def _address(value: str) -> Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


# (ip version, prefix length) -> {network as int: (expires, entry id)}
Groups = dict[tuple[int, int], dict[int, tuple[float, int]]]


def _group(entries: Iterable[tuple[int, Network, float]]) -> Groups:
    groups: Groups = {}
    for entry_id, network, expires in entries:
        nets = groups.setdefault((network.version, network.prefixlen), {})
        key = int(network.network_address) >> (
            network.max_prefixlen - network.prefixlen
        )
        known = nets.get(key)
        if known is None or known[0] < expires:
            nets[key] = (expires, entry_id)
    return groups


def _match(groups: Groups, address: Address, now: float) -> int | None:
    candidates = [address]
    if address.version == 6 and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)  # ::ffff:203.0.113.7
    for candidate in candidates:
        number, bits = int(candidate), candidate.max_prefixlen
        for (version, prefix), nets in groups.items():
            if version != candidate.version:
                continue
            found = nets.get(number >> (bits - prefix))
            if found is not None and found[0] > now:
                return found[1]
    return None


@dataclass(frozen=True)
class Table:
    """One process's copy of the active entries, as of ``version``."""

    version: str | None
    deny: Groups = field(default_factory=dict)
    admin_allow: Groups = field(default_factory=dict)

    @classmethod
    def build(cls, version: str | None, rows: Iterable[tuple]) -> Table:
        """From ``(id, kind, network, expires_at)`` rows (see the selector)."""
        deny, allow = [], []
        for entry_id, kind, text, expires_at in rows:
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:  # validated on the way in; never fail a request
                logger.error("ip filter entry %s: bad network %r", entry_id, text)
                continue
            expires = _timestamp(expires_at)
            (deny if kind == "deny" else allow).append((entry_id, network, expires))
        return cls(version, _group(deny), _group(allow))

    def denied(self, address: Address, now: float | None = None) -> int | None:
        """The id of a deny entry covering ``address``, or None."""
        return _match(self.deny, address, time.time() if now is None else now)

    def admin_allowed(self, address: Address, now: float | None = None) -> bool:
        """Whether ``address`` may reach the admin: yes when no allow entry is
        in force, else only from inside one."""
        now = time.time() if now is None else now
        in_force = (
            e > now for nets in self.admin_allow.values() for e, _ in nets.values()
        )
        if not any(in_force):
            return True
        return self.in_admin_allow(address, now)

    def in_admin_allow(self, address: Address, now: float | None = None) -> bool:
        """Whether an allow entry in force covers ``address``."""
        now = time.time() if now is None else now
        return _match(self.admin_allow, address, now) is not None


def _timestamp(moment: datetime | None) -> float:
    return float("inf") if moment is None else moment.timestamp()


class Filter:
    """The process-local table and its refresh from the shared version key."""

    def __init__(self):
        self._table: Table | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget the table: the next request reads the version and entries."""
        with self._lock:
            self._table, self._checked = None, 0.0

    def table(self) -> Table:
        table = self._table
        now = time.monotonic()
        refresh = settings.MONITORING_IPFILTER_REFRESH_SECONDS
        if table is not None and now - self._checked < refresh:
            return table
        with self._lock:
            if self._table is not None and now - self._checked < refresh:
                return self._table
            self._checked = now
            version = _current_version()
            if self._table is None or version is None or self._table.version != version:
                loaded = _load(version)
                if loaded is None:  # database out: keep what was known, wait
                    self._checked = now + LOAD_RETRY_SECONDS
                    loaded = self._table or Table(None)
                self._table = loaded
            return self._table

    def current(self) -> Table | None:
        """The table as last read, without refreshing it (None before)."""
        return self._table


def _current_version() -> str | None:
    """The shared version, set to a fresh one when the cache lost it."""
    try:
        version = cache.get(VERSION_KEY)
        if version is None:
            cache.add(VERSION_KEY, uuid.uuid4().hex, timeout=None)
            version = cache.get(VERSION_KEY)
        return version
    except CacheUnavailable:
        logger.warning("ip filter: shared cache unavailable; list not refreshed")
        return None


def _load(version: str | None) -> Table | None:
    from monitoring import selectors

    try:
        return Table.build(version, selectors.ip_rules_in_force())
    except DatabaseError:
        logger.warning("ip filter: entries not readable", exc_info=True)
        return None


FILTER = Filter()


def changed() -> None:
    """Tell every process that the entries changed (call after commit)."""
    try:
        cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except CacheUnavailable:
        logger.error("ip filter: change not announced (shared cache unavailable)")
    FILTER.reset()  # this process at once, whatever the cache did


def window_of(moment: float) -> int:
    return int(moment // settings.MONITORING_IPFILTER_SUMMARY_SECONDS)


def _count(entry: str, ip: str) -> None:
    """Add one refusal to this window's counter of ``entry`` (cache only)."""
    window = window_of(time.time())
    ttl = settings.MONITORING_IPFILTER_SUMMARY_SECONDS * 10
    key = COUNT_KEY.format(entry=entry, window=window)
    try:
        if cache.add(key, 1, timeout=ttl):
            cache.set(FIRST_IP_KEY.format(entry=entry, window=window), ip, ttl)
        else:
            cache.incr(key)
    except (CacheUnavailable, ValueError):
        pass  # the refusal stands; only its count is lost


def refusal(request: HttpRequest) -> HttpResponse | None:
    """A 403 for a request from a denied address (or from outside the admin
    allow list on ``/admin/``), else None."""
    ip = client_ip(request)
    address = _address(ip)
    if address is None:
        return None
    if request.path_info in PROBE_PATHS:
        table = FILTER.current()  # the liveness probe never waits on a read
        if table is None:
            return None
    else:
        table = FILTER.table()
    entry = table.denied(address)
    if entry is not None:
        metrics.IP_BLOCKED.labels(list="deny").inc()
        _count(str(entry), ip)
        return _forbidden(BLOCKED_TEXT)
    if request.path_info.startswith(ADMIN_PREFIX) and not table.admin_allowed(address):
        metrics.IP_BLOCKED.labels(list="admin_allow").inc()
        _count(ADMIN_ENTRY, ip)
        return _forbidden(ADMIN_BLOCKED_TEXT)
    return None


def _forbidden(text: str) -> HttpResponse:
    response = HttpResponse(text, status=403, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response

"""A slow-client attack on a real server, and a probe of ordinary requests.

Used by kreo/tests/test_slow_clients.py and bench/bench_slow_clients.py. The
attack is the one from issue #18: connections that send an upload's headers
(``Content-Length: 204800``) and then one byte of body every few seconds.
Traffic goes only to the loopback address it is given.
"""

from __future__ import annotations

import http.client
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field

UPLOAD_LENGTH = 204800
CSRF_COOKIE = "A" * 32


class SlowUploads:
    """``count`` connections trickling an upload body to ``path``.

    Runs in one background thread until ``stop()``; reconnects a connection
    the server closed, as an attacker keeping the site down would.
    """

    def __init__(self, host: str, port: int, count: int, *, path: str, interval: float):
        self.host, self.port, self.count = host, port, count
        self.path, self.interval = path, interval
        self.sockets: list[socket.socket | None] = [None] * count
        self.opened = 0
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _headers(self) -> bytes:
        return (
            f"POST {self.path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            # A well-formed CSRF cookie: without one Django refuses the POST
            # before reading its body; with one it reads the body for the
            # token, which is what the attack needs.
            f"Cookie: csrftoken={CSRF_COOKIE}\r\n"
            f"Content-Length: {UPLOAD_LENGTH}\r\n"
            "\r\n"
        ).encode()

    def _open(self, index: int) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=5)
            sock.sendall(self._headers())
        except OSError:
            self.sockets[index] = None
            return
        self.sockets[index] = sock
        self.opened += 1

    def start(self) -> SlowUploads:
        for index in range(self.count):
            self._open(index)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for index, sock in enumerate(self.sockets):
                if self._stop.is_set():
                    return
                if sock is None:
                    self._open(index)
                    continue
                try:
                    sock.sendall(b"a")
                except OSError:
                    self.closed_by_server += 1
                    sock.close()
                    self._open(index)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for sock in self.sockets:
            if sock is not None:
                sock.close()


@dataclass
class Probe:
    """Ordinary GETs, one after another, each timed (``timeout`` = failure).

    ``source`` is the loopback address the probe connects from, so a proxy's
    per-address limits can tell it from the attack's 127.0.0.1.
    """

    host: str
    port: int
    paths: tuple[str, ...]
    timeout: float = 5.0
    source: str = "127.0.0.1"
    samples: list[tuple[str, float, int]] = field(default_factory=list)

    def get(self, path: str) -> tuple[float, int]:
        started = time.perf_counter()
        connection = http.client.HTTPConnection(
            self.host, self.port, timeout=self.timeout, source_address=(self.source, 0)
        )
        try:
            connection.request("GET", path, headers={"Connection": "close"})
            response = connection.getresponse()
            response.read()
            status = response.status
        except OSError:
            status = 0
        finally:
            connection.close()
        return time.perf_counter() - started, status

    def run_for(self, seconds: float, pause: float = 0.2) -> Probe:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for path in self.paths:
                elapsed, status = self.get(path)
                self.samples.append((path, elapsed, status))
            time.sleep(pause)
        return self

    @property
    def latencies(self) -> list[float]:
        return [elapsed for _, elapsed, status in self.samples if status]

    @property
    def failures(self) -> list[tuple[str, float, int]]:
        return [s for s in self.samples if s[2] != 200]

    @property
    def worst(self) -> float:
        return max(elapsed for _, elapsed, _ in self.samples)

    def summary(self) -> dict:
        answered = sorted(self.latencies) or [self.timeout]
        return {
            "probes": len(self.samples),
            "failed": len(self.failures),
            "median_ms": round(statistics.median(answered) * 1000, 1),
            "p90_ms": round(
                answered[min(len(answered) - 1, int(len(answered) * 0.9))] * 1000, 1
            ),
            "max_ms": round(self.worst * 1000, 1),
        }

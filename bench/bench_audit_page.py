"""What request auditing costs a page: the same pages with AUDIT_ENABLED on and
off, over real HTTP against two real gunicorn servers sharing one database.

"Off" turns off the audit middleware (request events, correlation id,
django-auditlog's request context); events that services record themselves
(file.download) are written either way. Budget (DESIGN.md): at most 10% more
median latency.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import servers as bench

TITLE = "page latency with request auditing on vs off (median, loopback HTTP)"
BUDGET = 1.10


def run(options) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="kreo-bench-") as folder:
        var_dir = Path(folder)
        seed = bench.seed_site(var_dir)
        running: dict[str, bench.Server] = {}
        try:
            running["on"] = bench.start_server("on", var_dir, "bench.settings_full")
            running["off"] = bench.start_server(
                "off", var_dir, "bench.settings_full", AUDIT_ENABLED="false"
            )
            for server in running.values():
                bench.login(server, seed)
            if (
                "X-Correlation-ID"
                not in running["on"]
                .session.get(f"{running['on'].url}/projects/", timeout=10)
                .headers
            ):
                raise bench.BenchError("auditing is not on in the 'on' server")
            timings = bench.interleaved(running, bench.cases(seed), options.requests)
        finally:
            for server in running.values():
                server.stop()
    return [
        bench.ratio_row(case, by_stack, "on", "off", BUDGET)
        for case, by_stack in timings.items()
    ]

"""What the request limits cost: the same pages through the full stack with
the limits on and with them off (``KREO_LIMITS_ENABLED=false``), over real
HTTP against two gunicorn servers sharing one seeded site.

Budget (DESIGN.md): limits on vs off, median page latency <= 1.03. The rates
are raised so that every request is counted (one increment on the shared
rate-limit cache; a download also reads and adds to its byte budget) and
none is refused: this prices the counting, not a 429.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import servers as bench

TITLE = "request limits (and the IP filter and metrics) on vs off (median latency)"
BUDGET = 1.03
HIGH = {
    "KREO_RATE_PAGE": "100000000/minute",
    "KREO_RATE_DOWNLOAD": "100000000/hour",
    "KREO_RATE_DOWNLOAD_BYTES": f"{2**62}/hour",
}
# Issue #14's budget is for the protection as a whole: the limits, the IP
# filter and the request metrics, all on vs all off, in the same run.
PROTECTION = (
    "monitoring.middleware.IPFilterMiddleware",
    "monitoring.middleware.RequestMetricsMiddleware",
    "kreo.middleware.RequestLimitMiddleware",
)
STACKS = {
    "on": ("bench.settings_full", {**HIGH, "KREO_LIMITS_ENABLED": "true"}),
    "off": ("bench.settings_full", {**HIGH, "KREO_LIMITS_ENABLED": "false"}),
    "none": (
        "bench.settings_without",
        {
            **HIGH,
            "KREO_LIMITS_ENABLED": "false",
            "BENCH_WITHOUT": ",".join(PROTECTION),
        },
    ),
}


def run(options) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="kreo-bench-") as folder:
        var_dir = Path(folder)
        seed = bench.seed_site(var_dir)
        running: dict[str, bench.Server] = {}
        try:
            for name, (settings_module, env) in STACKS.items():
                running[name] = bench.start_server(
                    name, var_dir, settings_module, **env
                )
            for server in running.values():
                bench.login(server, seed)
            timings = bench.interleaved(running, bench.cases(seed), options.requests)
        finally:
            for server in running.values():
                server.stop()
    return [
        *(
            bench.ratio_row(f"{case}: limits", by_stack, "on", "off", BUDGET)
            for case, by_stack in timings.items()
        ),
        *(
            _as_off(
                bench.ratio_row(
                    f"{case}: limits, IP filter, metrics",
                    by_stack,
                    "on",
                    "none",
                    BUDGET,
                )
            )
            for case, by_stack in timings.items()
        ),
    ]


def _as_off(row: dict) -> dict:
    """The all-off row under the table's columns ("off" is all three off)."""
    return {key.replace("none", "off"): value for key, value in row.items()}

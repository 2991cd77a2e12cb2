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

TITLE = "request limits on vs off (median latency, loopback HTTP)"
BUDGET = 1.03
HIGH = {
    "KREO_RATE_PAGE": "100000000/minute",
    "KREO_RATE_DOWNLOAD": "100000000/hour",
    "KREO_RATE_DOWNLOAD_BYTES": f"{2**62}/hour",
}
STACKS = {
    "on": {**HIGH, "KREO_LIMITS_ENABLED": "true"},
    "off": {**HIGH, "KREO_LIMITS_ENABLED": "false"},
}


def run(options) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="kreo-bench-") as folder:
        var_dir = Path(folder)
        seed = bench.seed_site(var_dir)
        running: dict[str, bench.Server] = {}
        try:
            for name, env in STACKS.items():
                running[name] = bench.start_server(
                    name, var_dir, "bench.settings_full", **env
                )
            for server in running.values():
                bench.login(server, seed)
            timings = bench.interleaved(running, bench.cases(seed), options.requests)
        finally:
            for server in running.values():
                server.stop()
    return [
        bench.ratio_row(case, by_stack, "on", "off", BUDGET)
        for case, by_stack in timings.items()
    ]

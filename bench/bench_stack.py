"""What the middleware stack costs: the same pages through the full stack and
through a bare one, over real HTTP against two real gunicorn servers.

Budget (DESIGN.md): the security stack adds at most 10% to the median latency
of a typical page. Each row reports full/bare medians and PASS or OVER.

Both servers share one database seeded through the project's own services
(one user, 20 projects, a 1 MB file); see bench/servers.py. The full stack is
kreo.settings.local's MIDDLEWARE; the bare one keeps only Session,
Authentication and Messages (bench/settings_bare.py). Requests alternate
between the stacks in rounds so that machine noise hits both alike.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import requests

from bench import servers as bench

TITLE = "full middleware stack vs bare stack (median latency, loopback HTTP)"
BUDGET = 1.10
STACKS = {"full": "bench.settings_full", "bare": "bench.settings_bare"}


def _check_stacks_differ(running: dict[str, bench.Server]) -> None:
    """The comparison is only meaningful if the stacks really differ."""
    headers = {
        name: requests.get(f"{server.url}/healthz", timeout=5).headers
        for name, server in running.items()
    }
    if "X-Frame-Options" not in headers["full"]:
        raise bench.BenchError("full stack sends no X-Frame-Options: not full")
    if "X-Frame-Options" in headers["bare"]:
        raise bench.BenchError("bare stack sends X-Frame-Options: not bare")


def run(options) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="kreo-bench-") as folder:
        var_dir = Path(folder)
        seed = bench.seed_site(var_dir)
        running: dict[str, bench.Server] = {}
        try:
            for name, settings_module in STACKS.items():
                running[name] = bench.start_server(name, var_dir, settings_module)
            _check_stacks_differ(running)
            for server in running.values():
                bench.login(server, seed)
            timings = bench.interleaved(running, bench.cases(seed), options.requests)
        finally:
            for server in running.values():
                server.stop()
    return [
        bench.ratio_row(case, by_stack, "full", "bare", BUDGET)
        for case, by_stack in timings.items()
    ]

"""The price of each middleware: the project list through the full stack and
through the full stack minus that one middleware, interleaved per pair.

Where bench_stack says the stack as a whole is over budget, this says which
middleware the time goes to. Session, Authentication and Messages are left
out of the list: the pages do not work without them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from bench import servers as bench

TITLE = "median cost of each middleware on the project list page"
REQUIRED = {
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
}


def full_middleware(var_dir: Path) -> list[str]:
    """MIDDLEWARE of the full stack, as the servers load it."""
    code = "from django.conf import settings; import json, sys; " + (
        "json.dump(settings.MIDDLEWARE, sys.stdout)"
    )
    out = bench.run_command(
        [sys.executable, "-c", code],
        bench.environment(var_dir, "bench.settings_full"),
    )
    return json.loads(out)


def run(options) -> list[dict]:
    rounds = max(50, options.requests // 2)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kreo-bench-") as folder:
        var_dir = Path(folder)
        seed = bench.seed_site(var_dir)
        case, measured = next(iter(bench.cases(seed).items()))
        full = bench.start_server("full", var_dir, "bench.settings_full")
        try:
            bench.login(full, seed)
            for middleware in full_middleware(var_dir):
                if middleware in REQUIRED:
                    continue
                without = bench.start_server(
                    f"without {middleware}",
                    var_dir,
                    "bench.settings_without",
                    BENCH_WITHOUT=middleware,
                )
                try:
                    bench.login(without, seed)
                    timings = bench.interleaved(
                        {"full": full, "without": without}, {case: measured}, rounds
                    )[case]
                finally:
                    without.stop()
                with_it = bench.median_p90(timings["full"])[0]
                without_it = bench.median_p90(timings["without"])[0]
                rows.append(
                    {
                        "middleware": middleware,
                        "requests": rounds,
                        "full_median_ms": bench.ms(with_it),
                        "without_median_ms": bench.ms(without_it),
                        "cost_ms": bench.ms(with_it - without_it),
                        "cost_%": round(100 * (with_it / without_it - 1), 1),
                    }
                )
        finally:
            full.stop()
    return rows

"""Run the benchmarks: a table on stdout and JSON under bench/results/.

Usage: python bench/run.py [NAME ...] [--requests N] [--list]

Every module ``bench/bench_<name>.py`` is a benchmark. It defines
``run(options) -> list[dict]`` (one dict per table row, same keys in each) and
may define ``TITLE``. With names given, only those run. Timings are reported,
never judged by exit status: a benchmark over its budget says OVER in its
rows; the exit status is non-zero only when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PREFIX = "bench_"

sys.path.insert(0, str(ROOT))


def discover() -> dict[str, str]:
    """Benchmark name -> module name, for every bench/bench_*.py."""
    return {
        path.stem.removeprefix(PREFIX): f"bench.{path.stem}"
        for path in sorted(BENCH_DIR.glob(f"{PREFIX}*.py"))
    }


def _cell(value) -> str:
    if isinstance(value, float):
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def table(rows: list[dict]) -> str:
    """Rows as a plain text table, columns in the order of the first row."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    cells = [[_cell(row.get(column, "")) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[i]) for line in cells))
        for i, column in enumerate(columns)
    ]

    def line(values) -> str:
        return "  ".join(
            value.ljust(width) if i == 0 else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths, strict=True))
        )

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(columns), rule, *(line(values) for values in cells)])


def _commit() -> str:
    git = shutil.which("git")
    if git is None:
        return ""
    try:
        result = subprocess.run(  # noqa: S603 - git, fixed arguments
            [git, "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return result.stdout.strip()


def run_one(name: str, module_name: str, options: argparse.Namespace) -> bool:
    module = importlib.import_module(module_name)
    title = getattr(module, "TITLE", name)
    print(f"== {name}: {title}", flush=True)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    try:
        rows = module.run(options)
    except Exception:
        traceback.print_exc()
        print(f"== {name}: could not run", flush=True)
        return False
    seconds = time.perf_counter() - clock
    print(table(rows))
    print(f"({seconds:.1f}s)\n", flush=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    result = {
        "name": name,
        "title": title,
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
        "commit": _commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "options": vars(options),
        "rows": rows,
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"   written to {path.relative_to(ROOT)}\n", flush=True)
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default all)")
    parser.add_argument(
        "--requests",
        type=int,
        default=300,
        help="measured requests per case and stack (default 300)",
    )
    parser.add_argument("--list", action="store_true", help="list and exit")
    options = parser.parse_args(argv)
    found = discover()
    if options.list:
        print("\n".join(found))
        return 0
    unknown = sorted(set(options.names) - set(found))
    if unknown:
        parser.error(f"no such benchmark: {', '.join(unknown)} (have {list(found)})")
    if options.requests < 10:
        parser.error("--requests must be at least 10")
    chosen = options.names or list(found)
    options_for_modules = argparse.Namespace(requests=options.requests)
    failed = [
        name for name in chosen if not run_one(name, found[name], options_for_modules)
    ]
    if failed:
        print(f"benchmarks that could not run: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

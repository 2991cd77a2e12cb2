"""Benchmark settings: the full stack (kreo.settings.local) minus the
middleware named in BENCH_WITHOUT (dotted paths, comma-separated), to price
each middleware or a group of them.
"""

import os

from kreo.settings.local import *  # noqa: F403
from kreo.settings.local import MIDDLEWARE as _FULL

_WITHOUT = [name for name in os.environ["BENCH_WITHOUT"].split(",") if name]
for _name in _WITHOUT:
    if _name not in _FULL:
        raise RuntimeError(f"BENCH_WITHOUT: {_name} is not in MIDDLEWARE")
MIDDLEWARE = [name for name in _FULL if name not in _WITHOUT]

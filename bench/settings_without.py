"""Benchmark settings: the full stack (kreo.settings.local) minus the one
middleware named in BENCH_WITHOUT (its dotted path), to price each middleware.
"""

import os

from kreo.settings.local import *  # noqa: F403
from kreo.settings.local import MIDDLEWARE as _FULL

_WITHOUT = os.environ["BENCH_WITHOUT"]
if _WITHOUT not in _FULL:
    raise RuntimeError(f"BENCH_WITHOUT={_WITHOUT} is not in MIDDLEWARE")
MIDDLEWARE = [name for name in _FULL if name != _WITHOUT]

"""Benchmark baseline: the full stack (kreo.settings.local) storing project
files as they are, to price encryption end to end (bench_encryption.py).

Production settings pin KREO_FILE_ENCRYPTION on; nothing reads it from the
environment.
"""

from kreo.settings.local import *  # noqa: F403

KREO_FILE_ENCRYPTION = False

"""The control checks. Each reads through other apps' selectors or health
checks only, and returns an ``Outcome`` (see ``catalogue.py``).

Importing this package registers every control, in catalogue order.
"""

# Catalogue order is import order.
from compliance.checks import backup, trail  # noqa: F401, I001
from compliance.checks import access, data, ops  # noqa: F401, E402

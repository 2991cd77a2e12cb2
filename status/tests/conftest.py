"""Real parts for the status tests: the accounts SMTP server, components."""

import pytest

from accounts.tests.conftest import Inbox, mail_now, smtp  # noqa: F401 - fixtures
from status import services


@pytest.fixture
def components(db):
    """The six components, by slug."""
    return {c.slug: c for c in services.components_ensure()}


@pytest.fixture(autouse=True)
def _status_static_dir(settings, tmp_path):
    settings.STATUS_STATIC_DIR = tmp_path / "status-static"
    settings.STATUS_S3_BUCKET = ""


@pytest.fixture(autouse=True)
def _probes_judge_reachability_not_speed(settings):
    """A loaded CI machine answers slowly; only the tests of the slow rule
    (which feed samples, not timings) care about "slow"."""
    settings.STATUS_PROBE_SLOW_MS = 60_000

"""The accounts tests' real SMTP and siteverify servers, for invitation mail,
and their unreachable broker."""

from accounts.tests.conftest import mail_now, siteverify, smtp  # noqa: F401
from accounts.tests.test_cache_outage import broker_down  # noqa: F401

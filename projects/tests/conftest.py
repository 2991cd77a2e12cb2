"""The accounts tests' real SMTP and siteverify servers, for invitation mail."""

from accounts.tests.conftest import mail_now, siteverify, smtp  # noqa: F401

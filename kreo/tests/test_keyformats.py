"""Every key's format is checked at start and by `check --deploy`.

A malformed key (wrong length, wrong encoding, an age identity where the
recipient belongs, a keyring entry without its id...) stops production
settings with a one-line message naming the variable, and `check --deploy`
reports it as an error with an id naming the variable; the rules agree with
the code that uses each key, so nothing they accept fails later at run time.
"""

import base64
import os

import pytest
from django.core.checks import run_checks
from pyrage import x25519

from backups.crypto import BackupCryptoError, decode_key
from kreo import keyformats
from kreo.tests.test_settings import PRODUCTION_ENV, manage
from projects.keys import KeyError_, parse_keyring

B64_16 = base64.urlsafe_b64encode(os.urandom(16)).decode()
B64_31 = base64.urlsafe_b64encode(os.urandom(31)).decode()
STD_32 = base64.b64encode(bytes(range(32))).decode()
URLSAFE_32 = base64.urlsafe_b64encode(os.urandom(32)).decode()

MALFORMED = [
    # The case: backups rejected it only when the first backup ran.
    ("BACKUP_MANIFEST_KEY", "ci-backup-manifest-key-0123456789abcdef0123456789"),
    ("BACKUP_MANIFEST_KEY", B64_16),
    ("BACKUP_ENCRYPTION_KEY", B64_31),
    ("BACKUP_ENCRYPTION_KEY", "not base64 at all!"),
    ("BACKUP_AGE_RECIPIENT", "age1notarealrecipient"),
    ("BACKUP_AGE_RECIPIENT", str(x25519.Identity.generate())),  # the secret half
    ("BACKUP_AGE_RECIPIENT", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB"),
    ("KREO_KEYRING", "ci1:" + B64_16),
    ("KREO_KEYRING", STD_32),  # no id
    ("KREO_KEYRING", f"ci1:{STD_32},:{STD_32}"),
    ("KREO_ACTIVE_KEY_ID", "ci2"),  # not in the ring
    ("AUDIT_SIGNING_KEY", "short-secret"),
    ("AUDIT_ARCHIVE_KEY", "x" * 31),
    ("AUDIT_ARCHIVE_KEY", PRODUCTION_ENV["AUDIT_SIGNING_KEY"]),  # reused
    ("AUDIT_VERIFY_PUBLIC_KEY", base64.b64encode(b"not a key").decode()),
    ("AUDIT_VERIFY_PUBLIC_KEY", "%%%"),
    ("AUDIT_EVENT_KEY", "e1"),  # no secret
    ("AUDIT_EVENT_KEY", "e1:" + "x" * 31),  # short secret
    ("AUDIT_EVENT_KEY", "x" * 40),  # no id
    ("AUDIT_EVENT_KEY", f"e1:{'a' * 40},e1:{'b' * 40}"),  # an id twice
    ("AUDIT_EVENT_KEY", f"e 1:{'a' * 40}"),  # not an id
    ("DJANGO_SECRET_KEY", "x" * 60),  # one character repeated
    ("DJANGO_SECRET_KEY", "django-insecure-" + "a1b2c3d4e5" * 5),
]


@pytest.mark.parametrize(("variable", "value"), MALFORMED)
def test_production_refuses_to_start_with_a_malformed_key(variable, value):
    """One line naming the variable, exit status 1, no traceback."""
    done = manage("check", env={**PRODUCTION_ENV, variable: value})
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("kreo: production settings refuse to start: ")
    assert f"{variable} " in done.stderr
    assert value not in done.stderr or len(value) < 8  # secrets are not echoed
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("variable", "value"), MALFORMED)
def test_deploy_check_reports_a_malformed_key_naming_the_variable(
    settings, variable, value
):
    """`check --deploy` reports kreo.E1xx naming the variable (a settings
    module that skipped the start-up check is still caught)."""

    def setting(name):
        return keyformats.SETTING_NAMES.get(name, name)

    for name, good in PRODUCTION_ENV.items():
        if name in keyformats.IDS:
            setattr(settings, setting(name), good)
    setattr(settings, setting(variable), value)
    errors = [
        e
        for e in run_checks(include_deployment_checks=True)
        if e.id in keyformats.IDS.values()  # not the links' E13x
    ]
    assert [e.id for e in errors] == [keyformats.IDS[variable]]
    assert errors[0].msg.startswith(variable)


def test_ci_placeholders_and_fresh_keys_pass(settings):
    """The CI values, and keys made as .env.example says, raise nothing."""
    assert keyformats.problems(PRODUCTION_ENV) == []
    fresh = {
        "BACKUP_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "BACKUP_MANIFEST_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "BACKUP_AGE_RECIPIENT": str(x25519.Identity.generate().to_public()),
        "KREO_KEYRING": f"2026a:{STD_32},2025b:{URLSAFE_32.rstrip('=')}",
        "KREO_ACTIVE_KEY_ID": "2026a",
        "AUDIT_SIGNING_KEY": base64.b64encode(os.urandom(48)).decode(),
        "AUDIT_ARCHIVE_KEY": base64.b64encode(os.urandom(48)).decode(),
        "AUDIT_VERIFY_PUBLIC_KEY": base64.b64encode(os.urandom(32)).decode(),
        "AUDIT_EVENT_KEY": "2026b:"
        + base64.b64encode(os.urandom(48)).decode()
        + ",2026a:"
        + base64.b64encode(os.urandom(48)).decode(),
    }
    assert keyformats.problems(fresh) == []


CANDIDATES = [
    base64.urlsafe_b64encode(os.urandom(32)).decode(),
    base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
    STD_32,
    B64_16,
    B64_31,
    base64.urlsafe_b64encode(os.urandom(33)).decode(),
    "ci-backup-manifest-key-0123456789abcdef0123456789",
    "not base64 at all!",
    " " + STD_32 + " ",
]


@pytest.mark.parametrize("value", CANDIDATES)
def test_backup_key_rule_is_the_backups_rule(value):
    """What the start-up check accepts is exactly what backups can use."""
    try:
        decode_key(value, "BACKUP_MANIFEST_KEY")
        usable = True
    except BackupCryptoError:
        usable = False
    assert (keyformats.urlsafe_key(value) is not None) is usable


@pytest.mark.parametrize("value", CANDIDATES)
def test_keyring_rule_is_the_keyrings_rule(value):
    """What the start-up check accepts is exactly what projects.keys can use."""
    ring = f"k1:{value}"
    try:
        parse_keyring(ring)
        usable = True
    except KeyError_:
        usable = False
    assert (keyformats.keyring_ids(ring)[1] is None) is usable

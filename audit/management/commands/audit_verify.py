import base64
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.core.management.base import BaseCommand, CommandError

from audit import anchors, keys

PEM = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)
NEEDS_KEY = "--offline needs --public-key (the published key, or a file holding it)."
BAD_KEY = "--public-key: not an Ed25519 public key (base64 raw 32 bytes or PEM)."


def _published(value: str) -> str:
    """The base64 key from ``value``: the key itself, or a file holding it
    (base64, or PEM as ``audit_public_key`` prints it)."""
    path = Path(value)
    if value and path.is_file():
        value = path.read_text().strip()
    pem = PEM.search(value)
    if pem:
        key = load_pem_public_key(pem.group(0).encode())
        if not isinstance(key, Ed25519PublicKey):
            raise CommandError(BAD_KEY)
        return base64.b64encode(keys.public_key_bytes(key)).decode()
    try:
        if value and len(base64.b64decode(value, validate=True)) != 32:
            raise ValueError
    except ValueError as exc:
        raise CommandError(BAD_KEY) from exc
    return value


class Command(BaseCommand):
    help = (
        "Verify the tamper evidence of the whole audit trail (archives, hot "
        "store, seals, and the anchors kept outside the database); non-zero "
        "exit naming the first bad event or the last anchored seal cut or "
        "rewritten. --offline checks the anchor chain and the archives (bucket or "
        "folder copy) with no database."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--public-key",
            default="",
            help="published verifying key: base64, or a file (base64 or PEM)",
        )
        parser.add_argument(
            "--hot-only", action="store_true", help="skip the S3 archives"
        )
        parser.add_argument(
            "--offline",
            action="store_true",
            help="no database: the anchor chain, then every archive against "
            "the seals and the anchors",
        )
        parser.add_argument(
            "--archives",
            default="",
            help="with --offline: the archives, s3://bucket/prefix or a folder "
            "copy (default without --anchors: this deployment's archive bucket)",
        )
        parser.add_argument(
            "--anchors",
            default="",
            help="with --offline: s3://bucket/prefix or a folder (default: "
            "this deployment's anchor store)",
        )

    def handle(self, *args, **options):
        public_key = _published(options["public_key"])
        if options["offline"]:
            return self._offline(public_key, options["anchors"], options["archives"])
        from audit.watch import verification_run

        def progress(report):
            self.stderr.write(f"  {report.events} events checked...")

        report = verification_run(
            archives=not options["hot_only"],
            public_key=public_key,
            actor_label="manage.py audit_verify",
            progress=progress if options["verbosity"] > 1 else None,
        )
        for problem in report.problems[:50]:
            self.stdout.write(self.style.ERROR(str(problem)))
        summary = (
            f"{report.events} events, {report.seals} seals, {report.archives} "
            f"archives, {report.anchors} anchors checked; {report.unsealed} not "
            f"sealed yet; {report.keyed} MACs checked, {report.legacy} legacy "
            "(written before event MACs, none to check); "
            f"{report.spooled} written late from the outage spool; "
            f"{len(report.problems)} problems"
        )
        if report.spans > 1:
            summary += f" (hot store in {report.spans} processes)"
        if not report.ok:
            raise CommandError(f"{summary}; first bad: {report.problems[0]}")
        self.stdout.write(self.style.SUCCESS(f"audit trail intact: {summary}"))

    def _offline(self, public_key: str, location: str, archives: str) -> None:
        from django.conf import settings

        from audit import offline

        if not public_key:
            raise CommandError(NEEDS_KEY)
        verifying = keys.verifying_key(public_key)
        where = anchors.store_at(location) if location else anchors.store()
        found = anchors.read_chain(verifying, where)
        for text in found.problems:
            self.stdout.write(self.style.ERROR(f"anchor: {text}"))
        problems = list(found.problems)
        # Default: this deployment's archives, unless the anchors named are a
        # copy (--anchors) and no archives are named with them.
        if archives or (not location and settings.AUDIT_ARCHIVE_S3_BUCKET):
            place = offline.archives_at(archives)
            checked = offline.verify_archives(place, verifying, found.pinned)
            for text in checked.problems:
                self.stdout.write(self.style.ERROR(f"archive: {text}"))
            problems += checked.problems
            self.stdout.write(
                f"{checked.archives} archives in {place}: {checked.events} events, "
                f"{checked.seals} seals ({checked.pinned} anchored) checked"
            )
        newest = found.newest
        top = max(found.pinned, default=0)
        summary = (
            f"{len(found.anchors)} anchors in {where}; newest "
            f"{newest.n if newest else '-'} written "
            f"{newest.body.get('at', '?') if newest else '-'}; seals to {top} anchored"
        )
        if problems:
            what = "anchor chain broken" if found.problems else "archives broken"
            raise CommandError(f"{what}: {summary}; first bad: {problems[0]}")
        self.stdout.write(self.style.SUCCESS(f"anchor chain intact: {summary}"))

from django.core.management.base import BaseCommand, CommandError

from audit.services import audit_record
from audit.verify import audit_verify


class Command(BaseCommand):
    help = (
        "Verify the tamper evidence of the whole audit trail (archives and hot "
        "store); non-zero exit naming the first bad event on any fault."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--public-key", default="", help="published verifying key (base64)"
        )
        parser.add_argument(
            "--hot-only", action="store_true", help="skip the S3 archives"
        )

    def handle(self, *args, **options):
        def progress(report):
            self.stderr.write(f"  {report.events} events checked...")

        report = audit_verify(
            public_key=options["public_key"],
            archives=not options["hot_only"],
            progress=progress if options["verbosity"] > 1 else None,
        )
        audit_record(
            event_type="audit.verify",
            actor_label="manage.py audit_verify",
            outcome="success" if report.ok else "failure",
            error_code="" if report.ok else report.problems[0].kind,
            error_description="" if report.ok else str(report.problems[0]),
            details={
                "events": report.events,
                "spooled": report.spooled,
                "problems": len(report.problems),
            },
        )
        for problem in report.problems[:50]:
            self.stdout.write(self.style.ERROR(str(problem)))
        summary = (
            f"{report.events} events, {report.seals} seals, {report.archives} "
            f"archives checked; {report.unsealed} not sealed yet; "
            f"{report.spooled} written late from the outage spool; "
            f"{len(report.problems)} problems"
        )
        if not report.ok:
            raise CommandError(f"{summary}; first bad: {report.problems[0]}")
        self.stdout.write(self.style.SUCCESS(f"audit trail intact: {summary}"))

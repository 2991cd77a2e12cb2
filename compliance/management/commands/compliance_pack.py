"""``manage.py compliance_pack --from YYYY-MM-DD --to YYYY-MM-DD [--output FILE]``."""

from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from compliance.pack import PackError, pack_build

BAD_DATE = "--{option}: {value!r} is not a date as YYYY-MM-DD."
OUTPUT_EXISTS = "--output: {path} exists already; choose another name."
OUTPUT_FOLDER = "--output: the folder {folder} does not exist."


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(BAD_DATE.format(option=option, value=value)) from exc


class Command(BaseCommand):
    help = (
        "Build the signed evidence pack for the days --from..--to (inclusive), "
        "store it in the audit archive bucket (Object Lock) or the local folder, "
        "and optionally write a copy to --output."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD")
        parser.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD")
        parser.add_argument("--output", help="also write the archive to this file")

    def handle(self, *args, **options):
        start = _date(options["start"], "from")
        end = _date(options["end"], "to")
        output = Path(options["output"]) if options["output"] else None
        if output is not None:
            if output.exists():
                raise CommandError(OUTPUT_EXISTS.format(path=output))
            if not output.parent.is_dir():
                raise CommandError(OUTPUT_FOLDER.format(folder=output.parent))
        try:
            result = pack_build(start=start, end=end)
        except PackError as exc:
            raise CommandError(str(exc)) from exc
        if output is not None:
            with open(output, "xb") as out:
                out.write(result.data)
        lock = result.object_lock
        retained = "no Object Lock"
        if lock:
            until = lock["ObjectLockRetainUntilDate"]
            retained = f"{lock['ObjectLockMode']} until {until:%Y-%m-%d}"
        self.stdout.write(f"stored: {result.location} ({retained})")
        if output is not None:
            self.stdout.write(f"written: {output}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Evidence pack {start}..{end}: {len(result.files)} files, "
                f"{result.size} bytes, SHA-256 {result.sha256}, "
                f"key id {result.manifest['key_id']}"
            )
        )

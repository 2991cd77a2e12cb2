"""Deploy checks of the 3-2-1 rule: copy 3's bucket is in the expected region,
and copies 1 and 2 are on two filesystems (one failing disk must not take
both local copies)."""

import os
from pathlib import Path

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from backups import offsite

SAME_DEVICE = (
    "BACKUP_COPY1_DIR ({one}) and BACKUP_COPY2_DIR ({two}) are on the same "
    "filesystem (device {device}): one failing disk would take both local copies."
)
REGION_UNKNOWN = (
    "The region of the backup bucket {bucket} could not be read ({error}); "
    "every backup and copy-3 restore checks it again and refuses another region."
)


def device_of(path: Path) -> tuple[int, Path]:
    """The device of ``path``, or of its nearest existing parent (a folder
    not made yet is made on the filesystem of that parent)."""
    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        try:
            return os.stat(candidate).st_dev, candidate
        except FileNotFoundError:
            continue
    raise FileNotFoundError(path)  # pragma: no cover - "/" always exists


@register(Tags.security, deploy=True)
def copies_on_two_filesystems(app_configs=None, **kwargs):
    one, two = Path(settings.BACKUP_COPY1_DIR), Path(settings.BACKUP_COPY2_DIR)
    device, _ = device_of(one)
    if device != device_of(two)[0]:
        return []
    return [
        Error(
            SAME_DEVICE.format(one=one, two=two, device=device),
            hint="Mount two volumes on different disks and point the two "
            "variables at them.",
            id="backups.E001",
        )
    ]


@register(Tags.security, deploy=True)
def bucket_in_expected_region(app_configs=None, **kwargs):
    if not settings.BACKUP_S3_BUCKET:
        return []  # production refuses to start without it; dev may have none
    try:
        problem = offsite.region_problem()
    except offsite.OffsiteError as exc:
        return [
            Warning(
                REGION_UNKNOWN.format(bucket=settings.BACKUP_S3_BUCKET, error=exc),
                id="backups.W001",
            )
        ]
    if problem:
        return [
            Error(
                problem,
                hint="Create the bucket in BACKUP_S3_REGION, or set "
                "BACKUP_S3_REGION to where the bucket is meant to be.",
                id="backups.E002",
            )
        ]
    return []

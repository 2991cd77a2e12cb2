"""Events as plain dicts: one shape for archives, exports and verification."""

import csv
import json
from collections.abc import Iterable, Iterator
from typing import IO

from audit.chain import CONTENT_FIELDS

# ``spooled`` then the keyed-event columns last: added after archives and
# exports first shipped.
COLUMNS = (
    "id",
    *CONTENT_FIELDS,
    "content_hash",
    "spooled",
    "event_uid",
    "mac_key_id",
    "mac",
)
VALUE_FIELDS = COLUMNS


def row_dict(values: dict) -> dict:
    row = {name: values.get(name) for name in COLUMNS}
    when = row["occurred_at"]
    if not isinstance(when, str):
        row["occurred_at"] = when.isoformat(timespec="microseconds")
    if row["actor_id"] is not None:
        row["actor_id"] = str(row["actor_id"])
    if row["event_uid"] is not None:
        row["event_uid"] = str(row["event_uid"])
    return row


def iter_values(queryset, chunk_size: int = 2000) -> Iterator[dict]:
    """Stream a queryset of events as row dicts with flat memory."""
    for values in queryset.values(*VALUE_FIELDS).iterator(chunk_size=chunk_size):
        yield row_dict(values)


def jsonl_line(row: dict) -> str:
    return json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n"


def write_jsonl(rows: Iterable[dict], out: IO[str]) -> int:
    count = 0
    for row in rows:
        out.write(jsonl_line(row))
        count += 1
    return count


def write_csv(rows: Iterable[dict], out: IO[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    count = 0
    for row in rows:
        flat = dict(row)
        flat["details"] = json.dumps(row["details"], sort_keys=True)
        # A cell starting with = + - @ is a formula in spreadsheet programs.
        for key, value in flat.items():
            if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
                flat[key] = "'" + value
        writer.writerow(flat)
        count += 1
    return count

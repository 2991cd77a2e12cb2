"""Compare two state.py digests: ``compare.py BEFORE AFTER EXTRA_AUDIT_ROWS``.

The audit trail may hold EXTRA_AUDIT_ROWS more rows after (the restore's own
events); every other table and every file must be identical."""

import json
import sys

with open(sys.argv[1]) as first, open(sys.argv[2]) as second:
    before, after = json.load(first), json.load(second)
extra = int(sys.argv[3])
bad = []
for table, expected in before["tables"].items():
    got = after["tables"].get(table)
    if table == "audit_auditevent":
        if got["rows"] != expected["rows"] + extra:
            bad.append(f"{table}: {expected['rows']} -> {got['rows']}")
    elif got != expected:
        bad.append(table)
if after["files"] and after["files"] != before["files"]:
    bad.append("files")
files = len(after["files"]) or "no"
verdict = "IDENTICAL" if not bad else f"DIFFER: {bad}"
sys.stdout.write(
    f"{len(before['tables'])} tables, {files} files compared: {verdict}"
    f" (audit trail +{extra} restore event)\n"
)
sys.exit(1 if bad else 0)

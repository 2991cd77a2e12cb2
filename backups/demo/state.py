"""Print a JSON digest of every table (and, for the current database, of
every stored file): ``python backups/demo/state.py [DATABASE_URL]``."""

import hashlib
import json
import sys

import django

django.setup()

from django.core.files.storage import default_storage  # noqa: E402

from backups import databases  # noqa: E402
from projects.models import ProjectFile  # noqa: E402

alias = databases.alias_for_url(sys.argv[1]) if len(sys.argv) > 1 else "default"
files = {}
if alias == "default":
    for name in ProjectFile.objects.values_list("blob", flat=True):
        try:
            with default_storage.open(name, "rb") as handle:
                files[name] = hashlib.sha256(handle.read()).hexdigest()
        except OSError as exc:
            files[name] = f"MISSING {type(exc).__name__}"
state = {"tables": databases.table_stats(alias), "files": files}
sys.stdout.write(json.dumps(state, sort_keys=True) + "\n")

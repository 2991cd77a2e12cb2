#!/usr/bin/env bash
# The closing-note demo on PostgreSQL, from a scratch database and a moto S3
# server: seed, backup_now, the three copies, verify, then drop the database
# and the files and restore from each copy in turn, then PostgreSQL -> SQLite.
# Usage: bash backups/demo/restore_demo.sh   (work files in /tmp/demo)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
DB=kreo_demo_$$
PORT=$($PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
$PY -m moto.server -H 127.0.0.1 -p $PORT >/dev/null 2>&1 & MOTO=$!
trap 'kill $MOTO; psql -h 127.0.0.1 -U kreo -d kreo -qc "drop database if exists $DB with (force)"' EXIT
export PGPASSWORD=kreo DJANGO_SETTINGS_MODULE=kreo.settings.local \
  DATABASE_URL=postgres://kreo:kreo@127.0.0.1:5432/$DB KREO_VAR_DIR=/tmp/demo/var \
  AWS_STORAGE_BUCKET_NAME=demo-files AWS_S3_ENDPOINT_URL=http://127.0.0.1:$PORT \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=eu-west-2 \
  BACKUP_S3_BUCKET=demo-backups PYTHONPATH="$PWD"
mkdir -p /tmp/demo; rm -rf /tmp/demo/var; sleep 2
$PY - <<PYEOF
import boto3
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:$PORT", region_name="eu-west-2")
cfg = {"LocationConstraint": "eu-west-2"}
s3.create_bucket(Bucket="demo-files", CreateBucketConfiguration=cfg)
s3.create_bucket(Bucket="demo-backups", CreateBucketConfiguration=cfg, ObjectLockEnabledForBucket=True)
PYEOF
psql -h 127.0.0.1 -U kreo -d kreo -qc "create database $DB"
$PY manage.py migrate -v0 2>/dev/null
$PY backups/demo/seed.py 2>/dev/null
$PY backups/demo/state.py > /tmp/demo/before.json 2>/dev/null
echo "== backup_now"; $PY manage.py backup_now 2>/dev/null
echo "== backup_list"; $PY manage.py backup_list 2>/dev/null
echo "== the three copies"; ls -l /tmp/demo/var/backups/copy1/00000001 /tmp/demo/var/backups/copy2/00000001
head -c 8 /tmp/demo/var/backups/copy1/00000001/db.pgdump.enc | od -c | head -1
head -c 21 /tmp/demo/var/backups/copy2/00000001/data.jsonl.age; echo
$PY - <<PYEOF
import boto3
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:$PORT", region_name="eu-west-2")
for o in s3.list_objects_v2(Bucket="demo-backups")["Contents"]:
    h = s3.head_object(Bucket="demo-backups", Key=o["Key"])
    print(o["Key"], o["Size"], h["ServerSideEncryption"], h.get("ObjectLockMode"), h.get("ObjectLockRetainUntilDate"))
PYEOF
echo "== backup_verify"; $PY manage.py backup_verify --id 1 2>/dev/null | tail -7
for copy in 1 2 3; do
  echo "== drop the database and the files, restore from copy $copy"
  psql -h 127.0.0.1 -U kreo -d kreo -qc "drop database $DB with (force)"
  psql -h 127.0.0.1 -U kreo -d kreo -qc "create database $DB"
  $PY -c "
import boto3; b=boto3.resource('s3', endpoint_url='http://127.0.0.1:$PORT', region_name='eu-west-2').Bucket('demo-files'); b.objects.all().delete(); print('files left in bucket:', len(list(b.objects.all())))"
  if [ $copy = 3 ]; then mv /tmp/demo/var/backups /tmp/demo/var/backups.away; echo "(local copies moved away)"; fi
  $PY manage.py backup_restore --id 1 --copy $copy 2>/dev/null || echo "(refused without --yes: exit $?)"
  $PY manage.py backup_restore --id 1 --copy $copy --yes 2>/dev/null | tail -2
  if [ $copy = 3 ]; then mv /tmp/demo/var/backups.away /tmp/demo/var/backups; fi
  $PY backups/demo/state.py > /tmp/demo/after$copy.json 2>/dev/null
  $PY backups/demo/compare.py /tmp/demo/before.json /tmp/demo/after$copy.json 1
done
echo "== PostgreSQL -> SQLite from the logical copy"
rm -f /tmp/demo/other.sqlite3
$PY manage.py backup_restore --id 1 --copy 2 --target-db sqlite:////tmp/demo/other.sqlite3 --no-files --yes 2>/dev/null | tail -1
$PY backups/demo/state.py sqlite:////tmp/demo/other.sqlite3 > /tmp/demo/sqlite.json 2>/dev/null
$PY backups/demo/compare.py /tmp/demo/before.json /tmp/demo/sqlite.json 0

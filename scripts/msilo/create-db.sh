#!/usr/bin/env bash
# Creates the msilo SQLite database for scripts/msilo/kamailio-msilo.cfg: Kamailio's own
# version and silo tables (Debian's kamailio-sqlite-modules schema), in WAL mode (persistent
# in the file) with SQLite's default synchronous=FULL.
#   bash scripts/msilo/create-db.sh /tmp/msilo.sqlite
set -euo pipefail
db=${1:?usage: create-db.sh DB_FILE}
schema=/usr/share/kamailio/db_sqlite
rm -f "$db" "$db-wal" "$db-shm"
{
  echo "PRAGMA journal_mode=WAL;"
  cat "$schema/standard-create.sql" "$schema/msilo-create.sql"
} | sqlite3 "$db" >/dev/null
mode=$(sqlite3 "$db" "PRAGMA journal_mode;")
[ "$mode" = wal ] || { echo "create-db.sh: journal_mode is $mode, not wal" >&2; exit 1; }

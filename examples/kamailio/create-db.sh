#!/usr/bin/env bash
# Creates the SQLite database of examples/kamailio/kamailio.cfg (presence: presentity,
# active_watchers, watchers, xcap, pua) from the schema files Debian's kamailio-sqlite-modules
# ships, in WAL mode (readers never block the one writer; see children=1 in the cfg).
#
#   examples/kamailio/create-db.sh /var/lib/kamailio/presence.sqlite
#   chown kamailio:kamailio /var/lib/kamailio/presence.sqlite*   # if Kamailio runs as kamailio
#
# The database file and its directory must be writable by the Kamailio user (SQLite creates the
# -wal and -shm files beside it). Running it again on an existing database changes nothing.
set -euo pipefail

db=${1:?usage: create-db.sh DATABASE_FILE}
schema_dir=${KAMAILIO_SQLITE_SCHEMA:-/usr/share/kamailio/db_sqlite}

command -v sqlite3 >/dev/null || { echo "create-db.sh: needs the sqlite3 command (apt-get install sqlite3)" >&2; exit 1; }
for f in standard-create.sql presence-create.sql; do
  [ -r "$schema_dir/$f" ] || { echo "create-db.sh: $schema_dir/$f missing (apt-get install kamailio-sqlite-modules)" >&2; exit 1; }
done

if [ -s "$db" ] && sqlite3 "$db" "SELECT 1 FROM version WHERE table_name='presentity'" 2>/dev/null | grep -q 1; then
  echo "create-db.sh: $db already has the presence tables"
  exit 0
fi

# journal_mode=WAL is stored in the file, so every later connection (Kamailio's) uses it.
sqlite3 "$db" <<SQL
PRAGMA journal_mode=WAL;
.read $schema_dir/standard-create.sql
.read $schema_dir/presence-create.sql
SQL
echo "create-db.sh: created $db (WAL)"

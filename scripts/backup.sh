#!/usr/bin/env bash
# Backs up the invsys database: a pg_dump in custom format of DATABASE_URL into a
# directory, verified by restoring it into a scratch database (created for the
# purpose, dropped afterwards), keeping the newest BACKUP_KEEP dumps.
#
#   DATABASE_URL=postgres://user:password@host:5432/invsys scripts/backup.sh /srv/backups
#
# With docker-compose.prod.yml (the "backup" service: the db image's pg_dump,
# DATABASE_URL from .env.prod, dumps in ./backups on the host):
#
#   docker-compose -f docker-compose.prod.yml run --rm backup
#
# Settings (environment):
#   DATABASE_URL   postgres://… of the database to back up (required). Its role
#                  needs CREATEDB for the verification (the compose file's does).
#   BACKUP_DIR     where the dumps go, if no directory is given as the argument
#   BACKUP_KEEP    how many dumps to keep, newest first (default 7); older
#                  invsys-*.dump files in the directory are deleted
#
# Files: BACKUP_DIR/invsys-YYYYMMDDTHHMMSSZ.dump (UTC); restore one with
#   pg_restore --clean --if-exists -d "$DATABASE_URL" invsys-….dump
# Prints one line per step; on any failure one line "backup: error: …" on stderr
# and a non-zero exit status, and no new dump is left behind.
set -euo pipefail
umask 077

say() { echo "backup: $*"; }
die() {
  echo "backup: error: $*" >&2
  exit 1
}
# The last line of a tool's error output, for a one-line message.
last_line() { grep -v '^[[:space:]]*$' "$1" | tail -n 1; }

dir=${1:-${BACKUP_DIR:-}}
keep=${BACKUP_KEEP:-7}
url=${DATABASE_URL:-}

[ -n "$url" ] || die "DATABASE_URL is not set"
[ -n "$dir" ] || die "no backup directory: give it as the argument or set BACKUP_DIR"
[[ $keep =~ ^[1-9][0-9]*$ ]] || die "BACKUP_KEEP must be a whole number of at least 1, got '$keep'"
for tool in pg_dump pg_restore psql; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (Debian: apt-get install postgresql-client)"
done
# postgres://[user[:password]@]host[:port]/dbname[?params]: the database name is
# replaced to reach the scratch database, so it must be there.
[[ $url =~ ^(postgres(ql)?://[^/?#]+)/([^/?#]+)(\?[^#]*)?$ ]] ||
  die "DATABASE_URL must look like postgres://user:password@host:5432/dbname"
server=${BASH_REMATCH[1]}
query=${BASH_REMATCH[4]:-}

mkdir -p "$dir" 2>/dev/null || die "cannot create the backup directory $dir"
[ -w "$dir" ] || die "cannot write to the backup directory $dir"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
final="$dir/invsys-$stamp.dump"
partial="$final.partial"
errors=$(mktemp)
scratch="invsys_backup_check_${stamp,,}_$$"
scratch_created=
cleanup() {
  rm -f "$partial" "$errors"
  if [ -n "$scratch_created" ]; then
    psql -X -q -d "$url" -c "DROP DATABASE IF EXISTS \"$scratch\"" >/dev/null 2>&1 ||
      echo "backup: warning: could not drop the scratch database $scratch; drop it by hand" >&2
  fi
}
trap cleanup EXIT
[ -e "$final" ] && die "$final exists already"

# 1. The dump (custom format: compressed, restorable selectively, in any order).
pg_dump --format=custom --file="$partial" --dbname="$url" 2>"$errors" ||
  die "pg_dump failed: $(last_line "$errors")"
size=$(stat -c %s "$partial")
say "dumped to $final ($size bytes)"

# 2. Verified: restored whole into a scratch database, stopping at the first error.
psql -X -q -v ON_ERROR_STOP=1 -d "$url" -c "CREATE DATABASE \"$scratch\"" >/dev/null 2>"$errors" ||
  die "cannot create the scratch database for the verification: $(last_line "$errors")"
scratch_created=1
pg_restore --exit-on-error --no-owner --no-acl --dbname="$server/$scratch$query" "$partial" 2>"$errors" ||
  die "the dump does not restore (the previous dumps are kept): $(last_line "$errors")"
tables=$(psql -X -At -d "$server/$scratch$query" -c \
  "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')" 2>"$errors") ||
  die "cannot read the restored database: $(last_line "$errors")"
psql -X -q -d "$url" -c "DROP DATABASE \"$scratch\"" >/dev/null 2>"$errors" ||
  die "cannot drop the scratch database $scratch: $(last_line "$errors")"
scratch_created=
say "verified: restores into a scratch database ($tables tables), dropped again"

mv "$partial" "$final"

# 3. Keep the newest $keep (the names sort by time).
mapfile -t dumps < <(find "$dir" -maxdepth 1 -type f -name 'invsys-*.dump' -printf '%f\n' | sort -r)
removed=0
for old in "${dumps[@]:$keep}"; do
  rm -f -- "$dir/$old" || die "cannot delete the old dump $dir/$old"
  removed=$((removed + 1))
done
say "kept the newest $(( ${#dumps[@]} < keep ? ${#dumps[@]} : keep )) dumps in $dir, deleted $removed"

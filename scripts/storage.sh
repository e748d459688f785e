#!/usr/bin/env bash
# Storage administration of a running LocalZure container, through `docker exec`.
#   scripts/storage.sh stats [--json]
#   scripts/storage.sh export /data/export.json    && docker cp localzure:/data/export.json .
#   docker cp export.json localzure:/data/import.json && scripts/storage.sh import /data/import.json
#   scripts/storage.sh compact | snapshot
#   scripts/storage.sh purge [--yes]
# LOCALZURE_CONTAINER names the container (default: localzure).
set -euo pipefail
C=${LOCALZURE_CONTAINER:-localzure}

usage() {
  cat <<USAGE
usage: $(basename "$0") COMMAND [ARGS]   (runs: docker exec $C localzure storage COMMAND [ARGS])

commands:
  stats [--json]     backend, location, size, entity and message counts, last snapshot, log size
  export FILE        every entity and message to one JSON document (FILE is a path inside the
                     container, e.g. /data/export.json; then: docker cp $C:/data/export.json .)
  import FILE        replace the state with an export (copy it in first:
                     docker cp export.json $C:/data/import.json)
  compact            SQLite VACUUM; JSON orphan-file cleanup
  snapshot           snapshot now and truncate the operation log
  purge [--yes]      delete everything (asks on a terminal; --yes when scripted)

environment:
  LOCALZURE_CONTAINER   container name (default: localzure)
USAGE
}

case ${1:-} in
  "" | -h | --help | help) usage; [ -n "${1:-}" ]; exit ;;
esac

# A terminal on both ends lets `purge` ask for its confirmation.
if [ -t 0 ] && [ -t 1 ]; then tty=(-it); else tty=(-i); fi
exec docker exec "${tty[@]}" "$C" localzure storage "$@"

#!/usr/bin/env bash
# Graceful shutdown of the LocalZure container: final snapshot and compaction, then exit 0.
# Same as `docker stop` (SIGTERM), through the server's own admin API. Prints the shutdown log.
# LOCALZURE_CONTAINER names it (default: localzure).
set -euo pipefail
C=${LOCALZURE_CONTAINER:-localzure}
docker exec "$C" localzure stop
docker wait "$C" >/dev/null
docker logs --tail 8 "$C" 2>&1
echo "$C exited with $(docker container inspect -f '{{.State.ExitCode}}' "$C")"

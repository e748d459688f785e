#!/usr/bin/env bash
# Exit 0 when the LocalZure container's server is healthy (docker exec ... localzure health),
# and print Docker's own health status. LOCALZURE_CONTAINER names it (default: localzure).
set -euo pipefail
C=${LOCALZURE_CONTAINER:-localzure}
status=$(docker container inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$C")
echo "$C: $status"
exec docker exec "$C" localzure health

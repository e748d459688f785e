#!/usr/bin/env bash
# TLS cost (issue 17): handshake rate and HTTPS send throughput against plain HTTP, on one
# server with an HTTPS port (ephemeral), measured by a separate load generator (wrk).
#   bash scripts/bench-tls.sh               (release build; LOCALZURE_BIN=... to pick a binary)
#   DURATION=10 CONNECTIONS=32 THREADS=2 bash scripts/bench-tls.sh
# Needs wrk (Debian: apt-get install wrk). Prints one table row per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 2; }
if [ -z "${LOCALZURE_BIN:-}" ]; then
    cargo build --release --quiet --bin localzure
    LOCALZURE_BIN="${CARGO_TARGET_DIR:-target}/release/localzure"
fi
case "$LOCALZURE_BIN" in /*) ;; *) LOCALZURE_BIN="$PWD/$LOCALZURE_BIN" ;; esac
WORK=$(mktemp -d)
LOG="$WORK/server.log"
cleanup() {
    [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
(cd "$WORK" && LOCALZURE_HTTP_PORT=0 LOCALZURE_AMQP_PORT=0 LOCALZURE_HTTPS_PORT=0 \
    LOCALZURE_TLS_DIR="$WORK/tls" LOCALZURE_LOG=warn,localzure::server=info \
    exec "$LOCALZURE_BIN" start) >"$LOG" 2>&1 &
PID=$!
port() { sed -n "s|.*$1 on $2://[^ ]*:\([0-9]*\)\$|\1|p" "$LOG" | head -1; }
for _ in $(seq 300); do
    HTTP=$(port listening http); HTTPS=$(port "HTTPS listening" https)
    [ -n "$HTTP" ] && [ -n "$HTTPS" ] && break
    kill -0 "$PID" 2>/dev/null || { cat "$LOG"; exit 1; }
    sleep 0.05
done
[ -n "$HTTP" ] && [ -n "$HTTPS" ] || { cat "$LOG"; exit 1; }
curl -sf -o /dev/null -X PUT "http://127.0.0.1:$HTTP/bench" -H 'Content-Type: application/atom+xml' \
    -d '<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"/></content></entry>'
cat >"$WORK/send.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "text/plain"
LUA
rate() { # label url extra-wrk-args...
    local label=$1 url=$2; shift 2
    local out
    out=$(wrk -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" "$@" "$url")
    printf '| %s | %s |\n' "$label" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
}
echo "| measurement (wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s) | requests/s |"
echo "|---|---|"
# A new connection per request: TCP (+ TLS handshake) + GET /health.
rate "new connection per GET /health, plain" "http://127.0.0.1:$HTTP/health" -H "Connection: close"
rate "new connection per GET /health, TLS handshake" "https://127.0.0.1:$HTTPS/health" -H "Connection: close"
# Keep-alive sends of 1 KiB messages (REST send), then drained by the queue's size only.
rate "keep-alive send 1 KiB, HTTP" "http://127.0.0.1:$HTTP/bench/messages" -s "$WORK/send.lua"
rate "keep-alive send 1 KiB, HTTPS" "https://127.0.0.1:$HTTPS/bench/messages" -s "$WORK/send.lua"
echo
echo "binary: $LOCALZURE_BIN; $(nproc) CPUs; $(date -u +%Y-%m-%d)"

#!/usr/bin/env bash
# HTTP send throughput of the `localzure` binary per storage backend and sync mode, against
# "the floor" (examples/floor.rs: a minimal warp server answering the same POST with 201),
# with `wrk` as the load generator in its own process (1 KB bodies to /{queue}/messages).
#
#   scripts/bench.sh                  # 64 and 256 connections, 5 s per run, 3 runs each
#   BENCH_SMOKE=1 scripts/bench.sh    # CI smoke: debug build, 64 connections, 1 run of 1 s
#
# Rows: floor, in-memory, sqlite/json in `interval` and `always` (LOCALZURE_WAL_SYNC), redis
# (a private redis-server with appendonly yes, appendfsync everysec and always). Every run
# starts a fresh server with an empty data directory. Prints min/median/max requests/s per row
# and the ratios of the medians; with BENCH_ENFORCE=1 exits 1 when a target is missed:
#   interval >= 0.95x in-memory (64 and 256), always >= 0.80x in-memory (256),
#   in-memory >= 0.80x floor.
#
# Environment: BENCH_CONNECTIONS ("64 256"), BENCH_DURATION (5s), BENCH_RUNS (3),
# BENCH_ROWS (all: "floor in-memory sqlite-interval sqlite-always json-interval json-always
# redis-everysec redis-always"), BENCH_PROFILE (release; smoke: debug), BENCH_THREADS (wrk -t, 2),
# BENCH_ENFORCE (0), BENCH_KEEP (keep the work directory).
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=${BENCH_SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
  CONNECTIONS=${BENCH_CONNECTIONS:-64}
  DURATION=${BENCH_DURATION:-1s}
  RUNS=${BENCH_RUNS:-1}
  PROFILE=${BENCH_PROFILE:-debug}
else
  CONNECTIONS=${BENCH_CONNECTIONS:-64 256}
  DURATION=${BENCH_DURATION:-5s}
  RUNS=${BENCH_RUNS:-3}
  PROFILE=${BENCH_PROFILE:-release}
fi
ROWS=${BENCH_ROWS:-floor in-memory sqlite-interval sqlite-always json-interval json-always redis-everysec redis-always}
THREADS=${BENCH_THREADS:-2}
ENFORCE=${BENCH_ENFORCE:-0}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk; then
  echo "installing wrk (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq >/dev/null
  "${SUDO[@]}" apt-get install -y -qq wrk >/dev/null
fi
for tool in curl python3; do need "$tool" || { echo "bench.sh needs $tool" >&2; exit 2; }; done
if ! need redis-server; then
  echo "redis-server not found: the redis rows are skipped" >&2
  ROWS=$(echo "$ROWS" | tr ' ' '\n' | grep -v '^redis' | tr '\n' ' ')
fi

if [ "$PROFILE" = release ]; then
  cargo build --release --quiet --bin localzure --example floor
  BIN_DIR=target/release
else
  cargo build --quiet --bin localzure --example floor
  BIN_DIR=target/debug
fi
LZ=$PWD/$BIN_DIR/localzure
FLOOR=$PWD/$BIN_DIR/examples/floor

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lz-bench.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/send.lua" <<'LUA'
-- 1 KB body POSTed to the URL's path (/{queue}/messages).
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (polling, up to 30 s) for `pattern` in file $1; prints the matching line.
wait_line() {
  local file=$1 pattern=$2 pid=$3
  for _ in $(seq 300); do
    if grep -m1 -E "$pattern" "$file" 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "process exited; log:" >&2; cat "$file" >&2; return 1; }
    sleep 0.1
  done
  echo "timed out waiting for '$pattern' in $file" >&2; cat "$file" >&2; return 1
}

stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

REDIS_PID=""
start_redis() { # $1: everysec|always
  local port dir=$WORK/redis
  rm -rf "$dir"; mkdir -p "$dir"
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly yes \
    --appendfsync "$1" --daemonize no >"$dir/log" 2>&1 &
  REDIS_PID=$!; PIDS+=("$REDIS_PID")
  wait_line "$dir/log" "Ready to accept connections" "$REDIS_PID" >/dev/null
  REDIS_PORT=$port
}

# Starts the server for row $1; sets ADDR and SERVER_PID.
start_row() {
  local row=$1 data=$WORK/data log=$WORK/server.log
  rm -rf "$data"; mkdir -p "$data"
  local -a env=(env -i "PATH=$PATH" "HOME=${HOME:-/tmp}" NO_COLOR=1 LOCALZURE_HOST=127.0.0.1
    LOCALZURE_HTTP_PORT=0 LOCALZURE_AMQP_PORT=0 LOCALZURE_LOG=warn,localzure=info)
  case $row in
    floor)
      "$FLOOR" </dev/null >"$log" 2>&1 &
      SERVER_PID=$!; PIDS+=("$SERVER_PID")
      ADDR=$(wait_line "$log" "listening on " "$SERVER_PID" | sed -E 's/.*listening on ([^ ]+).*/\1/')
      return ;;
    in-memory) env+=(LOCALZURE_STORAGE_TYPE=in-memory) ;;
    sqlite-*) env+=(LOCALZURE_STORAGE_TYPE=sqlite "LOCALZURE_SQLITE_PATH=$data/servicebus.db"
      "LOCALZURE_WAL_SYNC=${row#sqlite-}") ;;
    json-*) env+=(LOCALZURE_STORAGE_TYPE=json "LOCALZURE_JSON_PATH=$data"
      "LOCALZURE_WAL_SYNC=${row#json-}") ;;
    redis-*)
      start_redis "${row#redis-}"
      env+=(LOCALZURE_STORAGE_TYPE=redis LOCALZURE_REDIS_HOST=127.0.0.1
        "LOCALZURE_REDIS_PORT=$REDIS_PORT") ;;
  esac
  "${env[@]}" "$LZ" start </dev/null >"$log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
  ADDR=$(wait_line "$log" "listening on http://" "$SERVER_PID" \
    | sed -E 's#.*listening on http://([^ ]+).*#\1#')
  curl -sf -X PUT -H 'Content-Type: application/atom+xml' \
    --data '<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"><MaxSizeInMegabytes>81920</MaxSizeInMegabytes></QueueDescription></content></entry>' \
    "http://$ADDR/bench" >/dev/null
}

stop_row() {
  stop "$SERVER_PID"
  if [ -n "$REDIS_PID" ]; then stop "$REDIS_PID"; REDIS_PID=""; fi
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
echo "bench: $(date -u +%FT%TZ) profile=$PROFILE duration=$DURATION runs=$RUNS connections=[$CONNECTIONS] wrk -t$THREADS, $(nproc) cores" >&2
for conns in $CONNECTIONS; do
  for row in $ROWS; do
    for run in $(seq "$RUNS"); do
      start_row "$row"
      out=$(wrk -t"$THREADS" -c"$conns" -d"$DURATION" -s "$WORK/send.lua" "http://$ADDR/bench/messages" 2>&1) || true
      stop_row
      rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
      bad=$(echo "$out" | awk '/Non-2xx or 3xx responses:/ {print $NF}')
      errs=$(echo "$out" | awk '/Socket errors:/ {print}')
      if [ -z "$rps" ] || [ -n "$bad" ]; then
        echo "$row c=$conns run $run failed (non-2xx: ${bad:-0}):" >&2; echo "$out" >&2; exit 1
      fi
      [ -z "$errs" ] || echo "$row c=$conns run $run: $errs" >&2
      printf '%s\t%s\t%s\n' "$conns" "$row" "$rps" >>"$RESULTS"
      echo "  $row c=$conns run $run: $rps req/s" >&2
    done
  done
done

ENFORCE=$ENFORCE python3 - "$RESULTS" <<'PY'
import os, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    c, row, rps = line.split("\t")
    rows.setdefault((int(c), row), []).append(float(rps))
conns = sorted({c for c, _ in rows})
order = []
for _, r in rows:
    if r not in order:
        order.append(r)
med = {k: statistics.median(v) for k, v in rows.items()}
print("| connections | row | req/s median | min | max | vs in-memory | vs floor |")
print("|---|---|---|---|---|---|---|")
for c in conns:
    for r in order:
        v = rows.get((c, r))
        if not v:
            continue
        mem = med.get((c, "in-memory"))
        floor = med.get((c, "floor"))
        vm = f"{med[(c, r)] / mem:.2f}x" if mem else "-"
        vf = f"{med[(c, r)] / floor:.2f}x" if floor else "-"
        print(f"| {c} | {r} | {med[(c, r)]:,.0f} | {min(v):,.0f} | {max(v):,.0f} | {vm} | {vf} |")
print()
missed = 0
def target(name, c, num, den, want):
    global missed
    if (c, num) not in med or (c, den) not in med:
        return
    ratio = med[(c, num)] / med[(c, den)]
    ok = ratio >= want
    missed += not ok
    print(f"target {name} at {c}: {ratio:.2f}x (>= {want:.2f}x) {'met' if ok else 'NOT MET'}")
for c in conns:
    for b in ("sqlite", "json"):
        target(f"{b}-interval vs in-memory", c, f"{b}-interval", "in-memory", 0.95)
        if c >= 256:
            target(f"{b}-always vs in-memory", c, f"{b}-always", "in-memory", 0.80)
    target("in-memory vs floor", c, "in-memory", "floor", 0.80)
if missed and os.environ.get("ENFORCE") == "1":
    print(f"{missed} target(s) missed", file=sys.stderr)
    sys.exit(1)
PY

#!/usr/bin/env bash
# LocalZure's benchmark rows in one run, each printed with its ratio and target:
#
# 1. http: HTTP send throughput of the `localzure` binary per storage backend and sync mode,
#    against "the floor" (examples/floor.rs: a minimal warp server answering the same POST
#    with 201), with `wrk` as the load generator in its own process (1 KB bodies to
#    /{queue}/messages). Rows: floor, in-memory, sqlite/json in `interval` and `always`
#    (LOCALZURE_WAL_SYNC), redis (a private redis-server with appendonly yes, appendfsync
#    everysec and always). Every run starts a fresh server with an empty data directory.
#    Prints min/median/max requests/s per row and the ratios of the medians. Targets:
#    interval >= 0.95x in-memory (64 and 256), always >= 0.80x in-memory (256),
#    in-memory >= 0.80x floor.
# 2. amqp: AMQP 1.0 throughput of LocalZure (in-memory) against RabbitMQ (Debian's
#    rabbitmq-server with its rabbitmq_amqp1_0 plugin, a private node on free ports in the work
#    directory), both driven by examples/amqp_load.rs (fe2o3-amqp, its own process): 1 KB
#    messages, sends settled by the broker (`accepted`) and peek-lock receives each accepted,
#    over 1 and 16 links. Target: LocalZure >= 2x RabbitMQ on every row.
# 3. fanout: one 1 KB message to 100 TrueFilter subscriptions at broker level
#    (examples/fanout.rs). Target: <= 30 us per fan-out.
# 4. memory: VmRSS growth of the server process per stored 1 KB message (sent over AMQP by
#    examples/amqp_load.rs, 16 links), per backend (in-memory, sqlite, json). Target: <= 1.3x
#    the payload bytes.
#
#   scripts/bench.sh                  # full sizes, release build
#   BENCH_SMOKE=1 scripts/bench.sh    # CI smoke: debug build, tiny sizes, every row runs once
#
# Environment: BENCH_SECTIONS ("http amqp fanout memory"), BENCH_ENFORCE (0; 1: exit 1 when a
# target is missed), BENCH_PROFILE (release; smoke: debug), BENCH_KEEP (keep the work directory).
# http: BENCH_CONNECTIONS ("64 256"), BENCH_DURATION (5s), BENCH_RUNS (3), BENCH_ROWS (all:
# "floor in-memory sqlite-interval sqlite-always json-interval json-always redis-everysec
# redis-always"), BENCH_THREADS (wrk -t, 2).
# amqp: BENCH_AMQP_MESSAGES (per row, 50000), BENCH_AMQP_LINKS ("1 16"), BENCH_AMQP_RUNS (3),
# BENCH_AMQP_WINDOW (outstanding sends / receive credit per link, 100), BENCH_AMQP_TIMEOUT
# (seconds per run, 120).
# fanout: BENCH_FANOUT_MESSAGES (20000). memory: BENCH_MEMORY_MESSAGES (1000000),
# BENCH_MEMORY_BACKENDS ("in-memory sqlite json").
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
SECTIONS=${BENCH_SECTIONS:-http amqp fanout memory}
if [ "$SMOKE" = 1 ]; then
  AMQP_MESSAGES=${BENCH_AMQP_MESSAGES:-400}
  AMQP_RUNS=${BENCH_AMQP_RUNS:-1}
  FANOUT_MESSAGES=${BENCH_FANOUT_MESSAGES:-200}
  MEMORY_MESSAGES=${BENCH_MEMORY_MESSAGES:-2000}
else
  AMQP_MESSAGES=${BENCH_AMQP_MESSAGES:-50000}
  AMQP_RUNS=${BENCH_AMQP_RUNS:-3}
  FANOUT_MESSAGES=${BENCH_FANOUT_MESSAGES:-20000}
  MEMORY_MESSAGES=${BENCH_MEMORY_MESSAGES:-1000000}
fi
AMQP_LINKS=${BENCH_AMQP_LINKS:-1 16}
AMQP_WINDOW=${BENCH_AMQP_WINDOW:-100}
AMQP_TIMEOUT=${BENCH_AMQP_TIMEOUT:-120}
MEMORY_BACKENDS=${BENCH_MEMORY_BACKENDS:-in-memory sqlite json}
section() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
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
RABBIT=/usr/lib/rabbitmq/bin/rabbitmq-server
if section amqp && [ ! -x "$RABBIT" ]; then
  echo "rabbitmq-server not found (Debian package rabbitmq-server): the RabbitMQ rows are skipped" >&2
  RABBIT=""
fi
if ! need redis-server; then
  echo "redis-server not found: the redis rows are skipped" >&2
  ROWS=$(echo "$ROWS" | tr ' ' '\n' | grep -v '^redis' | tr '\n' ' ')
fi

if [ "$PROFILE" = release ]; then
  cargo build --release --quiet --bin localzure --example floor --example amqp_load --example fanout
  BIN_DIR=target/release
else
  cargo build --quiet --bin localzure --example floor --example amqp_load --example fanout
  BIN_DIR=target/debug
fi
LZ=$PWD/$BIN_DIR/localzure
FLOOR=$PWD/$BIN_DIR/examples/floor
AMQP_LOAD=$PWD/$BIN_DIR/examples/amqp_load
FANOUT=$PWD/$BIN_DIR/examples/fanout

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lz-bench.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if declare -F stop_rabbit >/dev/null; then stop_rabbit; fi
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

# CPU time (user + system, clock ticks) process $1 has used so far.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
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
    sqlite) env+=(LOCALZURE_STORAGE_TYPE=sqlite "LOCALZURE_SQLITE_PATH=$data/servicebus.db") ;;
    sqlite-*) env+=(LOCALZURE_STORAGE_TYPE=sqlite "LOCALZURE_SQLITE_PATH=$data/servicebus.db"
      "LOCALZURE_WAL_SYNC=${row#sqlite-}") ;;
    json) env+=(LOCALZURE_STORAGE_TYPE=json "LOCALZURE_JSON_PATH=$data") ;;
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
  AMQP_ADDR=$(wait_line "$log" "listening on amqp://" "$SERVER_PID" \
    | sed -E 's#.*listening on amqp://([^ ]+).*#\1#')
  curl -sf -X PUT -H 'Content-Type: application/atom+xml' \
    --data '<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"><MaxSizeInMegabytes>81920</MaxSizeInMegabytes></QueueDescription></content></entry>' \
    "http://$ADDR/bench" >/dev/null
}

stop_row() {
  stop "$SERVER_PID"
  if [ -n "$REDIS_PID" ]; then stop "$REDIS_PID"; REDIS_PID=""; fi
}

# Each section's table and target lines go to stdout and to $SUMMARY; with BENCH_ENFORCE=1
# the run fails at the end when any line says NOT MET.
SUMMARY=$WORK/summary
: >"$SUMMARY"
echo "bench: $(date -u +%FT%TZ) profile=$PROFILE sections=[$SECTIONS] $(nproc) cores" >&2

if section http; then
RESULTS=$WORK/results.tsv
: >"$RESULTS"
echo "== http: duration=$DURATION runs=$RUNS connections=[$CONNECTIONS] wrk -t$THREADS" >&2
# Runs interleave the rows (run 1 of every row, then run 2, ...): this machine's speed drifts
# over minutes, and consecutive runs of one row would carry that drift into the ratios.
for conns in $CONNECTIONS; do
  for run in $(seq "$RUNS"); do
    for row in $ROWS; do
      start_row "$row"
      cpu0=$(cpu_ticks "$SERVER_PID")
      out=$(wrk -t"$THREADS" -c"$conns" -d"$DURATION" -s "$WORK/send.lua" "http://$ADDR/bench/messages" 2>&1) || true
      cpu1=$(cpu_ticks "$SERVER_PID")
      stop_row
      rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
      reqs=$(echo "$out" | awk '/requests in/ {print $1}')
      # The server's own CPU time per request (user + system, from /proc), microseconds:
      # what LocalZure (or the floor) spends, apart from the load generator sharing the cores.
      cpu_us=$(awk -v a="$cpu0" -v b="$cpu1" -v n="${reqs:-0}" -v hz="$CLK_TCK" \
        'BEGIN { if (n > 0) printf "%.2f", (b - a) / hz * 1e6 / n; else print "0" }')
      bad=$(echo "$out" | awk '/Non-2xx or 3xx responses:/ {print $NF}')
      errs=$(echo "$out" | awk '/Socket errors:/ {print}')
      if [ -z "$rps" ] || [ -n "$bad" ]; then
        echo "$row c=$conns run $run failed (non-2xx: ${bad:-0}):" >&2; echo "$out" >&2; exit 1
      fi
      [ -z "$errs" ] || echo "$row c=$conns run $run: $errs" >&2
      printf '%s\t%s\t%s\t%s\n' "$conns" "$row" "$rps" "$cpu_us" >>"$RESULTS"
      echo "  $row c=$conns run $run: $rps req/s, server CPU $cpu_us us/req" >&2
    done
  done
done

python3 - "$RESULTS" <<'PY' | tee -a "$SUMMARY"
import statistics, sys
rows = {}
cpu = {}
for line in open(sys.argv[1]):
    c, row, rps, cpu_us = line.rstrip("\n").split("\t")
    rows.setdefault((int(c), row), []).append(float(rps))
    cpu.setdefault((int(c), row), []).append(float(cpu_us))
conns = sorted({c for c, _ in rows})
order = []
for _, r in rows:
    if r not in order:
        order.append(r)
med = {k: statistics.median(v) for k, v in rows.items()}
print("| connections | row | req/s median | min | max | vs in-memory | vs floor | server CPU µs/req |")
print("|---|---|---|---|---|---|---|---|")
for c in conns:
    for r in order:
        v = rows.get((c, r))
        if not v:
            continue
        mem = med.get((c, "in-memory"))
        floor = med.get((c, "floor"))
        vm = f"{med[(c, r)] / mem:.2f}x" if mem else "-"
        vf = f"{med[(c, r)] / floor:.2f}x" if floor else "-"
        us = statistics.median(cpu[(c, r)])
        print(f"| {c} | {r} | {med[(c, r)]:,.0f} | {min(v):,.0f} | {max(v):,.0f} | {vm} | {vf} | {us:.1f} |")
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
PY
fi

# ----- amqp: LocalZure against RabbitMQ -------------------------------------------------------

RABBIT_PID=""
RABBIT_DIR=""
# A private RabbitMQ node: its own node name, data and log directories, enabled-plugins file
# and Erlang cookie in the work directory; AMQP listener, distribution port and epmd on free
# ports (RABBITMQ_NODE_PORT, RABBITMQ_DIST_PORT, ERL_EPMD_PORT). The rabbitmq_amqp1_0 plugin
# serves AMQP 1.0 on the same listener as AMQP 0-9-1 (it answers the protocol header).
start_rabbit() {
  RABBIT_DIR=$WORK/rabbit
  rm -rf "$RABBIT_DIR"; mkdir -p "$RABBIT_DIR"
  local port dist epmd
  port=$(free_port); dist=$(free_port); epmd=$(free_port)
  echo "[rabbitmq_amqp1_0]." >"$RABBIT_DIR/enabled_plugins"
  printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "$port" \
    >"$RABBIT_DIR/rabbitmq.conf"
  echo "$epmd" >"$RABBIT_DIR/epmd_port"
  (cd "$RABBIT_DIR" && exec env HOME="$RABBIT_DIR" \
    RABBITMQ_NODENAME="lzbench$$@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$port" RABBITMQ_DIST_PORT="$dist" ERL_EPMD_PORT="$epmd" \
    RABBITMQ_MNESIA_BASE="$RABBIT_DIR/mnesia" RABBITMQ_LOG_BASE="$RABBIT_DIR/log" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$RABBIT_DIR/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$RABBIT_DIR/rabbitmq.conf" RABBITMQ_PID_FILE="$RABBIT_DIR/pid" \
    RABBITMQ_PLUGINS_EXPAND_DIR="$RABBIT_DIR/plugins-expand" \
    RABBITMQ_GENERATED_CONFIG_DIR="$RABBIT_DIR/config" RABBITMQ_SCHEMA_DIR="$RABBIT_DIR/schema" \
    "$RABBIT" </dev/null >"$RABBIT_DIR/stdout" 2>&1) &
  RABBIT_PID=$!
  local ok=""
  for _ in $(seq 600); do
    if grep -q "Starting broker... completed" "$RABBIT_DIR/stdout" 2>/dev/null; then ok=1; break; fi
    kill -0 "$RABBIT_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$ok" ]; then
    echo "rabbitmq-server did not start; its output:" >&2; cat "$RABBIT_DIR/stdout" >&2
    return 1
  fi
  RABBIT_URL="amqp://guest:guest@127.0.0.1:$port"
}

# Stops the node (SIGTERM to the server process, then its epmd through its port).
stop_rabbit() {
  [ -n "$RABBIT_PID" ] || return 0
  local beam
  beam=$(cat "$RABBIT_DIR/pid" 2>/dev/null || true)
  stop "$RABBIT_PID"
  if [ -n "$beam" ]; then stop "$beam"; fi
  ERL_EPMD_PORT=$(cat "$RABBIT_DIR/epmd_port") epmd -kill >/dev/null 2>&1 || true
  RABBIT_PID=""
}

# One amqp_load run; appends "broker phase links rate" to $AMQP_RESULTS (rate "failed" when
# the run failed or timed out: the table shows it and the run goes on).
amqp_run() { # broker url address phase links
  local out rate
  if out=$(AMQP_LOAD_TIMEOUT_SECS=$AMQP_TIMEOUT "$AMQP_LOAD" "$2" "$3" "$4" "$5" \
    "$AMQP_MESSAGES" "$AMQP_WINDOW" 2>&1); then
    rate=$(echo "$out" | sed -nE 's/.* rate=([0-9.]+).*/\1/p')
  else
    echo "  amqp_load $1 $4 links=$5 failed: $out" >&2
    rate=failed
  fi
  printf '%s\t%s\t%s\t%s\n' "$1" "$4" "$5" "$rate" >>"$AMQP_RESULTS"
  echo "  amqp $1 $4 links=$5: $rate msg/s" >&2
  [ "$rate" != failed ]
}

if section amqp; then
  AMQP_RESULTS=$WORK/amqp.tsv
  : >"$AMQP_RESULTS"
  echo "== amqp: $AMQP_MESSAGES x 1 KB per row, links [$AMQP_LINKS], $AMQP_RUNS run(s)" >&2
  for run in $(seq "$AMQP_RUNS"); do
    for links in $AMQP_LINKS; do
      # Each run a fresh broker: the send phase fills the queue the receive phase drains.
      start_row in-memory
      amqp_run localzure "amqp://$AMQP_ADDR" bench send "$links" \
        && amqp_run localzure "amqp://$AMQP_ADDR" bench receive "$links" || true
      stop_row
      if [ -n "$RABBIT" ]; then
        if start_rabbit; then
          # /queue/NAME: the plugin declares the queue and routes through the default exchange.
          amqp_run rabbitmq "$RABBIT_URL" /queue/bench send "$links" \
            && amqp_run rabbitmq "$RABBIT_URL" /queue/bench receive "$links" || true
        fi
        stop_rabbit
      fi
    done
  done
  python3 - "$AMQP_RESULTS" <<'PY' | tee -a "$SUMMARY"
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    broker, phase, links, rate = line.strip().split("\t")
    rows.setdefault((phase, int(links), broker), [])
    if rate != "failed":
        rows[(phase, int(links), broker)].append(float(rate))
print("| AMQP 1.0, 1 KB | links | LocalZure msg/s (median) | RabbitMQ msg/s (median) | ratio |")
print("|---|---|---|---|---|")
targets = []
for phase, name in (("send", "send, settled by the broker"), ("receive", "peek-lock receive + accept")):
    for links in sorted({l for p, l, _ in rows if p == phase}):
        lz = rows.get((phase, links, "localzure"))
        rb = rows.get((phase, links, "rabbitmq"))
        m_lz = statistics.median(lz) if lz else None
        m_rb = statistics.median(rb) if rb else None
        ratio = f"{m_lz / m_rb:.2f}x" if m_lz and m_rb else "-"
        show = lambda m, runs: f"{m:,.0f}" if m else ("failed" if runs is not None else "-")
        print(f"| {name} | {links} | {show(m_lz, lz)} | {show(m_rb, rb)} | {ratio} |")
        if m_lz and m_rb:
            targets.append((f"{phase} {links} link(s)", m_lz / m_rb))
print()
for name, r in targets:
    print(f"target amqp {name} LocalZure vs RabbitMQ: {r:.2f}x (>= 2.00x) {'met' if r >= 2 else 'NOT MET'}")
PY
fi

# ----- fanout ---------------------------------------------------------------------------------

if section fanout; then
  echo "== fanout: $FANOUT_MESSAGES messages" >&2
  out=$("$FANOUT" "$FANOUT_MESSAGES")
  echo "$out" >&2
  us=$(echo "$out" | sed -nE 's/.*us_per_fanout=([0-9.]+).*/\1/p')
  python3 - "$us" <<'PY' | tee -a "$SUMMARY"
import sys
us = float(sys.argv[1])
print(f"| fan-out of one 1 KB message to 100 TrueFilter subscriptions | {us:.2f} us | {us * 10:.0f} ns per copy |")
print(f"target fan-out: {us:.2f} us (<= 30 us) {'met' if us <= 30 else 'NOT MET'}")
PY
fi

# ----- memory ---------------------------------------------------------------------------------

# VmRSS of a process in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

if section memory; then
  MEM_RESULTS=$WORK/memory.tsv
  : >"$MEM_RESULTS"
  echo "== memory: $MEMORY_MESSAGES x 1 KB stored, backends [$MEMORY_BACKENDS]" >&2
  for backend in $MEMORY_BACKENDS; do
    start_row "$backend"
    before=$(rss_kib "$SERVER_PID")
    out=$("$AMQP_LOAD" "amqp://$AMQP_ADDR" bench send 16 "$MEMORY_MESSAGES" 2>&1) || {
      echo "memory $backend: amqp_load failed: $out" >&2; exit 1; }
    # Settled sends are stored; wait until VmRSS stops moving (background flushes).
    after=$(rss_kib "$SERVER_PID")
    for _ in $(seq 20); do
      sleep 0.25
      now=$(rss_kib "$SERVER_PID")
      [ "$now" = "$after" ] && break
      after=$now
    done
    stop_row
    printf '%s\t%s\t%s\n' "$backend" "$before" "$after" >>"$MEM_RESULTS"
    echo "  memory $backend: VmRSS ${before} KiB before, ${after} KiB after" >&2
  done
  python3 - "$MEM_RESULTS" "$MEMORY_MESSAGES" <<'PY' | tee -a "$SUMMARY"
import sys
n = int(sys.argv[2])
print(f"| backend | VmRSS before | VmRSS with {n:,} x 1 KB stored | bytes per message | vs payload |")
print("|---|---|---|---|---|")
rows = []
for line in open(sys.argv[1]):
    backend, before, after = line.split("\t")
    per = (int(after) - int(before)) * 1024 / n
    rows.append((backend, per / 1024))
    print(f"| {backend} | {int(before) / 1024:.1f} MiB | {int(after) / 1024:.1f} MiB | {per:,.0f} | {per / 1024:.2f}x |")
print()
for backend, r in rows:
    print(f"target memory {backend}: {r:.2f}x payload (<= 1.30x) {'met' if r <= 1.3 else 'NOT MET'}")
PY
fi

missed=$(grep -c "NOT MET" "$SUMMARY" || true)
if [ "$missed" -gt 0 ] && [ "$ENFORCE" = 1 ]; then
  echo "$missed target(s) missed" >&2
  exit 1
fi

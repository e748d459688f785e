#!/usr/bin/env bash
# CI proof of the Docker packaging (issue 5), end to end against a real Docker engine:
#   image built and small; compose up; healthy; messages from the host and from the example app;
#   `stop` → final snapshot + compaction logged, exit 0 within the stop window; up again → the
#   same messages; purge through docker exec → empty; SIGKILL under load → every acknowledged
#   message is there after restart; `docker run --read-only` → time to healthy, idle memory;
#   the `redis` compose profile (LocalZure on Redis) keeps its state across restart and SIGKILL.
# Everything it starts is removed on exit (trap). Needs: docker engine, docker compose or
# docker-compose, curl. Offline machines: run scripts/docker-offline-base.sh first.
#
# Environment: IMAGE (localzure:latest), MAX_IMAGE_BYTES (25000000), HOST_PORT (5300),
# COMPOSE (command; default `docker compose` when available, else docker-compose),
# SKIP_BUILD=1 (use the existing image).
set -euo pipefail
# With pipefail, `producer | grep -q X` can fail although X is there: grep -q exits at the first
# match and the producer (docker logs, curl, ...) dies of SIGPIPE. Checks therefore read the
# whole input: `producer | grep X >/dev/null`.
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localzure:latest}
APP_IMAGE=localzure-example-app:latest
MAX_IMAGE_BYTES=${MAX_IMAGE_BYTES:-25000000}
URL=http://localhost:${HOST_PORT:-5300}
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-localzure-ci}
C=localzure                     # container_name in docker-compose.yml
RUN_C=localzure-run-test        # the `docker run --read-only` measurement container
RUN_VOL=localzure-run-test-data
WORK=$(mktemp -d "${TMPDIR:-/tmp}/localzure-docker-test.XXXXXX")

# Without the buildx plugin, a current docker CLI can only use the classic builder.
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi
if [ -n "${COMPOSE:-}" ]; then
  read -r -a COMPOSE_CMD <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  COMPOSE_CMD=(docker compose)
else
  COMPOSE_CMD=(docker-compose)
fi
compose() { "${COMPOSE_CMD[@]}" "$@"; }

PASSED=0
FAILED=0
T0=$SECONDS
declare -A MEASURED
step() { echo; echo "== [$((SECONDS - T0))s] $*"; }
ok() { PASSED=$((PASSED + 1)); echo "  ok: $*"; }
die() {
  FAILED=$((FAILED + 1))
  echo "  FAILED: $*" >&2
  exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

cleanup() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ]; then
    echo
    echo "== diagnostics (exit $rc)"
    compose ps 2>&1 | sed 's/^/  /'
    docker logs --tail 40 "$C" 2>&1 | sed 's/^/  [localzure] /'
  fi
  echo
  echo "== teardown"
  compose --profile redis down -v --remove-orphans >/dev/null 2>&1
  docker rm -f "$RUN_C" >/dev/null 2>&1
  docker volume rm -f "$RUN_VOL" >/dev/null 2>&1
  jobs -p | xargs -r kill 2>/dev/null
  rm -rf "$WORK"
  echo "  removed the compose project $COMPOSE_PROJECT_NAME, its volume and $RUN_C"
  echo
  echo "docker-test: $PASSED passed, $((FAILED + (rc != 0 && FAILED == 0 ? 1 : 0))) failed"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

health_of() { docker container inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1" 2>/dev/null || echo missing; }

wait_healthy() { # container deadline-seconds
  local end=$((SECONDS + $2)) s
  while :; do
    s=$(health_of "$1")
    [ "$s" = healthy ] && return 0
    case $s in exited | dead | unhealthy | missing) die "$1 is $s while waiting for healthy" ;; esac
    [ $SECONDS -lt "$end" ] || die "$1 not healthy within $2 s (last: $s)"
    sleep 0.1
  done
}

QUEUE_XML='<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"/></content></entry>'
create_queue() {
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$URL/$1" -H 'Content-Type: application/atom+xml' -d "$QUEUE_XML")
  case $code in 201 | 409) ;; *) die "create queue $1: HTTP $code" ;; esac
}
send() { # queue id → HTTP code; the body is the id
  curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -X POST "$URL/$1/messages" \
    -H "BrokerProperties: {\"MessageId\":\"$2\"}" -d "$2" 2>/dev/null || true
}
stat_field() { # field from `storage stats --json` (totals.active, queues, ...)
  bash scripts/storage.sh stats --json | grep -o "\"$1\": *[0-9]*" | head -n1 | grep -o '[0-9]*$'
}
logs_since() { docker logs --since "$1" "$C" 2>&1 | sed 's/\x1b\[[0-9;]*m//g'; }

# ------------------------------------------------------------------------------------ setup
step "engine and tools"
docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}' || die "no Docker engine (scripts/install-docker.sh)"
echo "  compose: ${COMPOSE_CMD[*]} ($("${COMPOSE_CMD[@]}" version --short 2>/dev/null || "${COMPOSE_CMD[@]}" version | head -n1))"
command -v curl >/dev/null || die "curl is needed on the host"
if docker container inspect "$C" >/dev/null 2>&1 &&
  [ "$(docker container inspect -f '{{index .Config.Labels "com.docker.compose.project"}}' "$C")" != "$COMPOSE_PROJECT_NAME" ]; then
  die "a container named $C exists outside project $COMPOSE_PROJECT_NAME; remove it first"
fi
compose down -v --remove-orphans >/dev/null 2>&1 || true
docker rm -f "$RUN_C" >/dev/null 2>&1 || true
docker volume rm -f "$RUN_VOL" >/dev/null 2>&1 || true

# ------------------------------------------------------------------------------------ image
step "build the image ($IMAGE) and the example app"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  t=$(now)
  docker build -t "$IMAGE" \
    --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" . >"$WORK/build.log" 2>&1 ||
    { tail -n 40 "$WORK/build.log"; die "docker build"; }
  MEASURED[build]="$(elapsed "$t") s"
  t=$(now)
  docker build -t "$APP_IMAGE" examples/app >"$WORK/build-app.log" 2>&1 ||
    { tail -n 40 "$WORK/build-app.log"; die "docker build examples/app"; }
  echo "  built in ${MEASURED[build]} (example app: $(elapsed "$t") s)"
fi
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
MEASURED[size]="$size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f MB", s / 1e6 }'))"
[ "$size" -lt "$MAX_IMAGE_BYTES" ] || die "image is $size bytes, over $MAX_IMAGE_BYTES"
ok "image size ${MEASURED[size]} < $MAX_IMAGE_BYTES"
user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
[ -n "$user" ] && [ "${user%%:*}" != 0 ] && [ "${user%%:*}" != root ] || die "image runs as '$user'"
hc=$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$IMAGE")
[ "$hc" = '["CMD","localzure","health"]' ] || die "healthcheck is $hc"
ok "image runs as user $user, healthcheck $hc, stop signal $(docker image inspect -f '{{.Config.StopSignal}}' "$IMAGE")"

# ------------------------------------------------------------------------------------ compose up
step "compose up -d; wait healthy; the example app runs once localzure is healthy"
t=$(now)
compose up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; die "compose up"; }
wait_healthy "$C" 60
echo "  healthy $(elapsed "$t") s after compose up"
[ "$(docker container inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$C")" = true ] || die "compose service is not read-only"
curl -sSf "$URL/health" | grep '"status":"healthy"' >/dev/null || die "GET /health from the host"
curl -sSf "$URL/health" | grep '"type":"sqlite"' >/dev/null || die "compose service is not on SQLite"
logs_since 0 | grep 'connection string: Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;' >/dev/null ||
  die "connection string not printed at start"
ok "localzure healthy on SQLite, read-only root, connection string logged"

step "HTTPS /health trusting only the CA from docker exec … localzure tls ca"
docker exec "$C" localzure tls ca >"$WORK/ca.pem" || die "localzure tls ca"
grep -q 'BEGIN CERTIFICATE' "$WORK/ca.pem" || die "tls ca printed no certificate"
HTTPS_URL=https://localhost:${LOCALZURE_HTTPS_HOST_PORT:-443}
curl -sSf --cacert "$WORK/ca.pem" "$HTTPS_URL/health" | grep '"status":"healthy"' >/dev/null ||
  die "GET $HTTPS_URL/health with the generated CA"
# The AMQP port sniffs TLS and HTTP too (admin clients given Endpoint=sb://localhost:5672).
curl -sSf --cacert "$WORK/ca.pem" "https://localhost:5672/health" >/dev/null || die "HTTPS on the AMQP port"
if curl -sS -o /dev/null "$HTTPS_URL/health" 2>/dev/null; then die "HTTPS verified without the CA"; fi
ok "HTTPS health on 443 and on 5672 with the CA from localzure tls ca; refused without it"

create_queue orders
for i in 1 2 3 4 5; do
  [ "$(send orders "host-$i")" = 201 ] || die "send host-$i"
done
ok "5 messages sent from the host to orders"

app=""
end=$((SECONDS + 120))
until [ -n "$app" ]; do
  app=$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --filter label=com.docker.compose.service=example-app | head -n1)
  [ $SECONDS -lt $end ] || die "example-app container never created"
  [ -n "$app" ] || sleep 0.2
done
app_rc=$(timeout 120 docker wait "$app") || die "example-app did not finish within 120 s"
docker logs "$app" 2>&1 | sed 's/^/  /'
[ "$app_rc" = 0 ] || die "example-app exited $app_rc"
docker logs "$app" 2>&1 | grep 'round trip ok' >/dev/null || die "example-app round trip"
ok "example app (compose network, http://localzure:5300): round trip + 3 messages to orders"

active=$(stat_field active)
[ "$active" = 8 ] || die "expected 8 active messages, stats say $active"
ok "storage stats through docker exec: 8 active messages"

# ------------------------------------------------------------------------------------ stop
step "compose stop: SIGTERM → final snapshot + compaction, exit 0 within the stop window"
since=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
t=$(now)
compose stop >/dev/null 2>&1 || die "compose stop"
MEASURED[stop]="$(elapsed "$t") s"
rc=$(docker container inspect -f '{{.State.ExitCode}}' "$C")
logs_since "$since" | tail -n 8 | sed 's/^/  /'
[ "$rc" = 0 ] || die "localzure exited $rc on SIGTERM"
logs_since "$since" | grep 'final snapshot written' >/dev/null || die "no 'final snapshot written' in the logs"
logs_since "$since" | grep 'storage compacted' >/dev/null || die "no 'storage compacted' in the logs"
awk -v s="${MEASURED[stop]% s}" 'BEGIN { exit !(s < 10) }' || die "stop took ${MEASURED[stop]}"
ok "stopped in ${MEASURED[stop]}, exit 0, final snapshot + compaction logged"

# ------------------------------------------------------------------------------------ restart
step "compose up -d localzure again: the same messages"
since=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
compose up -d localzure >"$WORK/up2.log" 2>&1 || { cat "$WORK/up2.log"; die "compose up (again)"; }
wait_healthy "$C" 60
: >"$WORK/locks"
: >"$WORK/ids"
for _ in $(seq 1 20); do
  hdr=$(curl -sS -D - -o /dev/null -X POST "$URL/orders/messages/head?timeout=1")
  code=$(printf '%s' "$hdr" | head -n1 | awk '{print $2}')
  [ "$code" = 201 ] || break
  printf '%s\n' "$hdr" | grep -i '^location:' | sed 's/^[^:]*: *//; s/\r$//' >>"$WORK/locks"
  printf '%s\n' "$hdr" | grep -i '^brokerproperties:' | grep -o '"MessageId":"[^"]*"' | cut -d'"' -f4 >>"$WORK/ids"
done
got=$(sort "$WORK/ids" | tr '\n' ' ')
want="app-1 app-2 app-3 host-1 host-2 host-3 host-4 host-5 "
[ "$got" = "$want" ] || die "after restart received [$got], expected [$want]"
while read -r loc; do # give them back (abandon)
  [ "$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$loc")" = 200 ] || die "unlock $loc"
done <"$WORK/locks"
[ "$(stat_field active)" = 8 ] || die "messages not back after unlock"
ok "after restart: the same 8 messages received (peek-lock), then abandoned"

# ------------------------------------------------------------------------------------ purge
step "scripts/storage.sh purge --yes (docker exec) → empty"
if bash scripts/storage.sh purge </dev/null >"$WORK/purge-noconfirm.log" 2>&1; then die "purge without --yes did not refuse"; fi
bash scripts/storage.sh purge --yes | sed 's/^/  /'
bash scripts/storage.sh stats | sed 's/^/  /'
[ "$(stat_field messages)" = 0 ] || die "messages left after purge"
[ "$(stat_field queues)" = 0 ] || die "queues left after purge"
[ "$(curl -sS -o /dev/null -w '%{http_code}' "$URL/orders")" = 404 ] || die "orders still exists"
[ "$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$URL/orders/messages/head?timeout=1")" != 200 ] || die "a message came back"
ok "purge: refused without --yes; with --yes 0 queues, 0 messages, orders is 404"

# ------------------------------------------------------------------------------------ SIGKILL
step "docker kill (SIGKILL) under load → every acknowledged message after restart"
create_queue load
load_loop() { # worker: send until the first failure or 30 s; record acknowledged ids
  local w=$1 i=0 end=$((SECONDS + 30))
  while [ $SECONDS -lt $end ]; do
    i=$((i + 1))
    if [ "$(send load "w$w-$i")" = 201 ]; then echo "w$w-$i" >>"$WORK/acked.$w"; else break; fi
  done
}
for w in 1 2 3 4; do : >"$WORK/acked.$w"; load_loop "$w" & done
sleep 3
before=$(cat "$WORK"/acked.* | wc -l)
docker kill -s KILL "$C" >/dev/null
wait
acked=$(cat "$WORK"/acked.* | sort -u | tee "$WORK/acked" | wc -l)
echo "  killed after $before acknowledged sends; $acked acknowledged in all"
[ "$acked" -ge 100 ] || die "too little load before the kill ($acked)"
[ "$(docker container inspect -f '{{.State.ExitCode}}' "$C")" = 137 ] || die "not killed by SIGKILL"
since=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
compose up -d localzure >"$WORK/up3.log" 2>&1 || { cat "$WORK/up3.log"; die "compose up (after kill)"; }
wait_healthy "$C" 60
logs_since "$since" | grep -E 'Replayed|torn|Persistence initialized' | sed 's/^/  /'
: >"$WORK/received"
while :; do
  body=$(curl -sS -w '\n%{http_code}' -X DELETE "$URL/load/messages/head?timeout=1")
  [ "${body##*$'\n'}" = 200 ] || break
  echo "${body%$'\n'*}" >>"$WORK/received"
done
received=$(sort -u "$WORK/received" | tee "$WORK/received.sorted" | wc -l)
[ "$received" = "$(wc -l <"$WORK/received")" ] || die "duplicates among received messages"
missing=$(comm -23 "$WORK/acked" "$WORK/received.sorted" | wc -l)
extra=$(comm -13 "$WORK/acked" "$WORK/received.sorted" | wc -l)
echo "  received $received after restart: $missing acknowledged missing, $extra unacknowledged extra (in flight at the kill)"
[ "$missing" = 0 ] || die "$missing acknowledged messages lost: $(comm -23 "$WORK/acked" "$WORK/received.sorted" | head -n5 | tr '\n' ' ')"
[ "$extra" -le 4 ] || die "$extra messages that were never sent"
ok "SIGKILL under load: all $acked acknowledged messages received after restart"

MEASURED[idle_mem_compose]=$(docker stats --no-stream --format '{{.MemUsage}}' "$C" | cut -d/ -f1 | xargs)

# ------------------------------------------------------------------------------------ docker run
step "docker run --read-only (+ writable /data, JSON storage): time to healthy, idle memory"
compose stop >/dev/null 2>&1 # free ports 5300/5672 for the measurement container
t=$(now)
docker run -d --name "$RUN_C" --read-only -v "$RUN_VOL:/data" -e LOCALZURE_STORAGE_TYPE=json \
  -p "127.0.0.1:${HOST_PORT:-5300}:5300" "$IMAGE" >/dev/null
ready=""
end=$((SECONDS + 60))
until [ "$(health_of "$RUN_C")" = healthy ]; do
  if [ -z "$ready" ] && docker exec "$RUN_C" localzure health 2>/dev/null; then ready=$(elapsed "$t"); fi
  [ $SECONDS -lt $end ] || die "$RUN_C not healthy within 60 s"
  sleep 0.1
done
MEASURED[healthy]="$(elapsed "$t") s (first 'localzure health' success: ${ready:-<0.1} s; HEALTHCHECK interval 2 s)"
ok "docker run → healthy in ${MEASURED[healthy]}"
create_queue runq
[ "$(send runq r-1)" = 201 ] || die "send on the read-only container"
LOCALZURE_CONTAINER=$RUN_C bash scripts/storage.sh snapshot >/dev/null || die "snapshot"
LOCALZURE_CONTAINER=$RUN_C bash scripts/storage.sh compact >/dev/null || die "compact"
LOCALZURE_CONTAINER=$RUN_C bash scripts/storage.sh export /data/export.json >/dev/null || die "export"
docker cp "$RUN_C:/data/export.json" "$WORK/export.json" || die "docker cp export"
grep -q '"r-1"' "$WORK/export.json" || die "export lacks the message"
ok "read-only root + writable /data (JSON): send, snapshot, compact, export + docker cp"
sleep 5
MEASURED[idle_mem]=$(docker stats --no-stream --format '{{.MemUsage}}' "$RUN_C" | cut -d/ -f1 | xargs)
docker stats --no-stream "$RUN_C" | sed 's/^/  /'
t=$(now)
docker stop "$RUN_C" >/dev/null
[ "$(docker container inspect -f '{{.State.ExitCode}}' "$RUN_C")" = 0 ] || die "$RUN_C exit code"
docker run --rm -v "$RUN_VOL:/data" -e LOCALZURE_STORAGE_TYPE=json --entrypoint localzure "$IMAGE" storage stats |
  grep 'Messages: *1 active' >/dev/null || die "JSON state not kept across restart"
ok "docker stop in $(elapsed "$t") s (exit 0); offline storage stats sees the message"

# ------------------------------------------------------------------------------ redis profile
step "compose --profile redis: LocalZure on Redis; state survives a restart and a SIGKILL"
RC=localzure-redis # container_name of the profile's emulator (ports 5301/5673)
RURL=http://localhost:5301
compose --profile redis up -d redis localzure-redis >"$WORK/up-redis.log" 2>&1 ||
  { cat "$WORK/up-redis.log"; die "compose --profile redis up"; }
wait_healthy localzure-redis-server 60
wait_healthy "$RC" 60
curl -sSf "$RURL/health" | grep '"type":"redis"' >/dev/null || die "$RC is not on Redis: $(curl -sS "$RURL/health")"
URL=$RURL create_queue rq
for id in r-1 r-2; do [ "$(URL=$RURL send rq "$id")" = 201 ] || die "send $id to $RC"; done
compose --profile redis restart localzure-redis >/dev/null 2>&1 || die "restart $RC"
wait_healthy "$RC" 60
LOCALZURE_CONTAINER=$RC bash scripts/storage.sh stats | grep 'Messages: *2 active' >/dev/null ||
  die "state not kept across a restart of $RC: $(LOCALZURE_CONTAINER=$RC bash scripts/storage.sh stats)"
[ "$(URL=$RURL send rq r-3)" = 201 ] || die "send r-3"
docker kill -s KILL "$RC" >/dev/null
docker start "$RC" >/dev/null
wait_healthy "$RC" 60
LOCALZURE_CONTAINER=$RC bash scripts/storage.sh stats | grep 'Messages: *3 active' >/dev/null ||
  die "acknowledged send lost across SIGKILL of $RC"
docker logs "$RC" 2>&1 | grep 'took over the stale Redis lease' >/dev/null ||
  die "the restarted container did not take over its own stale lease"
ok "redis profile: compose up, restart keeps 2 messages, SIGKILL keeps the acknowledged third (stale lease taken over)"

step "measured"
echo "  image size:                 ${MEASURED[size]}   (docker image inspect -f '{{.Size}}' $IMAGE)"
[ -n "${MEASURED[build]:-}" ] && echo "  image build:                ${MEASURED[build]}"
echo "  docker run → healthy:       ${MEASURED[healthy]}"
echo "  idle memory (fresh):        ${MEASURED[idle_mem]}   (docker stats --no-stream $RUN_C)"
echo "  idle memory (after tests):  ${MEASURED[idle_mem_compose]}   (docker stats --no-stream $C)"
echo "  compose stop (SIGTERM):     ${MEASURED[stop]}"
echo "  total:                      $((SECONDS - T0)) s"

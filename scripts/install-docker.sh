#!/usr/bin/env bash
# Installs a Docker engine (Debian's docker.io), docker-compose 1.29 and debootstrap with apt,
# then starts dockerd when it is not running and waits for its socket. Idempotent; run as root
# on a Debian-based machine. On a machine that already has a running engine it does nothing.
set -euo pipefail

SOCK=/var/run/docker.sock
DEADLINE_S=${DOCKERD_START_TIMEOUT:-60}

log() { echo "[install-docker] $*"; }

daemon_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if [ "$(id -u)" != 0 ]; then
  echo "install-docker.sh must run as root" >&2
  exit 1
fi

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" iptables ca-certificates >/dev/null
else
  log "docker.io, docker-compose and debootstrap already installed"
fi

if daemon_up; then
  log "dockerd already running ($(docker version --format '{{.Server.Version}}'))"
  exit 0
fi

# No systemd in most containers/CI sandboxes: start dockerd directly, detached, logging to a file.
log "starting dockerd"
mkdir -p /var/log
nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &
echo $! >/var/run/dockerd-install.pid

end=$((SECONDS + DEADLINE_S))
until [ -S "$SOCK" ] && daemon_up; do
  if [ $SECONDS -ge $end ]; then
    log "dockerd did not come up within ${DEADLINE_S}s; last log lines:"
    tail -n 40 /var/log/dockerd.log >&2 || true
    exit 1
  fi
  if ! kill -0 "$(cat /var/run/dockerd-install.pid)" 2>/dev/null; then
    log "dockerd exited; last log lines:"
    tail -n 40 /var/log/dockerd.log >&2 || true
    exit 1
  fi
  sleep 0.5
done
log "dockerd up ($(docker version --format '{{.Server.Version}}'), storage driver $(docker info --format '{{.Driver}}' 2>/dev/null))"

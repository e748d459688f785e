#!/usr/bin/env bash
# The web console in a real browser (issue 20): Debian's headless Chromium driven by
# playwright-core (pinned in tests/browser/package-lock.json) against the real binary on an
# ephemeral port with a temporary data dir. Installs Chromium with apt-get when missing (needs
# root), then `npm ci`, builds, and runs `node --test tests/browser/`. Screenshots:
# tests/browser/artifacts/*.png.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    echo "== apt-get install chromium"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium
fi
export CHROMIUM

echo "== npm ci (tests/browser)"
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error

echo "== cargo build"
cargo build --quiet
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$PWD/$TARGET_DIR" ;; esac
export LOCALZURE_BIN="${LOCALZURE_BIN:-$TARGET_DIR/debug/localzure}"

echo "== node --test tests/browser ($("$CHROMIUM" --version 2>/dev/null | head -1))"
exec node --test tests/browser/

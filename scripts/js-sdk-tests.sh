#!/usr/bin/env bash
# The JavaScript SDK suite: the official @azure/service-bus package (pinned in
# tests/js/package-lock.json, installed from npm into tests/js/node_modules) against the real
# binary over AMQP: everyday queue operations (tests/js/messaging.test.mjs) and what the Python
# SDK has no API for, subscription rules (ServiceBusRuleManager, tests/js/rules.test.mjs).
# Needs node >= 18 and npm; the tests start the binary on ephemeral ports with a temporary
# data dir.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== npm ci (tests/js)"
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error

echo "== cargo build"
cargo build --quiet
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$PWD/$TARGET_DIR" ;; esac
export LOCALZURE_BIN="${LOCALZURE_BIN:-$TARGET_DIR/debug/localzure}"

echo "== node --test tests/js (@azure/service-bus $(node -p 'require("./tests/js/node_modules/@azure/service-bus/package.json").version'))"
exec node --test tests/js/

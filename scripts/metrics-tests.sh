#!/usr/bin/env bash
# The /metrics and JSON-log suite: prometheus_client's text parser over the real binary's
# /metrics, REST traffic and the official Python SDK over AMQP. Creates .venv-metrics
# (prometheus_client, requests, pytest, azure-servicebus from PyPI), builds the binary, and runs
# tests/metrics (each test starts the binary on ephemeral ports).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv-metrics/bin/python ]; then
    python3 -m venv .venv-metrics
fi
.venv-metrics/bin/pip install --quiet --disable-pip-version-check prometheus_client requests pytest \
    "azure-servicebus==${AZURE_SERVICEBUS_VERSION:-7.15.*}"

echo "== cargo build"
cargo build --quiet
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$PWD/$TARGET_DIR" ;; esac
export LOCALZURE_BIN="${LOCALZURE_BIN:-$TARGET_DIR/debug/localzure}"

echo "== pytest tests/metrics"
exec .venv-metrics/bin/python -m pytest tests/metrics -q "$@"

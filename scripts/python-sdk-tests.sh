#!/usr/bin/env bash
# The Python SDK suite: the official azure-servicebus package (pure-Python AMQP) against the
# real binary. Creates .venv, installs the SDK and pytest from PyPI, builds the binary, and runs
# tests/python (the fixtures start the binary on ephemeral ports with a temporary data dir).
set -euo pipefail
cd "$(dirname "$0")/.."

SDK_VERSION="${AZURE_SERVICEBUS_VERSION:-7.15.*}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check "azure-servicebus==${SDK_VERSION}" pytest

echo "== cargo build"
cargo build --quiet
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$PWD/$TARGET_DIR" ;; esac
export LOCALZURE_BIN="${LOCALZURE_BIN:-$TARGET_DIR/debug/localzure}"

echo "== pytest tests/python (azure-servicebus $(.venv/bin/python -c 'import azure.servicebus as s; print(s.__version__)'))"
exec .venv/bin/python -m pytest tests/python -q "$@"

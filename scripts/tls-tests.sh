#!/usr/bin/env bash
# The TLS suite (issue 17): unchanged SDK clients over HTTPS, AMQPS and AMQP over WebSockets,
# trusting only the CA the binary generates. Creates .venv-tls (azure-servicebus 7.15, pytest,
# websocket-client for the SDK's WebSocket transport), builds the binary, runs tests/tls; then
# the JavaScript admin and WebSocket tests in tests/tls/js (npm ci: @azure/service-bus 7.9.5,
# ws) when node is present; and azure-servicebus 7.8.3 (uamqp) in .venv-tls78. Every server binds ephemeral ports.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv-tls/bin/python ]; then
    python3 -m venv .venv-tls
fi
.venv-tls/bin/pip install --quiet --disable-pip-version-check \
    "azure-servicebus==${AZURE_SERVICEBUS_VERSION:-7.15.*}" pytest websocket-client

echo "== cargo build"
cargo build --quiet
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$PWD/$TARGET_DIR" ;; esac
export LOCALZURE_BIN="${LOCALZURE_BIN:-$TARGET_DIR/debug/localzure}"

echo "== pytest tests/tls (azure-servicebus 7.15)"
.venv-tls/bin/python -m pytest tests/tls -q --ignore=tests/tls/uamqp78 "$@"

# azure-servicebus 7.8.3 (uamqp, no emulator mode) in its own venv, when its wheel installs.
if [ ! -x .venv-tls78/bin/python ]; then
    python3 -m venv .venv-tls78
fi
if .venv-tls78/bin/pip install --quiet --disable-pip-version-check "azure-servicebus==7.8.3" pytest; then
    echo "== pytest tests/tls/uamqp78 (azure-servicebus 7.8.3, uamqp)"
    .venv-tls78/bin/python -m pytest tests/tls/uamqp78 -q "$@"
else
    echo "azure-servicebus 7.8.3 (uamqp) does not install on $(python3 --version): skipped" >&2
fi

if [ -f tests/tls/js/package.json ]; then
    if command -v node >/dev/null; then
        echo "== node tests/tls/js"
        # NODE_EXTRA_CA_CERTS is read when Node starts: write the CA first (`localzure tls ca`
        # creates it in LOCALZURE_TLS_DIR), and the test's server reuses that directory.
        TLS_TMP="$(mktemp -d)"
        trap 'rm -rf "$TLS_TMP"' EXIT
        export LOCALZURE_TLS_DIR="$TLS_TMP/tls"
        "$LOCALZURE_BIN" tls ca > "$TLS_TMP/ca.pem"
        export NODE_EXTRA_CA_CERTS="$TLS_TMP/ca.pem"
        (cd tests/tls/js && npm ci --silent --no-audit --no-fund && node --test ./*.test.mjs)
    else
        echo "node not found: skipping tests/tls/js" >&2
        exit 1
    fi
fi

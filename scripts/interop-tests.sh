#!/usr/bin/env bash
# Interop suite (issue 16): clients outside the SDK suites, against the real binary.
#   .venv-interop: python-qpid-proton 0.40 (plain AMQP 1.0, default settings) and
#                  azure-servicebus 7.15 (pure-Python pyamqp): tests/interop
#   (azure-servicebus 7.8.3 on uamqp speaks only TLS: scripts/tls-tests.sh runs it, tests/tls/uamqp78)
#   tests/interop/js:  @azure/service-bus 7.9.5 (rhea), when node and npm are present; it
#                  starts the binary with tests/js/server.mjs, so both packages are installed.
# python-qpid-proton may build from its sdist: that needs gcc and the Python/SSL/SASL headers.
set -euo pipefail
cd "$(dirname "$0")/.."

pip_quiet() { "$1"/bin/pip install --quiet --disable-pip-version-check "${@:2}"; }
[ -x .venv-interop/bin/python ] || python3 -m venv .venv-interop
PROTON_ETC=("python-qpid-proton==0.40.*" "azure-servicebus==7.15.*" pytest)
if ! pip_quiet .venv-interop "${PROTON_ETC[@]}"; then
    # No wheel for this platform: build python-qpid-proton from its sdist.
    apt-get update >/dev/null && apt-get install -y --no-install-recommends \
        gcc python3-dev libssl-dev libsasl2-dev >/dev/null
    pip_quiet .venv-interop "${PROTON_ETC[@]}"
fi

echo "== cargo build"
cargo build --quiet
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$PWD/$TARGET_DIR" ;; esac
export LOCALZURE_BIN="${LOCALZURE_BIN:-$TARGET_DIR/debug/localzure}"

echo "== pytest tests/interop (python-qpid-proton, azure-servicebus 7.15)"
.venv-interop/bin/python -m pytest tests/interop -q "$@"

if command -v node >/dev/null && command -v npm >/dev/null; then
    echo "== node --test tests/interop/js (@azure/service-bus 7.9.5)"
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
    npm ci --prefix tests/interop/js --no-audit --no-fund --loglevel=error
    node --test tests/interop/js/
else
    echo "== tests/interop/js skipped: node and npm are needed"
fi

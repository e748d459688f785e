#!/usr/bin/env bash
# The test command: formatting, lints, then every test (unit, integration, doc).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --all-targets --locked
cargo test --doc --locked

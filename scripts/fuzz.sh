#!/usr/bin/env bash
# Fuzzing: builds the cargo-fuzz targets in fuzz/ and runs each, coverage-guided (libFuzzer),
# for FUZZ_SECONDS (default 30) from its committed seeds (fuzz/corpus/<target>/) plus what
# earlier runs grew (fuzz/corpus-grown/<target>/, git-ignored). Fails on any crash (panic),
# hang (-timeout) or memory blow-up (-rss_limit_mb) and prints the reproducer's path. Run longer with e.g. `FUZZ_SECONDS=3600 scripts/fuzz.sh`;
# FUZZ_TARGETS="atom journal" picks targets.
#
# Stable toolchain only: cargo-fuzz passes a few -Z flags to rustc, which RUSTC_BOOTSTRAP=1
# allows on stable. No sanitizer: the code under test is safe Rust, and panics (including
# integer overflow, debug assertions being on) are what the targets look for. Without a
# sanitizer libFuzzer cannot detect leaks (that needs LeakSanitizer, i.e. an ASan build, which
# roughly doubles the build and slows every run in a 40-minute CI budget); a leak in safe Rust
# is not memory-unsafe, and unbounded growth is still caught by -rss_limit_mb.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
FUZZ_TARGETS="${FUZZ_TARGETS:-atom broker_properties sql_filter journal amqp_frame}"
CARGO_FUZZ_VERSION=0.13.2

echo "== fuzz (${FUZZ_SECONDS}s per target)"
if ! cargo fuzz --version 2>/dev/null | grep "$CARGO_FUZZ_VERSION" >/dev/null; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
export RUSTC_BOOTSTRAP=1
# 16 codegen units: a much faster build (CI builds from scratch) for slightly slower runs.
FUZZ_FLAGS=(--sanitizer none --codegen-units 16)
cargo fuzz build "${FUZZ_FLAGS[@]}"

failed=()
for t in $FUZZ_TARGETS; do
    grown="fuzz/corpus-grown/$t"
    log="fuzz/corpus-grown/$t.log"
    mkdir -p "$grown"
    # -timeout: one input running this long is a hang; -rss_limit_mb: memory blow-ups fail too.
    if cargo fuzz run "${FUZZ_FLAGS[@]}" "$t" "$grown" "fuzz/corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=20 -rss_limit_mb=4096 \
        -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
        echo "fuzz $t: ok ($runs runs, $cov)"
    else
        echo "fuzz $t: FAILED"
        grep -E 'panicked|ERROR|SUMMARY' "$log" | head -5 || true
        grep -o "Test unit written to .*" "$log" | sed 's/^Test unit written to /  reproducer: /' || true
        echo "  reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $t <reproducer>"
        echo "  full log: $log"
        failed+=("$t")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: crashes in: ${failed[*]}"
    exit 1
fi
echo "fuzz: all targets ran without a crash"

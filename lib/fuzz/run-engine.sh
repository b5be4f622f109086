#!/usr/bin/env bash
# Builds the libFuzzer form of fuzz-omaha with clang and runs it for a bounded time from the
# seed corpus (new inputs go to a scratch directory, never into the repository).
#   lib/fuzz/run-engine.sh [SECONDS]      default 20
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}
if ! make -s out/fuzz/fuzz-omaha >/dev/null; then
        echo "fuzz-omaha: build with clang failed"; echo "0 passed, 1 failed"; exit 1
fi
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
mkdir -p out/test-output
if out/fuzz/fuzz-omaha -max_total_time="$secs" -max_len=8192 -timeout=10 -print_final_stats=1 \
        -artifact_prefix=out/test-output/ "$scratch" lib/fuzz/corpus/omaha >out/test-output/fuzz-omaha.log 2>&1; then
        grep -E '^stat::number_of_executed_units' out/test-output/fuzz-omaha.log || true
        echo "1 passed, 0 failed"
else
        tail -n 40 out/test-output/fuzz-omaha.log
        echo "0 passed, 1 failed"; exit 1
fi

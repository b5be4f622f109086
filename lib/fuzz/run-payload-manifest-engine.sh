#!/usr/bin/env bash
# Builds the libFuzzer form of fuzz-payload-manifest with clang and runs it for a bounded time
# from the seed corpus (new inputs go to a scratch directory, never into the repository).
#   lib/fuzz/run-payload-manifest-engine.sh [SECONDS]      default 20
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}
name=fuzz-payload-manifest
if ! make -s "out/fuzz/$name" >/dev/null; then
        echo "$name: build with clang failed"; echo "0 passed, 1 failed"; exit 1
fi
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
mkdir -p out/test-output
if "out/fuzz/$name" -max_total_time="$secs" -max_len=65536 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="out/test-output/$name-" "$scratch" lib/fuzz/corpus/payload-manifest \
        >"out/test-output/$name.log" 2>&1; then
        grep -E '^stat::number_of_executed_units' "out/test-output/$name.log" || true
        echo "1 passed, 0 failed"
else
        tail -n 40 "out/test-output/$name.log"
        echo "0 passed, 1 failed"; exit 1
fi

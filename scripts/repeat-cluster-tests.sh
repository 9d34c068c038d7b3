#!/usr/bin/env bash
# Runs the region/leader cluster suites N times in a row (default 10) and
# stops at the first failure, printing the run number. A failure in any run
# is a bug to find, not noise: replay it with TINYKV_TEST_LOG=1 for logs.
# Each run's output goes to a directory of its own invocation (printed), so
# runs from several worktrees at once do not overwrite each other's logs.
#
#   scripts/repeat-cluster-tests.sh [N] [extra cargo test args...]
set -euo pipefail
cd "$(dirname "$0")/.."
# The generic scenarios run at TinyKV's full load here, never the quick
# profile meant for local iteration.
unset GENERIC_QUICK

runs="${1:-10}"
shift || true
suites=()
for f in tests/tests/*.rs; do
    name="$(basename "$f" .rs)"
    [ "$name" = raft_sim ] && continue
    suites+=(--test "$name")
done

# The process tests (nemesis) run the binaries found beside them.
cargo build --workspace --bins "$@"
cargo test -p tinykv-tests "${suites[@]}" --no-run "$@"
logs="$(mktemp -d "${TMPDIR:-/tmp}/cluster-runs.XXXXXX")"
echo "logs in $logs"
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    if ! cargo test -p tinykv-tests "${suites[@]}" "$@" >"$logs/run-$i.log" 2>&1; then
        echo "run $i/$runs FAILED; log: $logs/run-$i.log"
        grep -E "panicked|FAILED" "$logs/run-$i.log" | head -20
        exit 1
    fi
    echo "run $i/$runs passed in $(( $(date +%s) - start ))s"
done
echo "$runs passed, 0 failed"

#!/usr/bin/env bash
# The long reliability suite: the same tests CI runs (labels faults, load,
# hostile, and the fuzzers), with more trials, longer load and longer fuzzing.
#   scripts/long-tests.sh            (about 25 minutes on 2 cores, 15 of them fuzzing)
# Every size can be overridden from the environment:
#   CACHEFS_FAULT_TRIALS   kill -9 trials per kind (untar, dedup, import)   CI 5,      here 50
#   CACHEFS_LOAD_SECONDS   writers/readers run, per mount layout            CI 4,      here 60
#   CACHEFS_FSX_OPS        fsx operations on one file                       CI 1500,   here 20000
#   CACHEFS_RACE_SECONDS   RENAME_EXCHANGE confinement race                 CI 3,      here 60
#   CACHEFS_RSS_FILES      files looked up for the memory figure            CI 200000, here 500000
#   CACHEFS_FUZZ_SECONDS   per fuzz target                                  CI 10,     here 300
# Figures (trials, operations, RSS) are printed at the end and kept in
# build/long-tests.log.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
dir=$(bash scripts/build.sh | tail -n 1)

export CACHEFS_FAULT_TRIALS="${CACHEFS_FAULT_TRIALS:-50}"
export CACHEFS_LOAD_SECONDS="${CACHEFS_LOAD_SECONDS:-60}"
export CACHEFS_FSX_OPS="${CACHEFS_FSX_OPS:-20000}"
export CACHEFS_RACE_SECONDS="${CACHEFS_RACE_SECONDS:-60}"
export CACHEFS_RSS_FILES="${CACHEFS_RSS_FILES:-500000}"
export CACHEFS_FUZZ_SECONDS="${CACHEFS_FUZZ_SECONDS:-300}"

log="$dir/long-tests.log"
status=0
# One at a time: the load figures mean more without a neighbour.
ctest --test-dir "$dir" -V -L 'faults|load|hostile' -j1 --timeout 7200 > "$log" 2>&1 || status=1
bash scripts/fuzz.sh --seconds "$CACHEFS_FUZZ_SECONDS" >> "$log" 2>&1 || status=1
grep -E '\[ figures \]|tests passed|tests failed|^stat::number_of_executed_units|^fuzz_.*inputs run|^== fuzz|FAILED' "$log" \
  | sed -E 's/^[0-9]+: //' || true
[ "$status" = 0 ] && echo "long-tests: all passed (log: $log)" || echo "long-tests: FAILURES (log: $log)" >&2
exit $status

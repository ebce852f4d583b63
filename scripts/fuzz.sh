#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang in build-fuzz/ and runs
# each for a bounded time from its seed corpus (tests/fuzz/corpus/<target>/).
#   scripts/fuzz.sh [--seconds N] [TARGET...]     (default: 20 s each, all targets)
# New interesting inputs go to build-fuzz/corpus/<target>/ (not the committed
# seeds); a crash leaves build-fuzz/artifacts/<target>/crash-* and fails the run:
# fix the bug, then commit the input under tests/fuzz/corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=20 targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds)
      [ $# -ge 2 ] || { echo "fuzz.sh: --seconds needs a number" >&2; exit 2; }
      seconds=$2; shift 2 ;;
    -*) echo "fuzz.sh: unknown option '$1' (use --seconds N)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --seconds needs a whole number of seconds, not '$seconds'" >&2; exit 2; }
[ ${#targets[@]} -gt 0 ] || targets=(route_config build_file manifest)

CXX_BIN=$(command -v clang++-14 || command -v clang++ || true)
if [ -z "$CXX_BIN" ]; then
  echo "fuzz.sh: no clang++ (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 1
fi

dir=build-fuzz
cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER="$CXX_BIN" -DCACHEFS_FUZZ=ON \
  -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$dir" -j "${CACHEFS_FUZZ_JOBS:-2}" $(printf 'fuzz_%s ' "${targets[@]}")

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# A long campaign runs as a series of processes of at most $chunk seconds, each
# starting from the corpus the previous ones grew. Under ASan a fuzzing
# process's RSS climbs with the number of inputs it has run, not with what any
# one input needs (route_config: from 0.5 GiB, ~1 MB more per 1,000 inputs,
# past 1 GiB after ~600,000; without ASan, replaying its 2,000-input corpus
# 200 times stays at 7 MB), so one long process would trip the RSS limit below
# on no particular input.
chunk=30
status=0
for t in "${targets[@]}"; do
  work="$dir/corpus/$t" art="$dir/artifacts/$t" log="$dir/fuzz_$t.log"
  mkdir -p "$work" "$art"
  echo "== fuzz_$t: $seconds s"
  : > "$log"
  left=$seconds runs=0
  while [ "$left" -gt 0 ]; do
    now=$(( left < chunk ? left : chunk ))
    # -rss_limit_mb: a parser must not need more than this for a small input.
    if ! "$dir/tests/fuzz/fuzz_$t" -max_total_time="$now" -max_len=4096 -timeout=10 -rss_limit_mb=1024 \
          -print_final_stats=1 -artifact_prefix="$art/" "$work" "tests/fuzz/corpus/$t" \
          2>> "$log"; then
      status=1
      echo "fuzz_$t FAILED; the input is in $art/; last lines of $log:" >&2
      tail -n 60 "$log" >&2
      break
    fi
    n=$(grep -E '^stat::number_of_executed_units' "$log" | tail -n 1 | awk '{print $2}')
    runs=$(( runs + ${n:-0} ))
    left=$(( left - now ))
  done
  [ "$left" -gt 0 ] || echo "fuzz_$t: $runs inputs run, no failure"
done
exit $status

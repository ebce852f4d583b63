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
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    -*) echo "fuzz.sh: unknown option '$1' (use --seconds N)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
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
status=0
for t in "${targets[@]}"; do
  work="$dir/corpus/$t" art="$dir/artifacts/$t"
  mkdir -p "$work" "$art"
  echo "== fuzz_$t: $seconds s"
  # -rss_limit_mb: a parser must not need more than this for a small input.
  if ! "$dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=1024 \
        -print_final_stats=1 -artifact_prefix="$art/" "$work" "tests/fuzz/corpus/$t" \
        2> "$dir/fuzz_$t.log"; then
    status=1
    echo "fuzz_$t FAILED; the input is in $art/; last lines of $dir/fuzz_$t.log:" >&2
    tail -n 60 "$dir/fuzz_$t.log" >&2
  else
    grep -E '^stat::number_of_executed_units|^Done' "$dir/fuzz_$t.log" || true
  fi
done
exit $status

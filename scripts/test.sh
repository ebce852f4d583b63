#!/usr/bin/env bash
# Installs what is needed, builds, and runs the whole test suite (what CI runs).
#   scripts/test.sh            everything
#   scripts/test.sh --fast     everything but the tests labelled *slow*
#   scripts/test.sh --sanitize address|thread   the same suite on a sanitizer build
set -euo pipefail
cd "$(dirname "$0")/.."

fast=0 build_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) fast=1; shift ;;
    --sanitize) build_args+=(--sanitize "${2:?--sanitize needs address or thread}"); shift 2 ;;
    *) echo "test.sh: unknown argument '$1' (use --fast, --sanitize address|thread)" >&2; exit 2 ;;
  esac
done

bash scripts/install-deps.sh
dir=$(bash scripts/build.sh "${build_args[@]}" | tail -n 1)

# Sanitizer runtimes: fail on the first report, keep going in forked children.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"

args=(--test-dir "$dir" --output-on-failure -j2 --timeout 300)
[ "$fast" = 1 ] && args+=(-LE slow)
ctest "${args[@]}"

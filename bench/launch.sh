#!/usr/bin/env bash
# What `launch build` costs on top of the sandbox it runs steps in, and what the
# shared cache saves a real build. See bench/README.md ("launch").
#
#   bash bench/launch.sh [--runs N] [--hello-runs N] [--launch PATH]
#
#  1. overhead: `launch build` of a one-step pipeline (`runs: true`) against a bare
#     `bwrap --ro-bind / / --dev /dev --proc /proc true`, both timed here, median
#     of N runs each (plus one unmeasured warm-up of each); launch's share is the
#     difference (parsing, package check, starting and stopping cachefs, output
#     copy and tarball). The aim is <= 0.3 s.
#  2. examples/hello-c (make under ccache, its cache in the mount): first build
#     on a fresh cache directory, then a second build on the same one; median of
#     N such pairs, and the ratio second/first.
#
# Must run as root (bubblewrap and FUSE as launch uses them). Every temporary
# directory (caches, outputs) is removed on exit, Ctrl-C and SIGTERM included.
set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
LAUNCH=${LAUNCH_BIN:-$REPO/build/launcher/launch}
RUNS=10
HELLO_RUNS=3
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

usage() {
  cat <<EOF2
usage: bash bench/launch.sh [options]
  --runs N         measured runs of each side of the overhead comparison (default $RUNS)
  --hello-runs N   first/second hello-c build pairs, each on a fresh cache (default $HELLO_RUNS)
  --launch PATH    the launch binary (default \$LAUNCH_BIN or build/launcher/launch)
EOF2
}
bench_parse_args --runs RUNS --hello-runs HELLO_RUNS --launch LAUNCH -- "$@"

[ "$(id -u)" = 0 ] || { echo "launch.sh: must run as root" >&2; exit 2; }
[ -x "$LAUNCH" ] || { echo "launch.sh: no launch binary at $LAUNCH (ninja -C build launch, or --launch PATH)" >&2; exit 2; }
command -v bwrap >/dev/null || { echo "launch.sh: bwrap is not installed" >&2; exit 2; }
case $RUNS$HELLO_RUNS in *[!0-9]*) echo "launch.sh: --runs and --hello-runs take a number" >&2; exit 2 ;; esac
[ "$RUNS" -ge 1 ] && [ "$HELLO_RUNS" -ge 1 ] || { echo "launch.sh: runs must be >= 1" >&2; exit 2; }

TMP=$(mktemp -d /var/tmp/launch-bench.XXXXXX)
cleanup() {
  # launch removes its own work directory and unmounts its cache; what is left
  # here are plain directories (backing caches, outputs, logs).
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT
trap 'echo "launch.sh: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

# Seconds (with microseconds) that "$@" takes; its output goes to $TMP/last.log,
# shown if it fails.
elapsed() {
  local t0=$EPOCHREALTIME
  if ! "$@" >"$TMP/last.log" 2>&1; then
    echo "launch.sh: failed: $*" >&2
    tail -20 "$TMP/last.log" >&2
    exit 1
  fi
  local t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

cat >"$TMP/true.yaml" <<'EOF2'
package:
  name: one-step
  version: 1
  epoch: 0
pipeline:
  - runs: true
EOF2

bare() { bwrap --ro-bind / / --dev /dev --proc /proc true; }
one_step() {
  "$LAUNCH" build "$TMP/true.yaml" --cache-dir "$TMP/cache" --out-dir "$TMP/out" --skip-package-check
}
hello() {
  "$LAUNCH" build "$REPO/examples/hello-c/pkg.yaml" --cache-dir "$1" --out-dir "$TMP/out"
}

echo "launch: $LAUNCH ($("$LAUNCH" --version 2>/dev/null || echo '?'))"
echo "machine: $(nproc) CPUs, $(uname -r), $(bwrap --version 2>/dev/null)"
echo

# 1. Overhead: interleave the two so drift in the machine's load hits both.
bare >/dev/null 2>&1 || { echo "launch.sh: bare bwrap does not run here" >&2; exit 1; }
elapsed bare >/dev/null
elapsed one_step >/dev/null
bwrap_t=() launch_t=()
for ((i = 1; i <= RUNS; i++)); do
  bwrap_t+=("$(elapsed bare)")
  launch_t+=("$(elapsed one_step)")
done
b=$(median "${bwrap_t[@]}")
l=$(median "${launch_t[@]}")
d=$(sub "$l" "$b")
verdict=$(awk -v d="$d" 'BEGIN { print (d <= 0.3 ? "within the 0.3 s aim" : "over the 0.3 s aim") }')
echo "overhead, one-step pipeline (runs: true), median of $RUNS:"
printf '  %-50s %8.3f s\n' "bwrap --ro-bind / / --dev /dev --proc /proc true" "$b"
printf '  %-50s %8.3f s\n' "launch build (runs: true)" "$l"
printf '  %-50s %8.3f s  (%s)\n' "launch's overhead (difference)" "$d" "$verdict"
echo "  runs (s): bwrap ${bwrap_t[*]}"
echo "            launch ${launch_t[*]}"
echo

# 2. hello-c, first build on a fresh cache, then the second on the same cache.
first_t=() second_t=()
for ((i = 1; i <= HELLO_RUNS; i++)); do
  cache="$TMP/hello-cache.$i"
  first_t+=("$(elapsed hello "$cache")")
  second_t+=("$(elapsed hello "$cache")")
  grep -q '\] *Hits: *[1-9]' "$TMP/last.log" ||
    echo "launch.sh: note: the second hello-c build reported no ccache hits" >&2
  rm -rf --one-file-system "$cache"
done
f=$(median "${first_t[@]}")
s=$(median "${second_t[@]}")
echo "examples/hello-c, median of $HELLO_RUNS pairs:"
printf '  %-50s %8.3f s\n' "first build (fresh cache)" "$f"
printf '  %-50s %8.3f s\n' "second build (same cache, ccache hits)" "$s"
printf '  %-50s %8s\n' "ratio second/first" "$(ratio "$s" "$f")x"
echo "  runs (s): first ${first_t[*]}"
echo "            second ${second_t[*]}"

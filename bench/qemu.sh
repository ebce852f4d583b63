#!/usr/bin/env bash
# The qemu runner against bubblewrap: what a VM costs to start, and how fast a
# step reads the cache over 9p (discard mount) and virtiofs (passthrough). See
# bench/README.md ("qemu runner").
#
#   bash bench/qemu.sh [--runs N] [--scale small|default] [--accel tcg|kvm|auto]
#                      [--work-dir DIR] [--launch PATH]
#
# Same method and build files as bench/runners.sh (which compares bubblewrap
# and docker), so the two tables line up:
#  1. start-up: `launch build` of a one-step pipeline (`echo`); from launch's
#     start to the step's first output line reaching us (read live), and to
#     launch's exit. For qemu this is the initramfs, the VM's boot (TCG here),
#     virtiofsd, and at the end the guest's poweroff.
#  2. cache-heavy step: one step reading every file of the benchmark corpus
#     (cachebench.py gen) through /var/cache/melange with `busybox find -exec
#     busybox cat {} +` — the step's own time ("==>" to "done"), host page cache
#     dropped before the run (cold) and kept (warm). The guest's page cache is
#     always empty (a new VM per build). Ratios to bubblewrap.
# Runners are interleaved in every round; median of N after one warm-up each.
#
# Root only. Needs QEMU_KERNEL_IMAGE (and _MODULES), or fetches Debian's kernel
# into /var/cache/cachefs-test/kernel (launch fetch-kernel). Everything
# temporary goes on exit, Ctrl-C included; the corpus is kept for the next run.
set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
LAUNCH=${LAUNCH_BIN:-$REPO/build/launcher/launch}
RUNS=3
SCALE=small
ACCEL=tcg
WORK=${CACHEFS_BENCH_DIR:-/var/tmp/cachefs-bench}/runners
RUNNERS=(bubblewrap qemu-9p qemu-virtiofs)

usage() {
  cat <<EOF2
usage: bash bench/qemu.sh [options]
  --runs N        measured runs of each case (default $RUNS)
  --scale S       corpus: small (~3.4k files, 79 MB) or default (~24k files, 703 MB); default $SCALE
  --accel A       qemu's --qemu-accel: tcg (default; KVM hangs on our machines), kvm or auto
  --work-dir DIR  where the corpus is kept (default \$CACHEFS_BENCH_DIR/runners or $WORK)
  --launch PATH   the launch binary (default \$LAUNCH_BIN or build/launcher/launch)
EOF2
}
while [ $# -gt 0 ]; do
  case $1 in
    --runs) RUNS=$2; shift ;;
    --runs=*) RUNS=${1#*=} ;;
    --scale) SCALE=$2; shift ;;
    --scale=*) SCALE=${1#*=} ;;
    --accel) ACCEL=$2; shift ;;
    --accel=*) ACCEL=${1#*=} ;;
    --work-dir) WORK=$2; shift ;;
    --work-dir=*) WORK=${1#*=} ;;
    --launch) LAUNCH=$2; shift ;;
    --launch=*) LAUNCH=${1#*=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "qemu.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
die() { echo "qemu.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root"
[ -x "$LAUNCH" ] || die "no launch binary at $LAUNCH (ninja -C build launch cachefs, or --launch PATH)"
case $RUNS in ''|*[!0-9]*|0) die "--runs takes a number >= 1" ;; esac
case $SCALE in small|default) ;; *) die "--scale is small or default" ;; esac
case $ACCEL in tcg|kvm|auto) ;; *) die "--accel is tcg, kvm or auto" ;; esac
command -v busybox >/dev/null || die "busybox is not installed (apt-get install busybox-static)"
command -v bwrap >/dev/null || die "bwrap is not installed"
command -v qemu-system-x86_64 >/dev/null || die "qemu is not installed (apt-get install qemu-system-x86)"
if [ -z "${QEMU_KERNEL_IMAGE:-}" ]; then
  eval "$("$LAUNCH" fetch-kernel /var/cache/cachefs-test/kernel 2>/dev/null)" ||
    die "no QEMU_KERNEL_IMAGE and launch fetch-kernel failed"
  export QEMU_KERNEL_IMAGE QEMU_KERNEL_MODULES
fi

TMP=$(mktemp -d /var/tmp/qemu-bench.XXXXXX)
LAUNCH_PID=
cleanup() {
  # A launch still running (interrupted mid-build) stops its VM and mount first.
  if [ -n "$LAUNCH_PID" ] && kill -INT "$LAUNCH_PID" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$LAUNCH_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT
trap 'echo "qemu.sh: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

now() { echo "$EPOCHREALTIME"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", a - b }'; }
median() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", (b > 0 ? a / b : 0) }'; }

# launch's flags and environment for each runner.
run_launch() {
  local runner=$1
  shift
  case $runner in
    bubblewrap) "$LAUNCH" "$@" ;;
    qemu-9p) env -u QEMU_USE_VIRTIOFS "$LAUNCH" "$@" --runner qemu --qemu-accel "$ACCEL" ;;
    qemu-virtiofs) QEMU_USE_VIRTIOFS=1 "$LAUNCH" "$@" --runner qemu --qemu-accel "$ACCEL" ;;
  esac
}

# Runs launch for runner $1 on build file $2 with cache dir $3, reading its
# output live: T_FIRST (the first line holding "$4"), T_STEP0/T_STEP1 (the
# step's "==>" and "done" lines), T_END, all from launch's start.
timed_launch() {
  local runner=$1 file=$2 cache=$3 marker=$4 line t0
  T_FIRST= T_STEP0= T_STEP1=
  : >"$TMP/last.log"
  t0=$(now)
  while IFS= read -r line; do
    LAUNCH_PID=$!
    echo "$line" >>"$TMP/last.log"
    case $line in
      *"$marker"*) [ -n "$T_FIRST" ] || T_FIRST=$(sub "$(now)" "$t0") ;;
      "==> "*) T_STEP0=$(sub "$(now)" "$t0") ;;
      *" done in "*) T_STEP1=$(sub "$(now)" "$t0") ;;
    esac
  done < <(run_launch "$runner" build "$file" --cache-dir "$cache" --store "$TMP/store" \
    --out-dir "$TMP/out" --skip-package-check 2>&1)
  wait $! || { tail -20 "$TMP/last.log" >&2; die "launch failed ($runner)"; }
  LAUNCH_PID=
  T_END=$(sub "$(now)" "$t0")
  [ -n "$T_FIRST" ] && [ -n "$T_STEP1" ] || { tail -20 "$TMP/last.log" >&2; die "no step output ($runner)"; }
}

CORPUS=$WORK/$SCALE-s42
if [ ! -f "$CORPUS/.complete" ]; then
  rm -rf "$CORPUS"
  mkdir -p "$CORPUS"
  echo "generating the $SCALE corpus in $CORPUS"
  python3 "$BENCH_DIR/cachebench.py" gen --out "$CORPUS" --seed 42 --seq-mib 0 \
    $([ "$SCALE" = small ] && echo --small) >/dev/null
  touch "$CORPUS/.complete"
fi
CACHE=$CORPUS/src/corpus
FILES=$(find "$CACHE" -type f | wc -l)
BYTES=$(find "$CACHE" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')

cat >"$TMP/first.yaml" <<'EOF2'
package:
  name: first-step
  version: 1
  epoch: 0
pipeline:
  - name: hello
    runs: echo first-step-running
EOF2
cat >"$TMP/read.yaml" <<'EOF2'
package:
  name: read-cache
  version: 1
  epoch: 0
pipeline:
  - name: read
    runs: |
      busybox find /var/cache/melange -type f -exec busybox cat {} + >/dev/null
      echo read-done
EOF2

echo "launch: $LAUNCH ($("$LAUNCH" --version 2>/dev/null || echo '?'))"
echo "machine: $(nproc) CPUs, $(uname -r); $(qemu-system-x86_64 --version | head -1); accel $ACCEL"
echo "kernel: $QEMU_KERNEL_IMAGE"
echo "corpus: $FILES files, $((BYTES / 1048576)) MiB ($SCALE)"
mkdir -p "$TMP/empty-cache"
echo

declare -A S E C W
for r in "${RUNNERS[@]}"; do
  timed_launch "$r" "$TMP/first.yaml" "$TMP/empty-cache" first-step-running
  timed_launch "$r" "$TMP/read.yaml" "$CACHE" "[read-cache/read] "
done
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for ((i = 1; i <= RUNS; i++)); do
  for r in "${RUNNERS[@]}"; do
    timed_launch "$r" "$TMP/first.yaml" "$TMP/empty-cache" first-step-running
    S[$r]+=" $T_FIRST" E[$r]+=" $T_END"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    timed_launch "$r" "$TMP/read.yaml" "$CACHE" "[read-cache/read] "
    C[$r]+=" $(sub "$T_STEP1" "$T_STEP0")"
    timed_launch "$r" "$TMP/read.yaml" "$CACHE" "[read-cache/read] "
    W[$r]+=" $(sub "$T_STEP1" "$T_STEP0")"
  done
done
declare -A START END COLD WARM
for r in "${RUNNERS[@]}"; do
  # shellcheck disable=SC2086 # word lists on purpose
  START[$r]=$(median ${S[$r]}) END[$r]=$(median ${E[$r]}) COLD[$r]=$(median ${C[$r]}) WARM[$r]=$(median ${W[$r]})
  echo "$r runs (s): first step${S[$r]}; one-step build${E[$r]}; read cold${C[$r]}; read warm${W[$r]}"
done
echo "load average: $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
echo "median of $RUNS, seconds; ratios to bubblewrap"
echo
echo "| runner | launch start -> first step running | one-step build, total | read every cache file, cold | ratio | warm | ratio |"
echo "|---|---|---|---|---|---|---|"
for r in "${RUNNERS[@]}"; do
  echo "| $r | ${START[$r]} | ${END[$r]} | ${COLD[$r]} | $(ratio "${COLD[$r]}" "${COLD[bubblewrap]}")x | ${WARM[$r]} | $(ratio "${WARM[$r]}" "${WARM[bubblewrap]}")x |"
done

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
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

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
bench_parse_args --runs RUNS --scale SCALE --accel ACCEL --work-dir WORK --launch LAUNCH -- "$@"
bench_check_runner_args
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

bench_corpus
bench_build_files

echo "launch: $LAUNCH ($("$LAUNCH" --version 2>/dev/null || echo '?'))"
echo "machine: $(nproc) CPUs, $(uname -r); $(qemu-system-x86_64 --version | head -1); accel $ACCEL"
echo "kernel: $QEMU_KERNEL_IMAGE"
echo "corpus: $FILES files, $((BYTES / 1048576)) MiB ($SCALE)"
echo

bench_measure "${RUNNERS[@]}"

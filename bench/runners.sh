#!/usr/bin/env bash
# The runners side by side: what each costs to start, and how fast a step reads
# the cache through it. See bench/README.md ("runners").
#
#   bash bench/runners.sh [--runs N] [--runners bubblewrap,docker] [--scale small|default]
#                         [--work-dir DIR] [--launch PATH]
#
#  1. start-up: `launch build` of a one-step pipeline; from launch's start to the
#     step's first output line reaching us (launch's stdout, read live), and to
#     launch's exit. Median of N.
#  2. cache-heavy step: one step that reads every file of the benchmark corpus
#     (bench/cachebench.py gen, the one bench/run.sh uses) through
#     /var/cache/melange with `busybox find -exec busybox cat` (the same binary
#     in every runner); the step's own time (launch's "==>" line to its "done"
#     line), page cache dropped before each run (cold), and again right after
#     (warm: the backing files in the page cache, the build's cachefs mount
#     new as always). Median of N, and the ratio to the first runner's.
#     Runners are interleaved in every round.
#
# Adding a runner: add its name to RUNNERS and define setup_<name> (prepare,
# e.g. start an engine; may be empty) and args_<name> (launch's flags for it,
# one per line).
#
# Root only (bubblewrap, FUSE, drop_caches, podman). The docker runner uses
# $DOCKER_HOST's engine if it answers, else starts podman's service on a
# private socket for the run; the busybox image is imported if missing.
# Everything temporary goes on exit, Ctrl-C included; the corpus is kept under
# the work directory for the next run.
set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
LAUNCH=${LAUNCH_BIN:-$REPO/build/launcher/launch}
RUNS=5
RUNNERS=bubblewrap,docker
SCALE=small
WORK=${CACHEFS_BENCH_DIR:-/var/tmp/cachefs-bench}/runners
IMAGE=localhost/cachefs-bench-busybox:1
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

usage() {
  cat <<EOF2
usage: bash bench/runners.sh [options]
  --runs N            measured runs of each case (default $RUNS)
  --runners a,b       runners to compare, the first is the baseline (default $RUNNERS)
  --scale S           corpus: small (~3.4k files, 79 MB) or default (~24k files, 703 MB); default $SCALE
  --work-dir DIR      where the corpus is kept (default \$CACHEFS_BENCH_DIR/runners or $WORK)
  --launch PATH       the launch binary (default \$LAUNCH_BIN or build/launcher/launch)
EOF2
}
bench_parse_args --runs RUNS --runners RUNNERS --scale SCALE --work-dir WORK --launch LAUNCH -- "$@"
bench_check_runner_args
command -v busybox >/dev/null || die "busybox is not installed (apt-get install busybox-static)"
IFS=, read -r -a RUNNER_LIST <<<"$RUNNERS"

TMP=$(mktemp -d /var/tmp/runners-bench.XXXXXX)
ENGINE_PID=
cleanup() {
  if [ -n "$ENGINE_PID" ]; then
    kill "$ENGINE_PID" 2>/dev/null || true
    wait "$ENGINE_PID" 2>/dev/null || true
  fi
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT
trap 'echo "runners.sh: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ runners
setup_bubblewrap() { command -v bwrap >/dev/null || die "bwrap is not installed"; }
args_bubblewrap() { :; }

setup_docker() {
  command -v docker >/dev/null || die "the docker CLI is not installed"
  if [ -z "${DOCKER_HOST:-}" ] || ! timeout 10 docker image ls -q >/dev/null 2>&1; then
    command -v podman >/dev/null || die "no docker engine at DOCKER_HOST and no podman to start one"
    printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n' \
      >"$TMP/containers.conf"
    CONTAINERS_CONF=$TMP/containers.conf podman system service --time=0 "unix://$TMP/podman.sock" \
      >"$TMP/podman.log" 2>&1 &
    ENGINE_PID=$!
    export DOCKER_HOST=unix://$TMP/podman.sock
    for _ in $(seq 200); do docker image ls -q >/dev/null 2>&1 && break; sleep 0.05; done
    docker image ls -q >/dev/null 2>&1 || { cat "$TMP/podman.log" >&2; die "podman's service did not start"; }
  fi
  if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    local root=$TMP/rootfs
    mkdir -p "$root/bin" "$root/tmp" "$root/etc"
    cp "$(command -v busybox)" "$root/bin/busybox"
    for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
    tar -C "$root" -c . | docker import --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' - "$IMAGE" >/dev/null
    rm -rf "$root"
  fi
  echo "docker: $(docker version --format 'CLI {{.Client.Version}}, engine {{.Server.Version}}' 2>/dev/null) at $DOCKER_HOST, image $IMAGE"
}
args_docker() { printf '%s\n' --runner docker --image "$IMAGE"; }

# launch's flags for runner $1 (args_<runner>), after the rest ("${@:2}").
run_launch() {
  local runner=$1 args=()
  shift
  mapfile -t args < <("args_$runner")
  "$LAUNCH" "$@" "${args[@]}"
}

# ------------------------------------------------------------------ corpus
bench_corpus
bench_build_files

echo "launch: $LAUNCH ($("$LAUNCH" --version 2>/dev/null || echo '?'))"
echo "machine: $(nproc) CPUs, $(uname -r); corpus: $FILES files, $((BYTES / 1048576)) MiB ($SCALE)"
for r in "${RUNNER_LIST[@]}"; do
  declare -F "setup_$r" >/dev/null || die "unknown runner '$r' (define setup_$r and args_$r)"
  "setup_$r"
done
echo

bench_measure "${RUNNER_LIST[@]}"

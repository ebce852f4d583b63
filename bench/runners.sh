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
while [ $# -gt 0 ]; do
  case $1 in
    --runs) RUNS=$2; shift ;;
    --runs=*) RUNS=${1#*=} ;;
    --runners) RUNNERS=$2; shift ;;
    --runners=*) RUNNERS=${1#*=} ;;
    --scale) SCALE=$2; shift ;;
    --scale=*) SCALE=${1#*=} ;;
    --work-dir) WORK=$2; shift ;;
    --work-dir=*) WORK=${1#*=} ;;
    --launch) LAUNCH=$2; shift ;;
    --launch=*) LAUNCH=${1#*=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "runners.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
die() { echo "runners.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root"
[ -x "$LAUNCH" ] || die "no launch binary at $LAUNCH (ninja -C build launch cachefs, or --launch PATH)"
case $RUNS in ''|*[!0-9]*|0) die "--runs takes a number >= 1" ;; esac
case $SCALE in small|default) ;; *) die "--scale is small or default" ;; esac
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

# ------------------------------------------------------------------ helpers
now() { echo "$EPOCHREALTIME"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", a - b }'; }
median() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", (b > 0 ? a / b : 0) }'; }

# Runs launch for runner $1 on build file $2 with cache dir $3, reading its
# output live. Sets T_FIRST (the first line holding "$4"), T_STEP0/T_STEP1 (the
# step's "==>" and "done" lines) and T_END, all relative to the start.
timed_launch() {
  local runner=$1 file=$2 cache=$3 marker=$4 line t0 args=()
  mapfile -t args < <("args_$runner")
  T_FIRST= T_STEP0= T_STEP1=
  t0=$(now)
  while IFS= read -r line; do
    echo "$line" >>"$TMP/last.log"
    case $line in
      *"$marker"*) [ -n "$T_FIRST" ] || T_FIRST=$(sub "$(now)" "$t0") ;;
      "==> "*) T_STEP0=$(sub "$(now)" "$t0") ;;
      *" done in "*) T_STEP1=$(sub "$(now)" "$t0") ;;
    esac
  done < <("$LAUNCH" build "$file" --cache-dir "$cache" --store "$TMP/store" --out-dir "$TMP/out" \
    --skip-package-check "${args[@]}" 2>&1)
  wait $! || { tail -20 "$TMP/last.log" >&2; die "launch failed ($runner)"; }
  T_END=$(sub "$(now)" "$t0")
  [ -n "$T_FIRST" ] && [ -n "$T_STEP1" ] || { tail -20 "$TMP/last.log" >&2; die "no step output ($runner)"; }
}

# ------------------------------------------------------------------ corpus
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
echo "machine: $(nproc) CPUs, $(uname -r); corpus: $FILES files, $((BYTES / 1048576)) MiB ($SCALE)"
for r in "${RUNNER_LIST[@]}"; do
  declare -F "setup_$r" >/dev/null || die "unknown runner '$r' (define setup_$r and args_$r)"
  "setup_$r"
done
mkdir -p "$TMP/empty-cache"
echo

declare -A S E C W
for r in "${RUNNER_LIST[@]}"; do
  # Warm-up: one unmeasured run of each case.
  timed_launch "$r" "$TMP/first.yaml" "$TMP/empty-cache" first-step-running
  timed_launch "$r" "$TMP/read.yaml" "$CACHE" "[read-cache/read] "
done
load0=$(cut -d' ' -f1-3 /proc/loadavg)
# Runners interleaved in every round, so drift in the machine's load hits all.
for ((i = 1; i <= RUNS; i++)); do
  for r in "${RUNNER_LIST[@]}"; do
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
for r in "${RUNNER_LIST[@]}"; do
  # shellcheck disable=SC2086 # word lists on purpose
  START[$r]=$(median ${S[$r]}) END[$r]=$(median ${E[$r]}) COLD[$r]=$(median ${C[$r]}) WARM[$r]=$(median ${W[$r]})
  echo "$r runs (s): first step${S[$r]}; one-step build${E[$r]}; read cold${C[$r]}; read warm${W[$r]}"
done
echo "load average: $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
base=${RUNNER_LIST[0]}
echo "median of $RUNS, seconds; ratios to $base"
echo
echo "| runner | launch start -> first step running | one-step build, total | read every cache file, cold | ratio | warm | ratio |"
echo "|---|---|---|---|---|---|---|"
for r in "${RUNNER_LIST[@]}"; do
  echo "| $r | ${START[$r]} | ${END[$r]} | ${COLD[$r]} | $(ratio "${COLD[$r]}" "${COLD[$base]}")x | ${WARM[$r]} | $(ratio "${WARM[$r]}" "${WARM[$base]}")x |"
done

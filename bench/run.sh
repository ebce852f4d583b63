#!/usr/bin/env bash
# cachefs benchmark: native directory vs cachefs vs other FUSE passthrough
# filesystems (bindfs, fuse-overlayfs, mergerfs) on a generated build-cache
# corpus; cachefs's discard mode vs fuse-overlayfs and the kernel's overlayfs
# (the limit for an overlay). See bench/README.md.
#
#   bash bench/run.sh [--small] [--runs N] [--work-dir DIR] [--seed N]
#                     [--targets LIST] [--workloads LIST] [--cachefs-opts OPTS]
#                     [--no-loop] [--regen] [--timeout SEC]
#
# Must run as root (drop_caches, mounts). Everything it mounts is unmounted,
# every daemon it starts is stopped and the loop device is detached on exit,
# including Ctrl-C and failures.
set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
HELPER="$BENCH_DIR/cachebench.py"

WORK=${CACHEFS_BENCH_DIR:-/var/tmp/cachefs-bench}
CACHEFS=${CACHEFS_BIN:-$REPO/build/fs/cachefs}
CACHECTL=${CACHECTL_BIN:-$REPO/build/tools/cachectl}
CACHEFS_OPTS=${CACHEFS_OPTS:-}
RUNS=3
SMALL=0
SEED=42
REGEN=0
USE_LOOP=1
TIMEOUT=900
NOFILE=524288
ALL_TARGETS="native cachefs cachefs-nowatch cachefs-writeback cachefs-nodedup cachefs-nopassthrough cachefs-uring cachefs-discard bindfs fuse-overlayfs overlayfs mergerfs"
ALL_WORKLOADS="read-cold read-warm walk-cold walk-warm seq-cold seq-warm untar import"
# cachefs-nodedup (cachefs --dedup off) only takes part in untar: reads do not
# differ, and untar is where dedup's cost would show.
WRITE_ONLY_TARGETS="cachefs-nodedup"
TARGETS=$ALL_TARGETS
WORKLOADS=$ALL_WORKLOADS

usage() {
  cat <<EOF
usage: bash bench/run.sh [options]
  --small             ~3.4k files / ~80 MB corpus and a 256 MiB sequential file
                      (default: ~24k files / ~700 MB and 1 GiB)
  --runs N            measured runs per cell, median reported (default $RUNS)
  --work-dir DIR      image, corpus, scratch and results
                      (default \$CACHEFS_BENCH_DIR or /var/tmp/cachefs-bench)
  --seed N            corpus seed (default $SEED)
  --targets LIST      comma list from: ${ALL_TARGETS// /,} (native is always measured)
  --workloads LIST    comma list from: ${ALL_WORKLOADS// /,}
                      (untar also reports untar-sync and rm, and for cachefs
                      untar-dedup: until dedup of the tree is done; import:
                      cachectl import of a copy of the corpus, native only)
  --cachefs PATH      cachefs binary (default \$CACHEFS_BIN or build/fs/cachefs)
  --cachectl PATH     cachectl binary (default \$CACHECTL_BIN or build/tools/cachectl)
  --cachefs-opts OPTS extra cachefs arguments, e.g. "--threads=1" (default \$CACHEFS_OPTS)
  --no-loop           run on the filesystem of --work-dir itself instead of a
                      dedicated loop-mounted ext4 image (see README)
  --regen             regenerate the corpus (and image) even if one exists
  --timeout SEC       limit for any single measured command (default $TIMEOUT)
  --nofile N          raise the hard open-files limit the daemons inherit to at
                      least N (default $NOFILE, systemd's default; 0: leave as is)
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
    --small) SMALL=1 ;;
    --runs) RUNS=$2; shift ;;
    --runs=*) RUNS=${1#*=} ;;
    --work-dir) WORK=$2; shift ;;
    --work-dir=*) WORK=${1#*=} ;;
    --seed) SEED=$2; shift ;;
    --seed=*) SEED=${1#*=} ;;
    --targets) TARGETS=${2//,/ }; shift ;;
    --targets=*) TARGETS=${1#*=}; TARGETS=${TARGETS//,/ } ;;
    --workloads) WORKLOADS=${2//,/ }; shift ;;
    --workloads=*) WORKLOADS=${1#*=}; WORKLOADS=${WORKLOADS//,/ } ;;
    --cachefs) CACHEFS=$2; shift ;;
    --cachefs=*) CACHEFS=${1#*=} ;;
    --cachectl) CACHECTL=$2; shift ;;
    --cachectl=*) CACHECTL=${1#*=} ;;
    --cachefs-opts) CACHEFS_OPTS=$2; shift ;;
    --cachefs-opts=*) CACHEFS_OPTS=${1#*=} ;;
    --no-loop) USE_LOOP=0 ;;
    --regen) REGEN=1 ;;
    --timeout) TIMEOUT=$2; shift ;;
    --timeout=*) TIMEOUT=${1#*=} ;;
    --nofile) NOFILE=$2; shift ;;
    --nofile=*) NOFILE=${1#*=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --runs needs a positive integer" >&2; exit 2; }
[[ $SEED =~ ^[0-9]+$ ]] || { echo "run.sh: --seed needs a non-negative integer" >&2; exit 2; }
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --timeout needs a positive integer" >&2; exit 2; }
[[ $NOFILE =~ ^[0-9]+$ ]] || { echo "run.sh: --nofile needs a non-negative integer" >&2; exit 2; }
for t in $TARGETS; do
  [[ " $ALL_TARGETS " == *" $t "* ]] || { echo "run.sh: unknown target '$t'" >&2; exit 2; }
done
for w in $WORKLOADS; do
  [[ " $ALL_WORKLOADS " == *" $w "* ]] || { echo "run.sh: unknown workload '$w'" >&2; exit 2; }
done
[[ " $TARGETS " == *" native "* ]] || TARGETS="native $TARGETS"
case $WORK in
  /*) ;;
  *) WORK="$PWD/$WORK" ;;
esac
[[ $WORK =~ ^[A-Za-z0-9_./+-]+$ ]] || { echo "run.sh: --work-dir must not contain spaces or odd characters" >&2; exit 2; }
read -r -a CACHEFS_EXTRA <<<"$CACHEFS_OPTS"
# Every cachefs target but cachefs-uring says --io-uring off: its default, auto,
# would follow the kernel's enable_uring switch, which a test run may have left on.

[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root (drop_caches, mounts)" >&2; exit 1; }
[ -w /proc/sys/vm/drop_caches ] || { echo "run.sh: /proc/sys/vm/drop_caches is not writable" >&2; exit 1; }
[ -c /dev/fuse ] || { echo "run.sh: /dev/fuse missing" >&2; exit 1; }
for c in python3 tar dd find timeout fusermount3; do
  command -v $c >/dev/null || { echo "run.sh: $c missing" >&2; exit 1; }
done
if [ "$USE_LOOP" = 1 ]; then
  for c in losetup mkfs.ext4; do
    command -v $c >/dev/null || { echo "run.sh: $c missing (or use --no-loop)" >&2; exit 1; }
  done
fi

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Daemons that keep a descriptor per known inode (cachefs does)
# need more than a login shell's limit for this corpus. Only the hard limit is
# raised: each daemon decides itself whether to raise its soft limit.
if [ "$NOFILE" -gt 0 ] && [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$NOFILE" ]; then
  ulimit -Hn "$NOFILE" 2>/dev/null || log "could not raise the hard open-files limit to $NOFILE"
fi

want() { [[ " $WORKLOADS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- targets
declare -A SKIP_NOTE=()
ACTIVE=()
for t in $TARGETS; do
  case $t in
    native) ;;
    cachefs|cachefs-nowatch|cachefs-writeback|cachefs-nodedup|cachefs-nopassthrough|cachefs-uring|cachefs-discard)
      [ -x "$CACHEFS" ] || SKIP_NOTE[$t]="binary $CACHEFS not found (ninja -C build cachefs)" ;;
    overlayfs)
      grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
        SKIP_NOTE[$t]="the kernel has no overlay filesystem" ;;
    *) command -v "$t" >/dev/null || SKIP_NOTE[$t]="not installed (apt-get install $t)" ;;
  esac
  if [ -n "${SKIP_NOTE[$t]:-}" ]; then
    log "skipping $t: ${SKIP_NOTE[$t]}"
  else
    ACTIVE+=("$t")
  fi
done
FUSE_TARGETS=()
READ_TARGETS=()
for t in "${ACTIVE[@]}"; do
  [[ " $WRITE_ONLY_TARGETS " == *" $t "* ]] || READ_TARGETS+=("$t")
  [ "$t" = native ] || [[ " $WRITE_ONLY_TARGETS " == *" $t "* ]] || FUSE_TARGETS+=("$t")
done
if want import && [ ! -x "$CACHECTL" ]; then
  log "skipping import: $CACHECTL not found (ninja -C build cachectl)"
  WORKLOADS=${WORKLOADS/import/}
fi

# ---------------------------------------------------------------- layout
# The image is sparse. mergerfs refuses to create files on a branch with less
# than 4 GiB free (its minfreespace default), so leave plenty of room.
SCALE=default; SEQ_MIB=1024; IMG_GIB=12
if [ "$SMALL" = 1 ]; then SCALE=small; SEQ_MIB=256; IMG_GIB=8; fi
NAME="$SCALE-s$SEED"
IMG="$WORK/$NAME.img"                 # kept between runs: holds the corpus
if [ "$USE_LOOP" = 1 ]; then FSROOT="$WORK/fs"; else FSROOT="$WORK"; fi
DATA="$FSROOT/data-$NAME"             # kept between runs (generation takes a while)
SRC="$DATA/src"                       # what every FUSE target mounts for the read workloads
CORPUS_REL=corpus
SEQ_REL=seq.bin
MANIFEST="$DATA/manifest.json"
TARBALL="$DATA/corpus.tar"
SCRATCH="$FSROOT/scratch.$$"          # untar dirs, overlay upper/work, stores
MNT="$WORK/mnt.$$"                    # FUSE mountpoints (outside the image)
RESULTS="$WORK/results"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
TSV="$RESULTS/raw-$STAMP.tsv"
META="$RESULTS/meta-$STAMP.json"
JSON="$RESULTS/results-$STAMP.json"
LOGDIR="$RESULTS/logs-$STAMP"

# ---------------------------------------------------------------- cleanup
MOUNTS=()           # FUSE mountpoints we mounted
declare -A MPID=()  # mountpoint -> daemon pid
declare -A MTGT=()  # mountpoint -> target
LOOPDEV=
IMG_MOUNTED=0

mounted() { grep -qs "^[^ ]* $1 " /proc/mounts; }

unmount_one() {  # MNT: unmount (lazily if busy), then make sure the daemon is gone
  local mnt=$1 pid=${MPID[$1]:-} i
  if mounted "$mnt"; then
    fusermount3 -u "$mnt" 2>/dev/null || umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  fi
  if [ -n "$pid" ]; then
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; sleep 1; fi
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  fi
  # A dead daemon leaves a dead mount ("Transport endpoint is not connected").
  if mounted "$mnt"; then umount -l "$mnt" 2>/dev/null || true; fi
  unset "MPID[$mnt]" "MTGT[$mnt]"
  local keep=() m
  for m in "${MOUNTS[@]}"; do [ "$m" = "$mnt" ] || keep+=("$m"); done
  MOUNTS=("${keep[@]}")
}

URING_SWITCH=/sys/module/fuse/parameters/enable_uring
URING_SWITCH_WAS=$(cat "$URING_SWITCH" 2>/dev/null || true)
CLEANED=0
cleanup() {
  local rc=$?
  [ "$CLEANED" = 1 ] && return
  CLEANED=1
  trap - INT TERM
  set +e
  local i
  for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do unmount_one "${MOUNTS[$i]}"; done
  if grep -qs " $MNT/" /proc/mounts; then
    log "WARNING: still mounted under $MNT:"; grep " $MNT/" /proc/mounts >&2
  else
    rm -rf "$MNT"
    [ -n "${PARTIAL_DATA:-}" ] && rm -rf "$PARTIAL_DATA"
    [ -d "$SCRATCH" ] && rm -rf "$SCRATCH"
  fi
  if [ "$IMG_MOUNTED" = 1 ]; then
    umount "$FSROOT" 2>/dev/null || { sleep 1; umount "$FSROOT" 2>/dev/null; } || umount -l "$FSROOT"
  fi
  [ -n "$LOOPDEV" ] && losetup -d "$LOOPDEV" 2>/dev/null
  # cachefs-uring (--io-uring on) switches the fuse module's io_uring on for
  # the whole machine: put back as it was.
  [ -n "$URING_SWITCH_WAS" ] && echo "$URING_SWITCH_WAS" > "$URING_SWITCH" 2>/dev/null
  if grep -qs " $WORK" /proc/mounts; then
    log "WARNING: mounts left under $WORK:"; grep " $WORK" /proc/mounts >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ---------------------------------------------------------------- helpers
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

now_us() { local t=$EPOCHREALTIME; echo $(( 10#${t/./} )); }
secs() { printf '%d.%06d' $(( $1 / 1000000 )) $(( $1 % 1000000 )); }

# mount_fs TARGET SRCDIR MNT AUXDIR -- mounts, waits until it answers.
mount_fs() {
  local t=$1 src=$2 mnt=$3 aux=$4 pid log="$LOGDIR/$t.daemon.log"
  mkdir -p "$mnt" "$aux"
  echo "== $(date -u +%FT%TZ) mount $t $src -> $mnt" >>"$log"
  echo "== $(date -u +%FT%TZ) mount $t $src -> $mnt" >>"$LOGDIR/$t.log"
  case $t in
    cachefs)
      mkdir -p "$aux/store"
      "$CACHEFS" -f --cache-directory "$src" --store "$aux/store" --io-uring off "${CACHEFS_EXTRA[@]}" "$mnt" >>"$log" 2>&1 & ;;
    cachefs-nowatch)
      mkdir -p "$aux/store"
      "$CACHEFS" -f --cache-directory "$src" --store "$aux/store" --io-uring off --no-watch-backing "${CACHEFS_EXTRA[@]}" "$mnt" >>"$log" 2>&1 & ;;
    cachefs-writeback)
      mkdir -p "$aux/store"
      "$CACHEFS" -f --cache-directory "$src" --store "$aux/store" --io-uring off --writeback-cache "${CACHEFS_EXTRA[@]}" "$mnt" >>"$log" 2>&1 & ;;
    cachefs-nodedup)
      mkdir -p "$aux/store"
      "$CACHEFS" -f --cache-directory "$src" --store "$aux/store" --io-uring off --dedup off "${CACHEFS_EXTRA[@]}" "$mnt" >>"$log" 2>&1 & ;;
    cachefs-nopassthrough)
      mkdir -p "$aux/store"
      "$CACHEFS" -f --cache-directory "$src" --store "$aux/store" --io-uring off --kernel-passthrough off "${CACHEFS_EXTRA[@]}" "$mnt" >>"$log" 2>&1 & ;;
    cachefs-uring)
      mkdir -p "$aux/store"
      "$CACHEFS" -f --cache-directory "$src" --store "$aux/store" --io-uring on "${CACHEFS_EXTRA[@]}" "$mnt" >>"$log" 2>&1 & ;;
    cachefs-discard)
      mkdir -p "$aux/store"
      "$CACHEFS" -f --cache-directory "$src" --store "$aux/store" --io-uring off --write-mode discard "${CACHEFS_EXTRA[@]}" "$mnt" >>"$log" 2>&1 & ;;
    overlayfs)
      # The kernel's own: no daemon to wait for.
      mkdir -p "$aux/upper" "$aux/work"
      if ! mount -t overlay overlay -o "lowerdir=$src,upperdir=$aux/upper,workdir=$aux/work" "$mnt" >>"$log" 2>&1; then
        log "ERROR: overlayfs did not mount $mnt; see $log"; return 1
      fi
      MOUNTS+=("$mnt"); MTGT[$mnt]=$t
      return 0 ;;
    bindfs)
      bindfs -f "$src" "$mnt" >>"$log" 2>&1 & ;;
    fuse-overlayfs)
      mkdir -p "$aux/upper" "$aux/work"
      fuse-overlayfs -f -o "lowerdir=$src,upperdir=$aux/upper,workdir=$aux/work" "$mnt" >>"$log" 2>&1 & ;;
    mergerfs)
      mergerfs -f "$src" "$mnt" >>"$log" 2>&1 & ;;
    *) echo "mount_fs: bad target $t" >&2; return 1 ;;
  esac
  pid=$!
  MOUNTS+=("$mnt"); MPID[$mnt]=$pid; MTGT[$mnt]=$t
  local i
  for i in $(seq 200); do
    if mounted "$mnt" && stat "$mnt/." >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "ERROR: $t exited before mounting $mnt; see $log"; tail -3 "$log" | sed 's/^/    /' >&2
      unmount_one "$mnt"; return 1
    fi
    sleep 0.05
  done
  log "ERROR: $t did not mount $mnt within 10 s"; unmount_one "$mnt"; return 1
}

# alive MNT: the daemon behind MNT still runs
alive() {
  if [ "${MTGT[$1]:-}" = overlayfs ]; then mounted "$1"; return; fi
  [ -n "${MPID[$1]:-}" ] && kill -0 "${MPID[$1]}" 2>/dev/null
}

# record WORKLOAD TARGET RUN VALUE
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$TSV"; }

# timed WORKLOAD TARGET RUN CMD... -- runs CMD with a time limit and records
# its wall time (or ERROR/TIMEOUT). Output goes to the target's log.
LAST_US=0
timed() {
  local w=$1 t=$2 r=$3; shift 3
  local log="$LOGDIR/$t.log" t0 t1 rc=0
  echo "-- $w run $r: $*" >>"$log"
  t0=$(now_us)
  timeout -k 10 "$TIMEOUT" "$@" >>"$log" 2>&1 || rc=$?
  t1=$(now_us)
  LAST_US=$(( t1 - t0 ))
  if [ "$rc" = 0 ]; then
    record "$w" "$t" "$r" "$(secs $LAST_US)"
  else
    local what=ERROR; [ "$rc" = 124 ] && what=TIMEOUT
    record "$w" "$t" "$r" "$what"
    log "  $w $t run $r: $what (exit $rc); last lines of $log:"
    tail -3 "$log" | cut -c1-300 | sed 's/^/    /' >&2
  fi
  return "$rc"
}

# wl_cmd WORKLOAD PATH: sets CMD to the command doing the work. Real
# executables, so that `timeout` can run them.
wl_cmd() {
  case $1 in
    read-*) CMD=(python3 "$HELPER" readall "$2") ;;
    walk-*) CMD=(sh -c 'exec find "$1" -printf "%s %m\n" >/dev/null' sh "$2") ;;
    seq-*) CMD=(dd if="$2" of=/dev/null bs=1M status=none) ;;
    untar) CMD=(tar -xf "$TARBALL" -C "$2" --no-same-owner) ;;
    rm) CMD=(rm -rf "$2") ;;
  esac
}

# ---------------------------------------------------------------- filesystem
mkdir -p "$WORK" "$RESULTS" "$LOGDIR"
if [ "$USE_LOOP" = 1 ]; then
  if mounted "$FSROOT"; then
    echo "run.sh: $FSROOT is already mounted (another run.sh?)" >&2; exit 1
  fi
  if [ "$REGEN" = 1 ] || [ ! -f "$IMG" ]; then
    rm -f "$IMG"
    log "creating ${IMG_GIB} GiB ext4 image $IMG"
    truncate -s "${IMG_GIB}G" "$IMG"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -L cachefs-bench "$IMG"
  fi
  # Direct I/O on the loop device: the image's own pages are not cached a
  # second time in the host filesystem, so drop_caches means "read from disk".
  LOOPDEV=$(losetup --direct-io=on -f --show "$IMG" 2>/dev/null || losetup -f --show "$IMG")
  mkdir -p "$FSROOT"
  mount -t ext4 "$LOOPDEV" "$FSROOT"
  IMG_MOUNTED=1
fi
mkdir -p "$MNT" "$SCRATCH"

# ---------------------------------------------------------------- corpus
if [ "$REGEN" = 1 ] || [ ! -f "$DATA/.complete" ]; then
  rm -rf "$DATA"
  PARTIAL_DATA=$DATA
  log "generating $SCALE corpus (seed $SEED) in $DATA"
  python3 "$HELPER" gen --out "$DATA" --seed "$SEED" --seq-mib "$SEQ_MIB" \
    $([ "$SMALL" = 1 ] && echo --small) >/dev/null
  log "creating tarball $TARBALL"
  tar -C "$SRC" -cf "$TARBALL" "$CORPUS_REL"
  sync
  touch "$DATA/.complete"
  PARTIAL_DATA=
else
  log "reusing corpus $DATA (--regen to rebuild)"
fi
STATS=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["stats"]))' "$MANIFEST")
log "corpus: $STATS"

# ---------------------------------------------------------------- metadata
jstr() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
version_of() {
  case $1 in
    native) echo "$(findmnt -no FSTYPE,OPTIONS --target "$SRC" | head -1 | tr -s ' ')${LOOPDEV:+ on $LOOPDEV (direct-io loop image)}" ;;
    cachefs|cachefs-nowatch|cachefs-writeback|cachefs-nodedup|cachefs-nopassthrough|cachefs-uring|cachefs-discard) echo "$("$CACHEFS" --version 2>&1 | head -1), binary built $(date -u -r "$CACHEFS" +%FT%TZ)," \
      "sha256 $(sha256sum "$CACHEFS" | cut -c1-12), repo HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" ;;
    bindfs) bindfs --version 2>&1 | head -1 ;;
    fuse-overlayfs) fuse-overlayfs --version 2>/dev/null | grep -m1 "^fuse-overlayfs" ;;
    mergerfs) mergerfs --version 2>&1 | head -1 ;;
    overlayfs) echo "kernel overlay $(uname -r)" ;;
  esac
}
declare -A OPTS=(
  [native]="plain directory"
  [cachefs]="-f --cache-directory SRC --store AUX/store --io-uring off${CACHEFS_OPTS:+ $CACHEFS_OPTS}"
  [cachefs-nowatch]="-f --cache-directory SRC --store AUX/store --io-uring off --no-watch-backing${CACHEFS_OPTS:+ $CACHEFS_OPTS}"
  [cachefs-writeback]="-f --cache-directory SRC --store AUX/store --io-uring off --writeback-cache${CACHEFS_OPTS:+ $CACHEFS_OPTS}"
  [cachefs-nodedup]="-f --cache-directory SRC --store AUX/store --io-uring off --dedup off${CACHEFS_OPTS:+ $CACHEFS_OPTS}"
  [cachefs-nopassthrough]="-f --cache-directory SRC --store AUX/store --io-uring off --kernel-passthrough off${CACHEFS_OPTS:+ $CACHEFS_OPTS}"
  [cachefs-uring]="-f --cache-directory SRC --store AUX/store --io-uring on${CACHEFS_OPTS:+ $CACHEFS_OPTS}"
  [cachefs-discard]="-f --cache-directory SRC --store AUX/store --io-uring off --write-mode discard${CACHEFS_OPTS:+ $CACHEFS_OPTS}"
  [overlayfs]="mount -t overlay -o lowerdir=SRC,upperdir=AUX/upper,workdir=AUX/work"
  [bindfs]="-f SRC (defaults)"
  [fuse-overlayfs]="-f -o lowerdir=SRC,upperdir=AUX/upper,workdir=AUX/work"
  [mergerfs]="-f SRC (single branch, defaults)"
)
{
  printf '{"date":"%s","host":"%s","kernel":"%s","cpus":%s,"mem_kib":%s,"cpu":%s,' \
    "$(date -u +%FT%TZ)" "$(hostname)" "$(uname -r)" "$(nproc)" \
    "$(awk '/MemTotal/{print $2}' /proc/meminfo)" \
    "$(jstr "$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)")"
  printf '"nofile_soft":"%s","nofile_hard":"%s",' "$(ulimit -Sn)" "$(ulimit -Hn)"
  # How long an idle vCPU polls before it halts: with 0, every wake-up of a
  # task on the other CPU is a halted vCPU's wake-up, and a FUSE round trip
  # costs ~4x (bench/README.md, "The host's idle polling").
  printf '"idle_driver":%s,"guest_halt_poll_ns":%s,' \
    "$(jstr "$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo none)")" \
    "$(jstr "$(cat /sys/module/haltpoll/parameters/guest_halt_poll_ns 2>/dev/null || echo -)")"
  printf '"runs":%s,"seed":%s,"scale":"%s","work_dir":"%s","loop_image":%s,"corpus":%s,' \
    "$RUNS" "$SEED" "$SCALE" "$WORK" "$([ "$USE_LOOP" = 1 ] && echo true || echo false)" "$STATS"
  printf '"targets":['; sep=
  for t in "${ACTIVE[@]}"; do printf '%s"%s"' "$sep" "$t"; sep=,; done
  printf '],"skipped":{'; sep=
  for t in "${!SKIP_NOTE[@]}"; do printf '%s"%s":%s' "$sep" "$t" "$(jstr "${SKIP_NOTE[$t]}")"; sep=,; done
  printf '},"workloads":['; sep=
  for w in $WORKLOADS; do
    printf '%s"%s"' "$sep" "$w"; sep=,
    [ "$w" = untar ] && printf ',"untar-dedup","untar-sync","rm"'
  done
  printf '],"versions":{'; sep=
  for t in "${ACTIVE[@]}"; do printf '%s"%s":%s' "$sep" "$t" "$(jstr "$(version_of "$t")")"; sep=,; done
  printf '},"options":{'; sep=
  for t in "${ACTIVE[@]}"; do printf '%s"%s":%s' "$sep" "$t" "$(jstr "${OPTS[$t]}")"; sep=,; done
  printf '}}\n'
} >"$META"
: >"$TSV"

START_US=$(now_us)

# rotated R: the active targets, rotated by R-1 places, so that no target is
# always measured first (or right after the same neighbour).
rotated() {  # R [TARGET...]: default the active targets
  local r=$1; shift
  local list=("$@"); [ ${#list[@]} -gt 0 ] || list=("${ACTIVE[@]}")
  local n=${#list[@]} k=$(( (r - 1) % ${#list[@]} )) i
  for (( i=0; i<n; i++ )); do printf '%s ' "${list[$(( (i + k) % n ))]}"; done
}

# ---------------------------------------------------------------- read workloads
# All FUSE targets stay mounted over the same source tree for the whole read
# phase; a daemon that dies is noted (workload "crash") and remounted.
declare -A ROOT=([native]="$SRC")
ensure_read() {  # TARGET: make sure its read mount is alive; 1 if it cannot be
  local t=$1 mnt="$MNT/$t-read"
  [ "$t" = native ] && return 0
  if [ -n "${ROOT[$t]:-}" ] && alive "$mnt"; then return 0; fi
  if [ -n "${ROOT[$t]:-}" ]; then
    log "  $t: daemon died; last lines of $LOGDIR/$t.daemon.log:"
    tail -2 "$LOGDIR/$t.daemon.log" | cut -c1-300 | sed 's/^/    /' >&2
    record crash "$t" "$(awk -F'\t' -v t="$t" '$1=="crash" && $2==t' "$TSV" | wc -l | awk '{print $1+1}')" ERROR
    unmount_one "$mnt"
    unset "ROOT[$t]"
  fi
  if mount_fs "$t" "$SRC" "$mnt" "$SCRATCH/aux/$t-read"; then
    ROOT[$t]=$mnt
    return 0
  fi
  return 1
}

READ_WL=0
for w in read-cold read-warm walk-cold walk-warm seq-cold seq-warm; do want $w && READ_WL=1; done
if [ "$READ_WL" = 1 ]; then
  for t in "${FUSE_TARGETS[@]}"; do ensure_read "$t" || true; done
  # Check that every target shows the corpus byte for byte before timing it.
  for t in "${READ_TARGETS[@]}"; do
    ensure_read "$t" || continue
    log "verifying corpus contents through $t"
    if ! python3 "$HELPER" readall "${ROOT[$t]}/$CORPUS_REL" --verify "$MANIFEST" >>"$LOGDIR/$t.log" 2>&1; then
      log "  WARNING: $t does not show the corpus correctly:"
      tail -2 "$LOGDIR/$t.log" | cut -c1-300 | sed 's/^/    /' >&2
      record verify "$t" 1 ERROR
    fi
  done

  run_read() {  # WORKLOAD cold|warm SUBPATH
    local w=$1 mode=$2 sub=$3 t r
    want "$w" || return 0
    log "$w"
    if [ "$mode" = cold ]; then
      # cold: drop all caches (page cache, dentries, inodes, FUSE's too) before
      # every measured pass; runs interleave the targets.
      for r in $(seq "$RUNS"); do
        for t in $(rotated "$r" "${READ_TARGETS[@]}"); do
          if ! ensure_read "$t"; then record "$w" "$t" "$r" ERROR; continue; fi
          wl_cmd "$w" "${ROOT[$t]}/$sub"
          drop_caches
          timed "$w" "$t" "$r" "${CMD[@]}" || true
        done
      done
    else
      # warm: one unmeasured pass, then N measured passes on the same mount
      for t in "${READ_TARGETS[@]}"; do
        if ensure_read "$t"; then
          wl_cmd "$w" "${ROOT[$t]}/$sub"
          timeout -k 10 "$TIMEOUT" "${CMD[@]}" >/dev/null 2>&1 || true
        fi
        for r in $(seq "$RUNS"); do
          if ! ensure_read "$t"; then record "$w" "$t" "$r" ERROR; continue; fi
          wl_cmd "$w" "${ROOT[$t]}/$sub"
          timed "$w" "$t" "$r" "${CMD[@]}" || true
        done
      done
    fi
    for t in "${READ_TARGETS[@]}"; do
      log "  $t: $(awk -F'\t' -v w="$w" -v t="$t" '$1==w && $2==t {printf "%s ", $4}' "$TSV")"
    done
  }
  run_read read-cold cold "$CORPUS_REL"
  run_read read-warm warm "$CORPUS_REL"
  run_read walk-cold cold "$CORPUS_REL"
  run_read walk-warm warm "$CORPUS_REL"
  run_read seq-cold cold "$SEQ_REL"
  run_read seq-warm warm "$SEQ_REL"

  for t in "${FUSE_TARGETS[@]}"; do
    if [ -n "${ROOT[$t]:-}" ]; then unmount_one "$MNT/$t-read"; fi
  done
fi

# ---------------------------------------------------------------- untar
# Each run and target: a fresh empty directory (FUSE: a fresh mount over an
# empty backing directory), the tarball in the page cache, `sync` beforehand.
# Timed: tar; tar + the `sync` that writes it out; `rm -rf` of the extracted
# tree (through the mount). Then unmount and wipe.
if want untar; then
  log "untar (+sync, rm)"
  for r in $(seq "$RUNS"); do
    for t in $(rotated "$r"); do
      base="$SCRATCH/untar/$t"
      rm -rf "$base"; mkdir -p "$base/back"
      dir="$base/back"
      if [ "$t" != native ]; then
        if ! mount_fs "$t" "$base/back" "$MNT/$t-untar" "$base/aux"; then
          record untar "$t" "$r" ERROR; continue
        fi
        dir="$MNT/$t-untar"
      fi
      cat "$TARBALL" >/dev/null
      sync
      wl_cmd untar "$dir"
      if timed untar "$t" "$r" "${CMD[@]}"; then
        tar_us=$LAST_US
        if [ "$t" = cachefs ]; then
          # Until the daemon has deduplicated what tar wrote: its counters stop
          # moving for longer than --dedup-delay (the quiet time it waits for).
          settle_us=$(python3 "$HELPER" settle "$dir" 2>>"$LOGDIR/$t.log" || echo ERROR)
          if [ "$settle_us" != ERROR ]; then
            record untar-dedup "$t" "$r" "$(secs $(( tar_us + settle_us )))"
            getfattr -n trusted.cachefs.stats --only-values "$dir" >>"$LOGDIR/$t.log" 2>&1 || true
            echo >>"$LOGDIR/$t.log"
          else
            record untar-dedup "$t" "$r" ERROR
          fi
        fi
        t0=$(now_us); sync; sync_us=$(( $(now_us) - t0 ))
        record untar-sync "$t" "$r" "$(secs $(( tar_us + sync_us )))"
        if [ "$r" = 1 ]; then  # check what was written, once per target (not timed)
          if ! python3 "$HELPER" readall "$dir/$CORPUS_REL" --verify "$MANIFEST" >>"$LOGDIR/$t.log" 2>&1; then
            log "  WARNING: $t: extracted tree differs from the corpus (or reading it failed):"
            tail -2 "$LOGDIR/$t.log" | cut -c1-300 | sed 's/^/    /' >&2
            record verify-untar "$t" "$r" ERROR
          fi
        fi
        if [ "$t" = native ] || alive "$dir"; then
          wl_cmd rm "$dir/$CORPUS_REL"
          timed rm "$t" "$r" "${CMD[@]}" || true
        else
          log "  $t: daemon died before rm"; record rm "$t" "$r" ERROR; record crash "$t" "untar$r" ERROR
        fi
      else
        record untar-sync "$t" "$r" ERROR
        if [ "$t" != native ] && ! alive "$dir"; then record crash "$t" "untar$r" ERROR; fi
      fi
      if [ "$t" != native ]; then unmount_one "$MNT/$t-untar"; fi
      rm -rf "$base"
      sync
    done
    log "  run $r: $(awk -F'\t' -v r="$r" '$1=="untar" && $3==r {printf "%s=%s ", $2, $4}' "$TSV")"
  done
fi

# ---------------------------------------------------------------- import
# cachectl import of a copy of the corpus, warm (the copy is in the page
# cache), into a fresh store on the same filesystem; then the physical size of
# tree + store against the sum of the corpus's distinct contents.
if want import; then
  log "import (cachectl import, warm)"
  for r in $(seq "$RUNS"); do
    base="$SCRATCH/import"
    rm -rf "$base"; mkdir -p "$base"
    cp -a "$SRC/$CORPUS_REL" "$base/tree"
    sync
    python3 "$HELPER" readall "$base/tree" >/dev/null
    if timed import native "$r" "$CACHECTL" --store "$base/store" import "$base/tree"; then
      if [ "$r" = 1 ]; then
        python3 "$HELPER" sizes "$base/tree" "$base/store" --distinct-of "$SRC/$CORPUS_REL" \
          --seconds "$(secs $LAST_US)" >"$RESULTS/import-$STAMP.json" 2>>"$LOGDIR/native.log" || true
        log "  $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["summary"])' "$RESULTS/import-$STAMP.json" 2>/dev/null)"
        python3 "$HELPER" readall "$base/tree" --verify "$MANIFEST" >>"$LOGDIR/native.log" 2>&1 ||
          { log "  WARNING: the imported tree differs from the corpus"; record verify-import native "$r" ERROR; }
      fi
    fi
    rm -rf "$base"
  done
  log "  $(awk -F'\t' '$1=="import" {printf "%s ", $4}' "$TSV")"
fi

# ---------------------------------------------------------------- report
ELAPSED=$(( ($(now_us) - START_US) / 1000000 ))
python3 - "$META" "$ELAPSED" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1])); m["elapsed_seconds"] = int(sys.argv[2])
json.dump(m, open(sys.argv[1], "w"))
EOF
echo
python3 "$HELPER" report --tsv "$TSV" --meta "$META" --json "$JSON" \
  $([ -f "$RESULTS/import-$STAMP.json" ] && echo --import "$RESULTS/import-$STAMP.json")
echo
echo "results: $JSON"
echo "logs:    $LOGDIR"

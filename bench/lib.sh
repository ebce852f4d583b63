# shellcheck shell=bash
# What the bench scripts share: option parsing, arithmetic on times, and (for
# runners.sh and qemu.sh, which compare runners by one method so their tables
# line up) the corpus, the build files, the timed launch and the measurement.
# Sourced, not run:
#
#   . "$BENCH_DIR/lib.sh"
#
# Messages start with the script's name (BENCH_PROG, e.g. "qemu.sh: ...").

BENCH_PROG=${0##*/}

die() { echo "$BENCH_PROG: $*" >&2; exit 2; }

# bench_parse_args --flag VAR [--flag VAR ...] -- "$@"
# Sets each VAR from "--flag value" or "--flag=value"; -h/--help prints the
# script's usage() and exits 0; anything else, or a flag without its value, is
# an error (usage, exit 2).
bench_parse_args() {
  local -A _flag_var=()
  while [ "$1" != -- ]; do _flag_var[$1]=$2; shift 2; done
  shift
  local _flag
  while [ $# -gt 0 ]; do
    case $1 in
      -h|--help) usage; exit 0 ;;
      --*=*)
        _flag=${1%%=*}
        [ -n "${_flag_var[$_flag]:-}" ] || _bench_unknown_arg "$1"
        printf -v "${_flag_var[$_flag]}" '%s' "${1#*=}"
        ;;
      *)
        if [ -z "$1" ] || [ -z "${_flag_var[$1]:-}" ]; then _bench_unknown_arg "$1"; fi
        [ $# -ge 2 ] || { echo "$BENCH_PROG: $1 needs a value" >&2; usage >&2; exit 2; }
        printf -v "${_flag_var[$1]}" '%s' "$2"
        shift
        ;;
    esac
    shift
  done
}
_bench_unknown_arg() { echo "$BENCH_PROG: unknown argument '$1'" >&2; usage >&2; exit 2; }

# ------------------------------------------------------------------ times
now() { echo "$EPOCHREALTIME"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", a - b }'; }
median() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", (b > 0 ? a / b : 0) }'; }

# ------------------------------------------------------------------ runners
# The rest is runners.sh's and qemu.sh's. They set LAUNCH, RUNS, SCALE, WORK,
# TMP and BENCH_DIR, and define run_launch RUNNER ARGS... (launch with ARGS and
# that runner's flags and environment).

# The checks both make before anything runs.
bench_check_runner_args() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  [ -x "$LAUNCH" ] || die "no launch binary at $LAUNCH (ninja -C build launch cachefs, or --launch PATH)"
  case $RUNS in ''|*[!0-9]*|0) die "--runs takes a number >= 1" ;; esac
  case $SCALE in small|default) ;; *) die "--scale is small or default" ;; esac
}

# Runs launch for runner $1 on build file $2 with cache dir $3, reading its
# output live. Sets T_FIRST (the first line holding "$4"), T_STEP0/T_STEP1 (the
# step's "==>" and "done" lines) and T_END, all relative to the start; while it
# runs, LAUNCH_PID is launch's pid (for a cleanup that stops it).
timed_launch() {
  local runner=$1 file=$2 cache=$3 marker=$4 line t0
  T_FIRST= T_STEP0= T_STEP1=
  : >"$TMP/last.log"
  t0=$(now)
  while IFS= read -r line; do
    # shellcheck disable=SC2034 # for the script's cleanup
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
  # shellcheck disable=SC2034
  LAUNCH_PID=
  T_END=$(sub "$(now)" "$t0")
  [ -n "$T_FIRST" ] && [ -n "$T_STEP1" ] || { tail -20 "$TMP/last.log" >&2; die "no step output ($runner)"; }
}

# The benchmark corpus (cachebench.py gen, the one run.sh uses) at $SCALE,
# generated once under $WORK and kept. Sets CACHE (the directory the steps read
# as their cache), FILES and BYTES.
bench_corpus() {
  local corpus=$WORK/$SCALE-s42
  if [ ! -f "$corpus/.complete" ]; then
    rm -rf "$corpus"
    mkdir -p "$corpus"
    echo "generating the $SCALE corpus in $corpus"
    python3 "$BENCH_DIR/cachebench.py" gen --out "$corpus" --seed 42 --seq-mib 0 \
      $([ "$SCALE" = small ] && echo --small) >/dev/null
    touch "$corpus/.complete"
  fi
  CACHE=$corpus/src/corpus
  # shellcheck disable=SC2034 # for the script's header
  FILES=$(find "$CACHE" -type f | wc -l)
  # shellcheck disable=SC2034 # for the script's header
  BYTES=$(find "$CACHE" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
}

# The two build files, in $TMP: first.yaml (one step, `echo`) and read.yaml (one
# step reading every file of the cache), and $TMP/empty-cache for the first.
bench_build_files() {
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
  mkdir -p "$TMP/empty-cache"
}

# bench_measure RUNNER...: one unmeasured warm-up of each case, then $RUNS
# rounds of start-up, cold read and warm read with the runners interleaved in
# every round (so drift in the machine's load hits all); prints the runs and
# the table of medians, ratios to the first runner.
bench_measure() {
  local r i load0 base=$1
  local -A S E C W START END COLD WARM
  for r in "$@"; do
    timed_launch "$r" "$TMP/first.yaml" "$TMP/empty-cache" first-step-running
    timed_launch "$r" "$TMP/read.yaml" "$CACHE" "[read-cache/read] "
  done
  load0=$(cut -d' ' -f1-3 /proc/loadavg)
  for ((i = 1; i <= RUNS; i++)); do
    for r in "$@"; do
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
  for r in "$@"; do
    # shellcheck disable=SC2086 # word lists on purpose
    START[$r]=$(median ${S[$r]}) END[$r]=$(median ${E[$r]}) COLD[$r]=$(median ${C[$r]}) WARM[$r]=$(median ${W[$r]})
    echo "$r runs (s): first step${S[$r]}; one-step build${E[$r]}; read cold${C[$r]}; read warm${W[$r]}"
  done
  echo "load average: $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo
  echo "median of $RUNS, seconds; ratios to $base"
  echo
  echo "| runner | launch start -> first step running | one-step build, total | read every cache file, cold | ratio | warm | ratio |"
  echo "|---|---|---|---|---|---|---|"
  for r in "$@"; do
    echo "| $r | ${START[$r]} | ${END[$r]} | ${COLD[$r]} | $(ratio "${COLD[$r]}" "${COLD[$base]}")x | ${WARM[$r]} | $(ratio "${WARM[$r]}" "${WARM[$base]}")x |"
  done
}

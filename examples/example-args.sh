# Sourced by the examples' run.sh scripts, with the script's arguments:
#   HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
#   source "$HERE/../example-args.sh" "$@"
# Takes --launch PATH, --cache-dir DIR and --help (the script's header comment);
# sets REPO, LAUNCH (default $LAUNCH_BIN or the build tree's) and CACHE_DIR
# (empty: the script uses a temporary one), and checks that launch is there.
REPO=$(cd "$HERE/../.." && pwd)
LAUNCH=${LAUNCH_BIN:-$REPO/build/launcher/launch}
CACHE_DIR=
while [ $# -gt 0 ]; do
  case $1 in
    --launch) LAUNCH=$2; shift ;;
    --launch=*) LAUNCH=${1#*=} ;;
    --cache-dir) CACHE_DIR=$2; shift ;;
    --cache-dir=*) CACHE_DIR=${1#*=} ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$LAUNCH" ] || { echo "run.sh: no launch binary at $LAUNCH (build it, or --launch PATH)" >&2; exit 2; }

# example_workspace NAME: a temporary directory $TMP (the cache too, unless
# --cache-dir), removed on exit with the server whose pid is in $SERVER_PID
# (stop_server stops it earlier), whatever way the script ends.
example_workspace() {
  TMP=$(mktemp -d "/var/tmp/$1.XXXXXX")
  SERVER_PID=
  trap 'stop_server; rm -rf "$TMP"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  [ -n "$CACHE_DIR" ] || CACHE_DIR=$TMP/cache
}
stop_server() {
  if [ -n "${SERVER_PID:-}" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
# wait_for_port FILE SED_SCRIPT WHAT LOG: sets $port to the number the server
# started as $SERVER_PID writes to FILE (SED_SCRIPT extracts it); exits with
# LOG shown if the server dies or says nothing within 10 s.
wait_for_port() {
  port=
  for _ in $(seq 100); do
    port=$(sed -n "$2" "$1" | head -1)
    [ -n "$port" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "run.sh: the $3 did not start" >&2
  cat "$4" >&2
  exit 1
}

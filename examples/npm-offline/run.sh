#!/usr/bin/env bash
# examples/npm-offline, end to end: start registry.py (a tiny static npm
# registry serving registry/tiny-greeting) on a free port on 127.0.0.1, build
# greet-app once (npm install downloads tiny-greeting into the npm cache under
# /var/cache/melange/npm), stop the registry, build again with --var
# offline=true (npm install --offline installs from that cache).
#
#   bash examples/npm-offline/run.sh [--launch PATH] [--cache-dir DIR]
#
# Needs npm and node on the host (the sandbox is the host's root). Without
# --cache-dir a temporary cache is used and removed. The registry and every
# temporary directory are gone when the script exits, however it exits.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../example-args.sh" "$@"
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "run.sh: npm and node are needed on the host for this example; skipping" >&2
  exit 0
fi

example_workspace npm-offline

python3 "$HERE/registry.py" "$HERE/registry/tiny-greeting" >"$TMP/port" 2>"$TMP/registry.log" &
SERVER_PID=$!
wait_for_port "$TMP/port" 's/^port \([0-9][0-9]*\)$/\1/p' registry "$TMP/registry.log"
echo "run.sh: registry on 127.0.0.1:$port"

build() {
  "$LAUNCH" build "$HERE/pkg.yaml" --cache-dir "$CACHE_DIR" --out-dir "$TMP/out" \
    --var "port=$port" "$@" 2>&1 | tee "$TMP/build.log"
}

echo "run.sh: first build (the registry is up: npm downloads tiny-greeting)"
build
grep -q 'GET /tiny-greeting/-/tiny-greeting-1.0.0.tgz' "$TMP/registry.log" ||
  { echo "run.sh: the first build did not download from the registry" >&2; exit 1; }
[ -d "$CACHE_DIR/npm/_cacache" ] || { echo "run.sh: nothing in $CACHE_DIR/npm/_cacache" >&2; exit 1; }

stop_server
echo "run.sh: second build (the registry is stopped: npm install --offline)"
build --var offline=true
grep -q 'hello launch, from tiny-greeting' "$TMP/build.log" ||
  { echo "run.sh: the offline build did not run the app" >&2; exit 1; }
[ -f "$TMP/out/greet-app/usr/lib/greet-app/node_modules/tiny-greeting/index.js" ] ||
  { echo "run.sh: tiny-greeting is missing from the package" >&2; exit 1; }
echo "run.sh: ok: tiny-greeting downloaded once, then installed offline from $CACHE_DIR/npm"

#!/usr/bin/env bash
# examples/fetch-tarball, end to end: pack hello-1.0/ into a deterministic
# tarball, serve it from 127.0.0.1 with python3 -m http.server, build once (the
# fetch step downloads, verifies and stores sha256:<hex> in the cache), stop the
# server, build again (the fetch step finds the file in the cache).
#
#   bash examples/fetch-tarball/run.sh [--launch PATH] [--cache-dir DIR]
#
# Without --cache-dir a temporary cache is used and removed. Everything this
# script starts or creates (server, temporary directories) is gone when it
# exits, whether it succeeds, fails or is interrupted.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../example-args.sh" "$@"

example_workspace fetch-tarball

# The upstream tarball: same bytes on every run (sorted names, fixed mtime and
# owner, no gzip timestamp).
mkdir -p "$TMP/srv"
tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \
    --mode='u+rwX,go+rX,go-w' --format=ustar -C "$HERE" -cf - hello-1.0 |
  gzip -n -9 >"$TMP/srv/hello-1.0.tar.gz"
sha=$(sha256sum "$TMP/srv/hello-1.0.tar.gz" | cut -d' ' -f1)
pinned=$(sed -n 's/^ *sha256: *\([0-9a-f]\{64\}\).*/\1/p' "$HERE/pkg.yaml")
vars=()
if [ "$sha" != "$pinned" ]; then
  # Another tar or gzip may pack other bytes; the build still verifies them.
  echo "run.sh: note: this machine's tarball is sha256:$sha, not the pinned $pinned; passing --var sha256=$sha"
  vars+=(--var "sha256=$sha")
fi

# The server: port 0, the kernel picks a free one, http.server prints it.
python3 -u -m http.server --bind 127.0.0.1 --directory "$TMP/srv" 0 >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
wait_for_port "$TMP/server.log" 's/.* port \([0-9][0-9]*\) .*/\1/p' server "$TMP/server.log"
echo "run.sh: serving hello-1.0.tar.gz (sha256:$sha) on 127.0.0.1:$port"

build() {
  "$LAUNCH" build "$HERE/pkg.yaml" --cache-dir "$CACHE_DIR" --out-dir "$TMP/out" \
    --var "port=$port" "${vars[@]}" 2>&1 | tee "$TMP/build.log"
}

echo "run.sh: first build (the server is up: expect a download)"
build
grep -q 'fetch: .*: downloading' "$TMP/build.log" || { echo "run.sh: the first build did not download" >&2; exit 1; }
[ -f "$CACHE_DIR/sha256:$sha" ] || { echo "run.sh: sha256:$sha is not in the cache" >&2; exit 1; }

stop_server
echo "run.sh: second build (the server is stopped: expect a cache hit)"
build
grep -q "fetch: .*: cache hit (sha256:$sha)" "$TMP/build.log" ||
  { echo "run.sh: the second build did not hit the cache" >&2; exit 1; }

"$TMP/out/hello-tarball/usr/bin/hello"
echo "run.sh: ok: downloaded once, then built from $CACHE_DIR/sha256:$sha with no server"

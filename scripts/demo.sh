#!/usr/bin/env bash
# The main job: install what is needed, build and install cachefs, launch and
# cachectl, then build an example package twice through `launch` and show the
# cache at work: the second build's compiler runs are all ccache hits, because
# ccache's directory lives in the shared cache (routed to a directory of its
# own), and what the builds wrote is stored once.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh --install /usr/local >/dev/null
export PATH=/usr/local/bin:$PATH

work=$(mktemp -d /var/tmp/cachefs-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/cache" "$work/ccache"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# One cache, split golem-style: ccache's files in their own directory, the rest
# in the default one.
build() {
  launch build examples/hello-c/pkg.yaml --out-dir "$work/packages" \
    --cache-dir "$work/cache" --define-cache-directories "$work/ccache=^/ccache/"
}

say "first build: an empty cache, every compile is a ccache miss"
build | tee "$work/first.log"

say "second build: the same cache, every compile is a ccache hit"
build | tee "$work/second.log"

say "the difference"
grep -h -E 'ccache statistics\]   (Hits|Misses)|build done|launch: (built|cache)' \
  "$work/first.log" "$work/second.log"
grep -q 'Hits: *3 / *3' "$work/second.log" || { echo "demo: expected 3 ccache hits in the second build" >&2; exit 1; }

say "the packages"
ls -l "$work/packages"
tar -tzf "$work/packages/hello-c-1.2.0-r0.tar.gz"

say "where the cache's files landed (plain directories, readable without any daemon)"
(cd "$work" && find ccache cache -maxdepth 2 -not -path '*/.cachefs*' | sort | head -20)

say "what the cache holds, and what dedup saved"
cachectl --cache-dir "$work/cache" --define-cache-directories "$work/ccache=^/ccache/" stats

say "demo finished: cachefs, launch and cachectl are in /usr/local/bin (man launch)"

#!/usr/bin/env bash
# The main job: install what is needed, build and install cachefs, then mount a
# routed cache and show it at work (until `launch` exists, this is the demo).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh --install /usr/local >/dev/null
CACHEFS=/usr/local/bin/cachefs

work=$(mktemp -d /tmp/cachefs-demo.XXXXXX)
mnt="$work/mnt"
cleanup() {
  grep -q " $mnt " /proc/mounts && fusermount3 -u -z "$mnt"
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work"/{default,gomod,maven} "$mnt"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "mount one cache split over three directories (golem-style routes)"
set -x
"$CACHEFS" --cache-directory "$work/default" \
  --define-cache-directories "$work/gomod=^/gomodcache/|$work/maven=^/m2repository/" "$mnt"
{ set +x; } 2>/dev/null
grep " $mnt " /proc/mounts

say "a build writes its caches the way Go, Maven and pip do"
mod="$mnt/gomodcache/cache/download/golang.org/x/text/@v"
mkdir -p "$mod"
printf 'module golang.org/x/text\n' > "$mod/v0.14.0.mod.tmp-123"
mv "$mod/v0.14.0.mod.tmp-123" "$mod/v0.14.0.mod"            # atomic write-then-rename
jar="$mnt/m2repository/org/apache/commons/commons-lang3/3.14.0"
mkdir -p "$jar"
head -c 1048576 /dev/urandom > "$jar/commons-lang3-3.14.0.jar"
mkdir -p "$mnt/pip/http-v2/a/b"
echo '{"wheel": "requests-2.31.0"}' > "$mnt/pip/http-v2/a/b/entry"
ln -s ../../gomodcache "$mnt/pip/go-link"

say "the build sees one tree"
(cd "$mnt" && find . -type f -o -type l | sort)

say "each file landed in the directory its route names (plain directories, no daemon needed)"
(cd "$work" && find default gomod maven \( -type f -o -type l \) -not -path '*/.cachefs/*' | sort)

say "moving a file to a path that routes elsewhere is a cross-device move: mv copies"
mv "$mnt/pip/http-v2/a/b/entry" "$mnt/gomodcache/entry"
ls -l "$work/gomod/gomodcache/entry"

say "unmount; everything persists"
fusermount3 -u "$mnt"
cat "$work/gomod/gomodcache/cache/download/golang.org/x/text/@v/v0.14.0.mod"

say "remount read-only: the cache serves reads, refuses writes"
"$CACHEFS" --write-mode readonly --cache-directory "$work/default" \
  --define-cache-directories "$work/gomod=^/gomodcache/|$work/maven=^/m2repository/" "$mnt"
sha256sum "$jar/commons-lang3-3.14.0.jar" | cut -c1-16
if touch "$mnt/pip/new" 2>"$work/err"; then echo "unexpected: write succeeded"; exit 1; fi
cat "$work/err"
fusermount3 -u "$mnt"

say "demo finished: cachefs is installed in /usr/local/bin (man cachefs)"

#!/usr/bin/env bash
# Configures and builds cachefs with CMake + Ninja.
#   scripts/build.sh [--sanitize address|thread] [--install PREFIX]
# Build directories: build/ (default), build-asan/, build-tsan/.
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize="" prefix=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize="${2:?--sanitize needs address or thread}"; shift 2 ;;
    --install) prefix="${2:?--install needs a prefix}"; shift 2 ;;
    *) echo "build.sh: unknown argument '$1' (use --sanitize address|thread, --install PREFIX)" >&2; exit 2 ;;
  esac
done
case "$sanitize" in
  "") dir=build ;;
  address) dir=build-asan ;;
  thread) dir=build-tsan ;;
  *) echo "build.sh: --sanitize takes address or thread, not '$sanitize'" >&2; exit 2 ;;
esac

cmake -S . -B "$dir" -G Ninja -DCACHEFS_SANITIZE="$sanitize" >/dev/null
ninja -C "$dir"
if [ -n "$prefix" ]; then
  cmake --install "$dir" --prefix "$prefix" >/dev/null
  echo "installed into $prefix"
fi
echo "$dir"

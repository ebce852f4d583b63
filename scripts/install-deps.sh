#!/usr/bin/env bash
# Installs every Debian package cachefs needs to build, test and benchmark.
# Idempotent; run as root on Debian 12. Skips apt entirely when all are present.
set -euo pipefail

PKGS=(
  # build
  build-essential cmake ninja-build pkg-config git
  libfuse3-dev fuse3 liburing-dev libxxhash-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libyaml-cpp-dev libre2-dev libcurl4-openssl-dev
  # tests (remote: nginx as a WebDAV store, node for s3rver, openssl for htpasswd)
  attr python3 bubblewrap nginx nodejs openssl
  # the docker runner's tests: podman's Docker-compatible engine (runc: crun
  # fails on these machines' hybrid cgroups) and busybox-static for the image
  podman runc busybox-static
  # the qemu runner: qemu (virtiofsd comes with qemu-system-common), the guest's
  # busybox (busybox-static, above), cpio to inspect initramfs images, xz for
  # fetch-kernel's vmlinux
  qemu-system-x86 cpio xz-utils
  # fuzzing (scripts/fuzz.sh): clang with libFuzzer; faults tests: losetup, mkfs.ext4
  clang-14 libclang-rt-14-dev mount e2fsprogs
  # launch examples (examples/): ccache for the C example
  ccache curl
  # benchmarks (peers to compare against)
  bindfs fuse-overlayfs mergerfs
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The docker CLI (launch --runner docker drives it): Debian's comes with docker.io.
command -v docker >/dev/null || missing+=(docker.io)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages (${missing[*]}); run this script as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# s3rver (the S3 store of the remote tests) from the npm registry into a
# project-local prefix; npm itself comes with the machine's nodejs (Debian's npm
# package conflicts with it). Skipped when present, or when there is no npm.
S3RVER_PREFIX=${CACHEFS_TEST_PREFIX:-/opt/cachefs-test}
if [ ! -f "$S3RVER_PREFIX/node_modules/s3rver/package.json" ]; then
  if command -v npm >/dev/null 2>&1; then
    mkdir -p "$S3RVER_PREFIX"
    npm install --prefix "$S3RVER_PREFIX" --no-audit --no-fund --loglevel=error s3rver@3.7.1 ||
      echo "install-deps: npm install s3rver failed; the S3 remote tests will fail" >&2
  else
    echo "install-deps: no npm; the S3 remote tests need s3rver ($S3RVER_PREFIX)" >&2
  fi
fi

# FUSE mounts reachable by other processes (bwrap, podman, qemu) need allow_other.
if [ -f /etc/fuse.conf ] && ! grep -q '^user_allow_other' /etc/fuse.conf; then
  echo user_allow_other >> /etc/fuse.conf || true
fi

# podman as these machines need it (see /work/shared/ENVIRONMENT.md): runc and
# cgroupfs. A drop-in, written once, and only where the administrator's own
# containers.conf does not choose a runtime or cgroup manager already.
dropin=/etc/containers/containers.conf.d/cachefs.conf
if [ "$(id -u)" = 0 ] && [ ! -e "$dropin" ] &&
  ! grep -qsE '^[[:space:]]*(runtime|cgroup_manager)[[:space:]]*=' /etc/containers/containers.conf; then
  mkdir -p "$(dirname "$dropin")"
  cat >"$dropin" <<'EOF'
# Written by cachefs's scripts/install-deps.sh (crun fails on hybrid cgroups).
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
EOF
fi

#!/usr/bin/env bash
# Installs every Debian package cachefs needs to build, test and benchmark.
# Idempotent; run as root on Debian 12. Skips apt entirely when all are present.
set -euo pipefail

PKGS=(
  # build
  build-essential cmake ninja-build pkg-config git
  libfuse3-dev fuse3 liburing-dev libxxhash-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libyaml-cpp-dev libre2-dev libcurl4-openssl-dev
  # tests
  attr python3 bubblewrap
  # the qemu runner: qemu (virtiofsd comes with qemu-system-common), the guest's
  # busybox, cpio to inspect initramfs images, xz for fetch-kernel's vmlinux
  qemu-system-x86 busybox-static cpio xz-utils
  # launch examples (examples/): ccache for the C example
  ccache curl
  # benchmarks (peers to compare against)
  bindfs fuse-overlayfs mergerfs
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages (${missing[*]}); run this script as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# FUSE mounts reachable by other processes (bwrap, podman, qemu) need allow_other.
if [ -f /etc/fuse.conf ] && ! grep -q '^user_allow_other' /etc/fuse.conf; then
  echo user_allow_other >> /etc/fuse.conf || true
fi

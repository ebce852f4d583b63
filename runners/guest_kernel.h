// The qemu runner's guest kernel: where it is (QEMU_KERNEL_IMAGE and
// QEMU_KERNEL_MODULES, melange's names) and how to get one (Debian's
// linux-image package, downloaded with apt-get and unpacked with dpkg -x).
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace cachefs::runners {

struct GuestKernel {
  std::string image;        // the kernel (vmlinuz)
  std::string modules_dir;  // its lib/modules/<version> directory
};

// The guest kernel from QEMU_KERNEL_IMAGE and QEMU_KERNEL_MODULES. When only
// the image is set and it lies in an unpacked package (<root>/boot/vmlinuz-V),
// the modules default to <root>/lib/modules/V. Throws UsageError saying how to
// get a kernel when none is configured or a path is wrong.
GuestKernel guest_kernel_from_env();

// `launch fetch-kernel DIR`: the kernel Debian's linux-image-<arch> names
// (apt-cache depends), downloaded (apt-get download) and unpacked (dpkg -x)
// into DIR/<version>, unless already there. Progress goes to `progress`.
// Throws UsageError when apt cannot find or fetch it.
GuestKernel fetch_kernel(const std::string& dir,
                         const std::function<void(std::string_view)>& progress);

// The lines a shell evaluates to use `k`: "export QEMU_KERNEL_IMAGE=...\n...".
std::string kernel_env_lines(const GuestKernel& k);

}  // namespace cachefs::runners

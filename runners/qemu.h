// The qemu runner: the build's steps run in one Linux VM booted for the build
// (the guest kernel from QEMU_KERNEL_IMAGE/QEMU_KERNEL_MODULES, an initramfs
// launch writes itself). The guest's root is the host's (or --rootfs), read-only
// over 9p under a tmpfs overlay; the workspace is a read-write 9p share at
// /home/build; the cache mount is at /var/cache/melange — over 9p in discard
// mode (nothing the build writes persists, and launch says so), or with
// QEMU_USE_VIRTIOFS=1 in passthrough mode served by virtiofsd (writes persist).
// Steps go to the guest's init over a virtio serial port, which sends back each
// step's stdout (and its exit status) there and its stderr on a second port.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "runners/guest_kernel.h"
#include "runners/runner.h"

namespace cachefs::runners {

// QEMU_USE_VIRTIOFS=1.
bool qemu_use_virtiofs();

// The cachefs flags of the qemu runner's cache mount: THE place that decides
// 9p's discard mode.
std::vector<std::string> qemu_cache_mount_args();

// virtiofsd: $QEMU_VIRTIOFS_PATH when set (and then only it), else
// /usr/libexec/virtiofsd, /usr/lib/qemu/virtiofsd, PATH. Throws UsageError when
// there is none.
std::string find_virtiofsd();

// "4Gi", "512Mi", "2G", "1024M", "1048576Ki", "2147483648" (bytes) -> MiB,
// rounded up. Throws UsageError naming `what`.
uint64_t parse_memory_mib(const std::string& value, const std::string& what);
// "2", "1500m" (Kubernetes millicores, rounded up) -> CPUs. Throws UsageError.
unsigned parse_cpus(const std::string& value, const std::string& what);

class QemuRunner : public Runner {
 public:
  // Checks everything that needs no VM: qemu, the kernel, virtiofsd when
  // asked for, busybox, --cpus/--memory, --qemu-accel. Throws UsageError.
  explicit QemuRunner(RunnerSpec spec);
  ~QemuRunner() override;

  void start(const LineSink& line, const StopCheck& stop) override;
  int run(const std::string& script, const std::string& workdir, const Env& env,
          const LineSink& line, const StopCheck& stop) override;
  void finish() override;

  // kvm or tcg, once started.
  const std::string& accel() const { return accel_; }

 private:
  enum class Pump { Done, Stopped, VmGone, Timeout };
  // Streams the ports' lines to `line` until the control port (and with
  // `with_err` the error port too) shows the end marker; `result` gets what
  // follows the control port's marker ("ready", "error ...", a status).
  Pump pump(bool with_err, const LineSink& line, const StopCheck& stop, std::chrono::seconds limit,
            std::string& result);
  std::string probe_accel();
  void kill_vm();
  std::string diagnostics() const;

  RunnerSpec spec_;
  GuestKernel kernel_;
  std::string qemu_, virtiofsd_, dir_, accel_;
  bool virtiofs_ = false;
  unsigned cpus_ = 0;
  uint64_t memory_mib_ = 0;
  std::string token_;
  pid_t qemu_pid_ = -1, virtiofsd_pid_ = -1;
  int ctl_fd_ = -1, err_fd_ = -1;
  std::string pending_[2];  // bytes read from the ports, not yet a line
  unsigned steps_ = 0;
  bool finished_ = false;
};

}  // namespace cachefs::runners

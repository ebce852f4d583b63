#include "runners/runner.h"

#include "common/error.h"
#include "runners/bubblewrap.h"
#include "runners/docker.h"
#include "runners/qemu.h"

namespace cachefs::runners {
namespace {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

}  // namespace

std::string step_script(const std::string& script, const std::string& workdir) {
  return "set -e\n"
         "(set -o pipefail) 2>/dev/null && set -o pipefail\n"
         "[ -d " + shell_quote(workdir) + " ] || mkdir -p " + shell_quote(workdir) + "\n"
         "cd " + shell_quote(workdir) + "\n" + script + "\nexit 0\n";
}

std::string runner_names() {
  return "bubblewrap, docker, qemu";
}

std::vector<std::string> cache_mount_args(const std::string& runner) {
  // launch's own mount is always allow_other (cache_mount.cc), which is what
  // the container engine (another process, as root) needs to reach it.
  if (runner == "bubblewrap" || runner == "docker") return {};
  // qemu: discard over 9p, passthrough for virtiofs (the one switch is there).
  if (runner == "qemu") return qemu_cache_mount_args();
  throw UsageError::make("--runner {}: unknown runner (known: {})", runner, runner_names());
}

std::unique_ptr<Runner> make_runner(const std::string& name, const RunnerSpec& spec) {
  if (name == "bubblewrap") {
    if (!spec.image.empty()) throw UsageError("--image is for --runner docker (bubblewrap runs --rootfs)");
    return std::make_unique<BubblewrapRunner>(SandboxSpec{spec.rootfs, spec.workspace, spec.cache});
  }
  if (name == "docker") {
    if (!spec.rootfs.empty()) throw UsageError("--rootfs is for --runner bubblewrap or qemu (docker runs --image)");
    return std::make_unique<DockerRunner>(
        DockerSpec{spec.image, spec.workspace, spec.cache, spec.cpus, spec.memory});
  }
  if (name == "qemu") {
    if (!spec.image.empty()) throw UsageError("--image is for --runner docker (qemu runs --rootfs)");
    return std::make_unique<QemuRunner>(spec);
  }
  throw UsageError::make("--runner {}: unknown runner (known: {})", name, runner_names());
}

}  // namespace cachefs::runners

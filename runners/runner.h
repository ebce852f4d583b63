// A runner: where a build's steps run. launch starts the build's cachefs mount
// with the options the runner asks for (cache_mount_args), builds the runner
// over it, start()s it (a container, a VM), runs each step in order, and
// finish()es it on every exit path (the destructor finishes too).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runners/process.h"

namespace cachefs::runners {

inline constexpr const char* kBuildHome = "/home/build";
inline constexpr const char* kCacheDir = "/var/cache/melange";

// What every runner is given. Fields a runner has no use for are ignored.
struct RunnerSpec {
  std::string rootfs;      // empty: the host's root (read-only)
  std::string workspace;   // host directory shown read-write at /home/build
  std::string cache;       // host path of the cache mount, shown at /var/cache/melange
  std::string work_dir;    // launch's private temporary directory (sockets, images...)
  std::string image;       // docker: the image
  std::string cpus;        // package.resources.cpu or a flag; empty: the runner's default
  std::string memory;      // package.resources.memory ("4Gi") or a flag; empty: default
  std::string qemu_accel;  // qemu: kvm, tcg or auto (empty)
};

using LineSink = std::function<void(std::string_view, bool is_err)>;
using StopCheck = std::function<bool()>;

class Runner {
 public:
  virtual ~Runner() = default;
  // Prepares whatever the steps run in; throws UsageError (bad input, missing
  // tool) or std::runtime_error. Lines it prints go to `line`.
  virtual void start(const LineSink& line, const StopCheck& stop) {
    (void)line;
    (void)stop;
  }
  // Runs one step's shell script in `workdir` (absolute, inside the build) with
  // exactly `env`, streaming output; returns a waitpid-style status.
  virtual int run(const std::string& script, const std::string& workdir, const Env& env,
                  const LineSink& line, const StopCheck& stop) = 0;
  // Tears everything down. Idempotent; must not throw.
  virtual void finish() {}
};

// The cachefs flags a runner needs on the build's mount (allow_other for a
// process outside launch's user namespace, a write mode...).
std::vector<std::string> cache_mount_args(const std::string& runner);

// The runner called `name`; throws UsageError naming the known ones.
std::unique_ptr<Runner> make_runner(const std::string& name, const RunnerSpec& spec);

// "bubblewrap, docker, qemu"
std::string runner_names();

// The shell script a step runs, as melange runs it: set -e (and pipefail where
// the shell has it), the working directory created and entered.
std::string step_script(const std::string& script, const std::string& workdir);

}  // namespace cachefs::runners

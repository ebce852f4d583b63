// The bubblewrap runner: every step runs in a fresh bwrap sandbox over the same
// root (the host's, read-only, or --rootfs), with the workspace at /home/build,
// a private /tmp, /dev and /proc, and the cache mount at /var/cache/melange.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "runners/process.h"

namespace cachefs::runners {

struct SandboxSpec {
  std::string rootfs;     // empty: the host's root, read-only
  std::string workspace;  // host directory shown read-write at /home/build
  std::string cache;      // host path (the cachefs mount) shown read-write at /var/cache/melange
};

inline constexpr const char* kBuildHome = "/home/build";
inline constexpr const char* kCacheDir = "/var/cache/melange";

class BubblewrapRunner {
 public:
  // Throws UsageError if bwrap is missing or the spec's directories are not there.
  explicit BubblewrapRunner(SandboxSpec spec);

  // The sandbox command for one shell script run in `workdir` (absolute, inside
  // the sandbox; created if missing) with exactly `env`.
  std::vector<std::string> command(const std::string& script, const std::string& workdir,
                                   const Env& env) const;

  // Runs it, streaming output lines to `line`; returns the waitpid status.
  int run(const std::string& script, const std::string& workdir, const Env& env,
          const std::function<void(std::string_view, bool is_err)>& line,
          const std::function<bool()>& stop) const;

  // Is `path` (absolute) an executable file inside the sandbox's root?
  bool root_has(const std::string& path) const;

 private:
  SandboxSpec spec_;
  std::string bwrap_;
};

// The shell script a step runs, as melange runs it: set -e (and pipefail where
// the shell has it), the working directory created and entered.
std::string step_script(const std::string& script, const std::string& workdir);

}  // namespace cachefs::runners

// The bubblewrap runner: every step runs in a fresh bwrap sandbox over the same
// root (the host's, read-only, or --rootfs), with the workspace at /home/build,
// a private /tmp, /dev and /proc, and the cache mount at /var/cache/melange.
#pragma once

#include <string>
#include <vector>

#include "runners/runner.h"

namespace cachefs::runners {

struct SandboxSpec {
  std::string rootfs;     // empty: the host's root, read-only
  std::string workspace;  // host directory shown read-write at /home/build
  std::string cache;      // host path (the cachefs mount) shown read-write at /var/cache/melange
};

class BubblewrapRunner : public Runner {
 public:
  // Throws UsageError if bwrap is missing or the spec's directories are not there.
  explicit BubblewrapRunner(SandboxSpec spec);

  // The sandbox command for one shell script run in `workdir` (absolute, inside
  // the sandbox; created if missing) with exactly `env`.
  std::vector<std::string> command(const std::string& script, const std::string& workdir,
                                   const Env& env) const;

  // Runs it, streaming output lines to `line`; returns the waitpid status.
  int run(const std::string& script, const std::string& workdir, const Env& env,
          const LineSink& line, const StopCheck& stop) override;

  // Is `path` (absolute) an executable file inside the sandbox's root?
  bool root_has(const std::string& path) const;

 private:
  SandboxSpec spec_;
  std::string bwrap_;
};

}  // namespace cachefs::runners

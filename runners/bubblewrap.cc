#include "runners/bubblewrap.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/error.h"

namespace cachefs::runners {

BubblewrapRunner::BubblewrapRunner(SandboxSpec spec) : spec_(std::move(spec)) {
  bwrap_ = find_in_path("bwrap");
  if (bwrap_.empty()) {
    throw UsageError("bwrap (bubblewrap) not found in PATH: apt-get install bubblewrap");
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!spec_.rootfs.empty() && !fs::is_directory(spec_.rootfs, ec)) {
    throw UsageError::make("--rootfs '{}' is not a directory", spec_.rootfs);
  }
  if (!fs::is_directory(spec_.workspace, ec)) {
    throw UsageError::make("workspace '{}' is not a directory", spec_.workspace);
  }
}

bool BubblewrapRunner::root_has(const std::string& path) const {
  const std::string p = (spec_.rootfs.empty() ? "" : spec_.rootfs) + path;
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

std::vector<std::string> BubblewrapRunner::command(const std::string& script,
                                                   const std::string& workdir,
                                                   const Env& env) const {
  std::vector<std::string> a = {bwrap_, "--die-with-parent", "--unshare-pid", "--unshare-ipc",
                                "--unshare-uts", "--hostname", "launch"};
  a.insert(a.end(), {"--ro-bind", spec_.rootfs.empty() ? "/" : spec_.rootfs, "/"});
  a.insert(a.end(), {"--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"});
  // Fresh directories over the root for the two mount points, so nothing needs
  // to exist (or be created) in a read-only root.
  a.insert(a.end(), {"--tmpfs", "/home", "--bind", spec_.workspace, kBuildHome});
  if (!spec_.cache.empty()) {
    a.insert(a.end(), {"--tmpfs", "/var/cache", "--bind", spec_.cache, kCacheDir});
  }
  a.insert(a.end(), {"--chdir", kBuildHome, "--clearenv"});
  for (const auto& [k, v] : env) a.insert(a.end(), {"--setenv", k, v});
  a.insert(a.end(), {"/bin/sh", "-c", step_script(script, workdir)});
  return a;
}

int BubblewrapRunner::run(const std::string& script, const std::string& workdir, const Env& env,
                          const LineSink& line, const StopCheck& stop) {
  SpawnOptions so;
  so.argv = command(script, workdir, env);
  so.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}};
  return run_streaming(so, line, stop);
}

}  // namespace cachefs::runners

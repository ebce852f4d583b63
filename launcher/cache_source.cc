#include "launcher/cache_source.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "common/error.h"
#include "runners/process.h"

extern char** environ;

namespace cachefs::launcher {
namespace {

std::string find_cachectl(const std::string& self) {
  const std::string found = runners::find_project_tool(self, "cachectl", "tools", "CACHECTL_BIN");
  return found.empty() ? "cachectl" : found;  // not found: posix_spawnp's own error names it
}

}  // namespace

void preload_cache(const std::string& self, const std::string& source, const std::string& cache_dir,
                   bool existing_mount) {
  if (existing_mount)
    throw UsageError("--cache-source fills --cache-dir; it cannot be used with --cache-mount");
  std::vector<std::string> args = {find_cachectl(self), "pull", source, cache_dir};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);  // launch's own output stays clean
  pid_t pid = -1;
  const int err = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (err != 0) throw UsageError::make("--cache-source: cannot run {}: {}", args[0], std::strerror(err));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // cachectl named the problem (credentials masked); a bad source is a usage
  // error (2), a failed transfer is not (1).
  if (WIFEXITED(status) && WEXITSTATUS(status) == 2)
    throw UsageError("--cache-source: not a usable source (cachectl's message above)");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("--cache-source: preloading the cache failed (cachectl's message above)");
}

}  // namespace cachefs::launcher

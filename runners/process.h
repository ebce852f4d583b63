// Child processes for the runners: started in their own process group, stdout
// and stderr streamed live line by line with a prefix, stopped as a group.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace cachefs::runners {

using Env = std::map<std::string, std::string>;

struct SpawnOptions {
  std::vector<std::string> argv;       // argv[0] is looked up in PATH if it has no '/'
  Env env;                             // the child's whole environment
  std::string cwd;                     // empty: inherit
  int parent_death_signal = 9;         // sent to the child when launch dies (0: none)
  bool new_process_group = true;
};

// Runs a child to completion, calling `line` for every line it writes on stdout
// or stderr (is_err tells which). Returns the waitpid status; -1 with errno set
// when it could not be started. `stop` (checked while waiting) ends the child's
// process group with SIGTERM, then SIGKILL after `grace`.
int run_streaming(const SpawnOptions& o, const std::function<void(std::string_view, bool is_err)>& line,
                  const std::function<bool()>& stop = nullptr,
                  std::chrono::milliseconds grace = std::chrono::seconds(5));

// Starts a child with stdout and stderr appended to `log_path`; returns its pid
// or -1 (errno set).
pid_t spawn_logged(const SpawnOptions& o, const std::string& log_path);

// "exited with status 3", "killed by signal 9".
std::string describe_status(int status);

// The absolute path of `name` in PATH, or empty.
std::string find_in_path(const std::string& name);

// One of this project's programs, for the program at `self`: `name` next to it
// (installed), else in the build tree's `build_dir` beside its directory, else
// the path in environment variable `env`, else PATH; empty if none.
std::string find_project_tool(const std::string& self, const std::string& name,
                              const std::string& build_dir, const char* env);

}  // namespace cachefs::runners

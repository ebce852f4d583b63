#include "runners/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/unique_fd.h"

namespace cachefs::runners {
namespace {

struct Prepared {
  std::vector<std::string> env_s;
  std::vector<char*> argv, envp;
  std::string path;
};

Prepared prepare(const SpawnOptions& o) {
  Prepared p;
  for (const auto& [k, v] : o.env) p.env_s.push_back(k + "=" + v);
  for (auto& e : p.env_s) p.envp.push_back(e.data());
  p.envp.push_back(nullptr);
  for (const auto& a : o.argv) p.argv.push_back(const_cast<char*>(a.c_str()));
  p.argv.push_back(nullptr);
  p.path = o.argv.empty() ? "" : o.argv[0];
  if (p.path.find('/') == std::string::npos) p.path = find_in_path(p.path);
  return p;
}

// In the child, between fork and exec: async-signal-safe calls only.
[[noreturn]] void exec_child(const SpawnOptions& o, const Prepared& p, pid_t parent) {
  if (o.new_process_group) ::setpgid(0, 0);
  if (o.parent_death_signal != 0) {
    ::prctl(PR_SET_PDEATHSIG, o.parent_death_signal);
    if (::getppid() != parent) ::_exit(127);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) ::_exit(126);
  ::execve(p.path.c_str(), p.argv.data(), const_cast<char* const*>(p.envp.data()));
  ::_exit(127);
}

// Forks a child with the given stdio that execs `p`; returns its pid or -1.
pid_t fork_exec(const SpawnOptions& o, const Prepared& p, int in, int out, int err) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    exec_child(o, p, parent);
  }
  if (pid > 0 && o.new_process_group) ::setpgid(pid, pid);  // no race with the child's own call
  return pid;
}

}  // namespace

std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t colon = dirs.find(':', start);
    if (colon == std::string::npos) colon = dirs.size();
    const std::string candidate = dirs.substr(start, colon - start) + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
      return candidate;
    }
    start = colon + 1;
  }
  return "";
}

std::string find_project_tool(const std::string& self, const std::string& name,
                              const std::string& build_dir, const char* env) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir = fs::path(self).parent_path();
  for (const fs::path& c : {dir / name, dir / ".." / build_dir / name}) {
    if (fs::is_regular_file(c, ec) && ::access(c.c_str(), X_OK) == 0) return fs::canonical(c, ec);
  }
  if (const char* v = std::getenv(env); v != nullptr && *v) return v;
  return find_in_path(name);
}

std::string describe_status(int status) {
  if (status < 0) return "could not be started";
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with status " + std::to_string(status);
}

pid_t spawn_logged(const SpawnOptions& o, const std::string& log_path) {
  const Prepared p = prepare(o);
  if (p.path.empty()) {
    errno = ENOENT;
    return -1;
  }
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) return -1;
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  return fork_exec(o, p, null.get(), log.get(), log.get());
}

int run_streaming(const SpawnOptions& o, const std::function<void(std::string_view, bool)>& line,
                  const std::function<bool()>& stop, std::chrono::milliseconds grace) {
  const Prepared p = prepare(o);
  if (p.path.empty()) {
    errno = ENOENT;
    return -1;
  }
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return -1;
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return -1;
  }
  UniqueFd out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]);
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const pid_t pid = fork_exec(o, p, null.get(), out_w.get(), err_w.get());
  if (pid < 0) return -1;
  out_w.reset();
  err_w.reset();

  std::string pending[2];
  bool open[2] = {true, true};
  const int fds[2] = {out_r.get(), err_r.get()};
  bool stopping = false;
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  auto target = [&] { return o.new_process_group ? -pid : pid; };
  while (open[0] || open[1]) {
    pollfd pfd[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
    for (int i = 0; i < 2; ++i) {
      if (!open[i]) pfd[i].fd = -1;
    }
    ::poll(pfd, 2, 100);
    for (int i = 0; i < 2; ++i) {
      if (!open[i] || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[8192];
      const ssize_t n = ::read(fds[i], buf, sizeof buf);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        open[i] = false;
        if (!pending[i].empty()) line(pending[i], i == 1);
        pending[i].clear();
        continue;
      }
      pending[i].append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = pending[i].find('\n')) != std::string::npos) {
        line(std::string_view(pending[i]).substr(0, nl), i == 1);
        pending[i].erase(0, nl + 1);
      }
    }
    if (!stopping && stop && stop()) {
      stopping = true;
      ::kill(target(), SIGTERM);
      stop_deadline = std::chrono::steady_clock::now() + grace;
    }
    if (stopping && std::chrono::steady_clock::now() > stop_deadline) {
      ::kill(target(), SIGKILL);
      stop_deadline = std::chrono::steady_clock::time_point::max();
    }
  }
  int status = -1;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // Whatever the step left running in its group goes with it.
  if (o.new_process_group) ::kill(-pid, SIGKILL);
  return status;
}

}  // namespace cachefs::runners

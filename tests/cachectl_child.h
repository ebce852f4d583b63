// cachectl (or another program) run by a test as a child process, for the
// tools and remote suites
// (they define CACHECTL_BINARY): stdout and stderr are captured, and the test's
// own CACHEFS_* and AWS_* environment is left out so only what a test passes
// reaches the tool.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "common/json.h"

#ifndef CACHECTL_BINARY
#error "CACHECTL_BINARY must name the cachectl executable under test"
#endif

extern char** environ;

namespace cachefs_test {

// Starts `args` (argv[0] looked up in PATH) with this process's environment
// minus CACHEFS_* and AWS_*, plus `env_extra`; stdout and stderr to `out_fd` and
// `err_fd` when >= 0. The child's pid, or -1.
inline pid_t Spawn(std::vector<std::string> args, const std::vector<std::string>& env_extra,
                   int out_fd, int err_fd) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** p = environ; *p; ++p) {
    const std::string_view v(*p);
    if (!v.starts_with("CACHEFS_") && !v.starts_with("AWS_")) env_s.emplace_back(v);
  }
  env_s.insert(env_s.end(), env_extra.begin(), env_extra.end());
  std::vector<char*> envp;
  for (auto& s : env_s) envp.push_back(s.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (out_fd >= 0) posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  if (err_fd >= 0) posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  pid_t pid = -1;
  if (posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), envp.data()) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

struct CachectlResult {
  int status = -1;
  std::string out, err;
  int code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }
  cachefs::Json json() const {
    std::string e;
    auto j = cachefs::Json::parse(out, &e);
    EXPECT_TRUE(j) << e << "\nstdout: " << out << "\nstderr: " << err;
    return j ? *j : cachefs::Json::object();
  }
};

// Starts cachectl with `args` and `env_extra` ("NAME=value"); stderr goes to
// `stderr_fd` when given (a terminal, say). finish() waits and collects.
class CachectlChild {
 public:
  explicit CachectlChild(std::vector<std::string> args,
                         const std::vector<std::string>& env_extra = {}, int stderr_fd = -1) {
    char o[] = "/var/tmp/cachectl-out-XXXXXX", e[] = "/var/tmp/cachectl-err-XXXXXX";
    const int out = ::mkstemp(o), err = ::mkstemp(e);
    out_path_ = o;
    err_path_ = e;
    args.insert(args.begin(), CACHECTL_BINARY);
    pid_ = Spawn(std::move(args), env_extra, out, stderr_fd >= 0 ? stderr_fd : err);
    ::close(out);
    ::close(err);
  }
  CachectlChild(const CachectlChild&) = delete;
  CachectlChild& operator=(const CachectlChild&) = delete;
  ~CachectlChild() {
    if (pid_ > 0) finish();
  }

  pid_t pid() const { return pid_; }

  CachectlResult finish() {
    CachectlResult r;
    if (pid_ > 0) ::waitpid(pid_, &r.status, 0);
    pid_ = -1;
    r.out = read_all(out_path_);
    r.err = read_all(err_path_);
    ::unlink(out_path_.c_str());
    ::unlink(err_path_.c_str());
    return r;
  }

 private:
  static std::string read_all(const std::string& p) {
    std::string data;
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return data;
    char buf[65536];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) data.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return data;
  }

  pid_t pid_ = -1;
  std::string out_path_, err_path_;
};

inline CachectlResult RunCachectl(std::vector<std::string> args,
                                  const std::vector<std::string>& env_extra = {}) {
  return CachectlChild(std::move(args), env_extra).finish();
}

}  // namespace cachefs_test

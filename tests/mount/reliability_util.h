// Shared by the reliability suites (faults, load, hostile input): sizes taken
// from the environment (so scripts/long-tests.sh can run the same tests longer),
// deterministic content, tmpfs scopes, cachectl, the daemon's memory.
#pragma once

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "mount_fixture.h"

#ifndef CACHECTL_BINARY
#error "CACHECTL_BINARY must name the cachectl executable under test"
#endif

namespace cachefs_test {

// An integer from the environment, `def` when unset or empty.
inline long EnvLong(const char* name, long def) {
  const char* v = ::getenv(name);
  if (v == nullptr || *v == '\0') return def;
  return std::strtol(v, nullptr, 10);
}

// `n` pseudo-random bytes determined by `seed`.
inline std::string Bytes(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return s;
}

inline struct stat Lstat(const std::string& p) {
  struct stat st {};
  ::lstat(p.c_str(), &st);
  return st;
}

// A size-limited tmpfs over `dir` for the scope's lifetime.
class ScopedTmpfs {
 public:
  ScopedTmpfs(std::string dir, const char* size) : dir_(std::move(dir)) {
    ok_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, (std::string("size=") + size).c_str()) == 0;
  }
  ~ScopedTmpfs() {
    if (ok_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  ScopedTmpfs(const ScopedTmpfs&) = delete;
  ScopedTmpfs& operator=(const ScopedTmpfs&) = delete;
  bool ok() const { return ok_; }

 private:
  std::string dir_;
  bool ok_ = false;
};

// VmRSS of a process in KiB (-1 if unknown).
inline long VmRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

inline CommandResult Cachectl(const std::string& cache_dir, std::vector<std::string> args,
                              int timeout_ms = 120'000) {
  std::vector<std::string> argv = {CACHECTL_BINARY, "--cache-dir=" + cache_dir};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, {}, timeout_ms);
}

// open, write all, fsync, close; false (errno set) if any step fails.
inline bool WriteSynced(const std::string& path, std::string_view data) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return false;
  for (size_t done = 0; done < data.size();) {
    const ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) return false;
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return false;
  return ::close(fd.release()) == 0;
}

// A child process (own process group, output to `log`); returns its pid.
inline pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<std::string> a = argv;
  std::vector<char*> args;
  for (auto& s : a) args.push_back(s.data());
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int in = ::open("/dev/null", O_RDONLY);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// Waits for `pid` up to timeout_ms, then SIGKILLs it; returns the wait status.
inline int Reap(pid_t pid, int timeout_ms) {
  int status = 0;
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid || (w < 0 && errno == ECHILD)) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return status;
}

// Every regular file below `root` (relative paths), not crossing into .cachefs.
inline void Walk(const std::string& root, const std::string& rel,
          const std::function<void(const std::string&)>& file) {
  for (const std::string& name : ListDir(root + (rel.empty() ? "" : "/" + rel))) {
    if (rel.empty() && name == ".cachefs") continue;
    const std::string r = rel.empty() ? name : rel + "/" + name;
    const struct stat st = Lstat(root + "/" + r);
    if (S_ISDIR(st.st_mode)) {
      Walk(root, r, file);
    } else if (S_ISREG(st.st_mode)) {
      file(r);
    }
  }
}

inline int Trials() {
  return static_cast<int>(EnvLong("CACHEFS_FAULT_TRIALS", 5));
}

class FaultTest : public MountTest {
 protected:
  std::vector<std::string> DedupArgs() const {
    return {"--cache-directory", Backing(0), "--dedup-delay", "0"};
  }
  // After a kill: the dead mount is removed by a plain `fusermount3 -u`.
  void Unmount(const std::string& mnt) {
    const CommandResult r = RunCommand({"fusermount3", "-u", mnt});
    EXPECT_TRUE(r.Exited0()) << "fusermount3 -u after kill -9: " << r.Describe();
    if (IsAnythingMounted(mnt)) RunCommand({"fusermount3", "-u", "-z", mnt});
  }
  void ExpectVerifyClean(const std::string& when) {
    const CommandResult v = Cachectl(Backing(0), {"verify"});
    EXPECT_TRUE(v.Exited0()) << "cachectl verify " << when << ": " << v.Describe();
  }
  std::mt19937 rng_{static_cast<unsigned>(::getpid())};
  int RandomMs(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
};

}  // namespace cachefs_test

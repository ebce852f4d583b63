// The launch tests' fixture: runs the real launch binary in a test directory of
// its own (its own TMPDIR) and checks from the outside that nothing — mount,
// work directory — is left behind. Shared by test_launch*.cc; run_launch,
// LaunchRun and slurp by the qemu tests too.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <cctype>
#include <set>
#include <sstream>
#include <thread>

#include "runners/cache_mount.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace launch_test {

struct LaunchRun {
  int status = -1;
  std::string out;  // stdout and stderr
  int code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }
};

inline std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs LAUNCH_BINARY with `args` in `dir`, its stdout and stderr to the file
// `out`, and waits for it. With `on_start`, called with the pid once started
// (for signals).
inline LaunchRun run_launch(std::vector<std::string> args, const std::string& dir, const std::string& out,
                            const std::function<void(pid_t)>& on_start = nullptr) {
  args.insert(args.begin(), LAUNCH_BINARY);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::chdir(dir.c_str());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (on_start) on_start(pid);
  LaunchRun r;
  ::waitpid(pid, &r.status, 0);
  r.out = slurp(out);
  return r;
}

// launch's work directories under `dir` (each test gives launch its own TMPDIR,
// so tests running in parallel never see each other's).
inline std::set<std::string> launch_temp_dirs(const std::string& dir) {
  std::set<std::string> s;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("launch.", 0) == 0) s.insert(e.path());
  }
  return s;
}

inline bool cachefs_mounted_under(const std::string& prefix) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("fuse.cachefs") != std::string::npos && line.find(prefix) != std::string::npos) return true;
  }
  return false;
}

inline bool cachefs_mounted_at(const std::string& path) {
  return cachefs::runners::is_cachefs_mount(path);
}

// Output of a shell command (stdout), for tar and sha256sum.
inline std::string shell(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

inline std::string sha256_of(const std::string& file) {
  return shell("sha256sum '" + file + "'").substr(0, 64);
}

inline bool have_command(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

// A process the test starts (a server, a cachefs daemon): output to a log,
// stopped with SIGTERM (SIGKILL after 10 s) by stop() or when it goes out of
// scope, so a failing test leaves nothing running.
class Child {
 public:
  Child(std::vector<std::string> argv, std::string log) : log_(std::move(log)) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool alive() {
    if (pid_ <= 0) return false;
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) pid_ = -1;
    return pid_ > 0;
  }
  // The number after the first "port " in the log (the port a server printed),
  // waiting up to 10 s; empty if the process died or never printed it.
  std::string wait_for_port() {
    for (int i = 0; i < 200; ++i) {
      std::ifstream in(log_);
      std::stringstream ss;
      ss << in.rdbuf();
      const std::string text = ss.str();
      for (size_t at = text.find("port "); at != std::string::npos; at = text.find("port ", at + 1)) {
        const size_t digits = at + 5;
        size_t end = digits;
        while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
        if (end > digits) return text.substr(digits, end - digits);
      }
      if (!alive()) return "";
      std::this_thread::sleep_for(50ms);
    }
    return "";
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 200; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
};

// python3 -m http.server on a port the kernel picks, serving `dir`.
inline std::unique_ptr<Child> http_server(const std::string& dir, const std::string& log, std::string& port) {
  auto c = std::make_unique<Child>(std::vector<std::string>{"python3", "-u", "-m", "http.server", "--bind",
                                                            "127.0.0.1", "--directory", dir, "0"},
                                   log);
  port = c->wait_for_port();
  return c;
}

class LaunchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/var/tmp/cachefs-launch-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    fs::create_directories(root_ + "/cache");
    fs::create_directories(root_ + "/tmp");
    ::setenv("TMPDIR", (root_ + "/tmp").c_str(), 1);  // inherited by every launch run here
    before_ = launch_temp_dirs(root_ + "/tmp");
  }
  void TearDown() override {
    // Nothing left behind: no mount, no launch.* work directory.
    const std::string work = root_ + "/tmp/launch.";
    for (int i = 0; i < 100 && cachefs_mounted_under(work); ++i) std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(cachefs_mounted_under(work)) << "a build's cache mount was left";
    std::set<std::string> left;
    for (int i = 0; i < 100; ++i) {
      left.clear();
      for (const auto& d : launch_temp_dirs(root_ + "/tmp")) {
        if (!before_.count(d)) left.insert(d);
      }
      if (left.empty()) break;
      std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(left.empty()) << "work directory left: " << *left.begin();
    ::unsetenv("TMPDIR");
    fs::remove_all(root_);
  }
  std::string write(const std::string& name, const std::string& text) {
    const std::string p = root_ + "/" + name;
    fs::create_directories(fs::path(p).parent_path());
    std::ofstream(p) << text;
    return p;
  }
  // Runs launch with `args` in the test's directory; output captured. With
  // `on_start`, called with the pid once started (for signals). Output goes to
  // `out_name` in the test's directory (several runs at once need several).
  LaunchRun launch(std::vector<std::string> args, const std::function<void(pid_t)>& on_start = nullptr,
                   const std::string& out_name = "launch.out") {
    return run_launch(std::move(args), root_, root_ + "/" + out_name, on_start);
  }
  std::vector<std::string> base(const std::string& file) {
    return {"build", file, "--cache-dir", root_ + "/cache", "--out-dir", root_ + "/out",
            "--skip-package-check"};
  }
  std::string root_;
  std::set<std::string> before_;
};

// A sleep long enough to be interrupted, and unique to this test process.
inline std::string sleep_arg() {
  return std::to_string(100000 + ::getpid());
}

}  // namespace launch_test

#include "runners/cache_mount.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "runners/process.h"

namespace cachefs::runners {
namespace {

using namespace std::chrono_literals;

std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string last_lines(const std::string& path, size_t n) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string l;
  while (std::getline(in, l)) lines.push_back(l);
  std::string out;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) {
    out += lines[i] + "\n";
  }
  return out;
}

// "cachefs: <message>" from the daemon's log, without the program prefix.
std::string usage_message(const std::string& log) {
  std::ifstream in(log);
  std::string l, msg;
  while (std::getline(in, l)) {
    if (l.rfind("cachefs: ", 0) == 0) msg = l.substr(9);
  }
  return msg;
}

}  // namespace

bool is_cachefs_mount(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, devno, root, mnt;
    f >> id >> parent >> devno >> root >> mnt;
    if (unescape_mountinfo(mnt) != path) continue;
    const size_t dash = line.find(" - ");
    if (dash != std::string::npos && line.compare(dash + 3, 13, "fuse.cachefs ") == 0) return true;
  }
  return false;
}

std::string find_cachefs(const std::string& self) {
  return find_project_tool(self, "cachefs", "fs", "CACHEFS_BIN");
}

CacheMount::CacheMount(const CacheMountOptions& o) {
  if (!o.existing.empty()) {
    std::error_code ec;
    path_ = std::filesystem::canonical(o.existing, ec);
    if (ec || !is_cachefs_mount(path_)) {
      throw UsageError::make("--cache-mount '{}' is not a cachefs mount (see launch(1): fstab or a "
                             "systemd mount unit)",
                             o.existing);
    }
    return;
  }
  if (o.cachefs.empty()) {
    throw UsageError("cachefs not found next to launch, in $CACHEFS_BIN or in PATH");
  }
  path_ = o.work_dir + "/cache";
  log_ = o.work_dir + "/cachefs.log";
  ::mkdir(path_.c_str(), 0755);
  SpawnOptions so;
  so.argv = {o.cachefs, "-f"};
  so.argv.insert(so.argv.end(), o.args.begin(), o.args.end());
  so.argv.insert(so.argv.end(), {"-o", "allow_other", path_});
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) so.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  // SIGTERM when launch dies: the daemon unmounts cleanly even after kill -9.
  so.parent_death_signal = SIGTERM;
  pid_ = spawn_logged(so, log_);
  if (pid_ < 0) throw UsageError::make("cannot start cachefs: {}", std::strerror(errno));
  owned_ = true;
  for (int i = 0; i < 500; ++i) {  // 10 s
    if (is_cachefs_mount(path_)) return;
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      const std::string msg = usage_message(log_);
      ::rmdir(path_.c_str());
      throw UsageError(msg.empty() ? "cachefs " + describe_status(status) + ":\n" + last_lines(log_, 5)
                                   : msg);
    }
    std::this_thread::sleep_for(20ms);
  }
  stop();
  throw UsageError("cachefs did not mount within 10 s");
}

CacheMount::~CacheMount() {
  stop();
}

std::string CacheMount::stats() const {
  char buf[8192];
  const ssize_t n = ::getxattr(path_.c_str(), "trusted.cachefs.stats", buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string CacheMount::stop() {
  if (!owned_) return "";
  owned_ = false;
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 1500; ++i) {  // 30 s: dedup finishes its queue first
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }
  if (is_cachefs_mount(path_)) {
    const std::string fm = find_in_path("fusermount3");
    if (!fm.empty()) {
      SpawnOptions so;
      so.argv = {fm, "-u", "-z", path_};
      run_streaming(so, [](std::string_view, bool) {});
    }
    if (is_cachefs_mount(path_)) ::umount2(path_.c_str(), MNT_DETACH);
  }
  ::rmdir(path_.c_str());
  return last_lines(log_, 3);
}

}  // namespace cachefs::runners

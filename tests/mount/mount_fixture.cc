#include "mount_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace cachefs_test {
namespace {

using Clock = std::chrono::steady_clock;

void SleepMs(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

// mountinfo escapes ' ', '\t', '\n' and '\\' as \ooo.
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7') {
      out.push_back(
          static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

struct MountEntry {
  std::string mountpoint;
  std::string fstype;
};

std::vector<MountEntry> ReadMountInfo() {
  std::vector<MountEntry> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> f;
    std::string w;
    while (ls >> w) f.push_back(w);
    // id parent maj:min root mountpoint options [optional...] - fstype source superopts
    size_t dash = 0;
    for (size_t i = 6; i < f.size(); ++i) {
      if (f[i] == "-") {
        dash = i;
        break;
      }
    }
    if (f.size() < 5 || dash == 0 || dash + 1 >= f.size()) continue;
    out.push_back({Unescape(f[4]), f[dash + 1]});
  }
  return out;
}

std::string Canonical(const std::string& p) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf) != nullptr) return buf;
  return p;  // a dead FUSE mount cannot be resolved; the caller passes canonical paths
}

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) {
  ::remove(path);
  return 0;  // keep going: remove what can be removed
}

// A compact description of one entry for SnapshotTree.
std::string Describe(int dirfd, const std::string& name, const struct stat& st) {
  std::ostringstream d;
  d << std::oct << st.st_mode << std::dec << " uid=" << st.st_uid << " gid=" << st.st_gid
    << " nlink=" << st.st_nlink;
  if (!S_ISDIR(st.st_mode)) d << " size=" << st.st_size;
  d << " mtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
  if (S_ISLNK(st.st_mode)) {
    char buf[PATH_MAX];
    const ssize_t n = ::readlinkat(dirfd, name.c_str(), buf, sizeof buf);
    d << " -> " << std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
  } else if (S_ISREG(st.st_mode)) {
    Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME));
    if (!fd.valid()) fd.reset(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    std::string content;
    char buf[65536];
    ssize_t n;
    while (fd.valid() && (n = ::read(fd.get(), buf, sizeof buf)) > 0)
      content.append(buf, static_cast<size_t>(n));
    d << " content#" << std::hash<std::string>()(content);
  }
  if (!S_ISLNK(st.st_mode)) {
    Fd fd(::openat(dirfd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (fd.valid()) {
      char list[4096];
      const std::string p = "/proc/self/fd/" + std::to_string(fd.get());
      const ssize_t n = ::listxattr(p.c_str(), list, sizeof list);
      if (n > 0) d << " xattrs=" << std::string(list, static_cast<size_t>(n)).size();
    }
  }
  return d.str();
}

void SnapshotDir(int dirfd, dev_t dev, const std::string& rel,
                 std::map<std::string, std::string>& out) {
  const int dup = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return;
  DIR* dp = ::fdopendir(dup);
  if (dp == nullptr) {
    ::close(dup);
    return;
  }
  while (dirent* de = ::readdir(dp)) {
    const std::string name = de->d_name;
    if (name == "." || name == "..") continue;
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    const std::string path = rel + "/" + name;
    out[path] = Describe(dirfd, name, st);
    if (S_ISDIR(st.st_mode) && st.st_dev == dev) {
      Fd sub(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub.valid()) SnapshotDir(sub.get(), dev, path, out);
    }
  }
  ::closedir(dp);
}

}  // namespace

// ---------------------------------------------------------------------------
// POSIX helpers

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::optional<std::string> ReadFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  std::string out;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool WriteFile(const std::string& path, std::string_view data, int flags, mode_t mode) {
  Fd fd(::open(path.c_str(), flags | O_CLOEXEC, mode));
  if (!fd.valid()) return false;
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  const int fdv = fd.release();
  if (::close(fdv) != 0) return false;
  return true;
}

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> out;
  DIR* dp = ::opendir(path.c_str());
  if (dp == nullptr) return out;
  while (dirent* de = ::readdir(dp)) {
    const std::string name = de->d_name;
    if (name != "." && name != "..") out.push_back(name);
  }
  ::closedir(dp);
  return out;
}

std::set<std::string> ListDirSet(const std::string& path) {
  const auto v = ListDir(path);
  return {v.begin(), v.end()};
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

bool IsCachefsMounted(const std::string& mountpoint) {
  for (const MountEntry& m : ReadMountInfo()) {
    if (m.mountpoint == mountpoint && m.fstype == "fuse.cachefs") return true;
  }
  return false;
}

bool IsAnythingMounted(const std::string& mountpoint) {
  for (const MountEntry& m : ReadMountInfo()) {
    if (m.mountpoint == mountpoint) return true;
  }
  return false;
}

std::string ErrnoName(int err) {
  if (err == 0) return "0 (no error)";
  const char* name = ::strerrorname_np(err);
  return name != nullptr ? std::string(name) : "errno " + std::to_string(err);
}

std::string Pattern(size_t size, unsigned seed) {
  std::string s(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = static_cast<char>('a' + (x >> 16) % 26);
  }
  return s;
}

std::map<std::string, std::string> SnapshotTree(const std::string& root) {
  std::map<std::string, std::string> out;
  Fd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return out;
  struct stat st {};
  ::fstat(fd.get(), &st);
  out["."] = Describe(fd.get(), ".", st);
  SnapshotDir(fd.get(), st.st_dev, "", out);
  return out;
}

bool CommandResult::Exited0() const {
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string CommandResult::Describe() const {
  std::ostringstream d;
  if (WIFEXITED(status))
    d << "exit " << WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    d << "killed by signal " << WTERMSIG(status);
  else
    d << "status " << status;
  if (!output.empty()) d << ", output: [" << output << "]";
  return d.str();
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& env_overrides, int timeout_ms) {
  CommandResult r;
  // Output goes to an unlinked temp file, not a pipe: a daemon started by the
  // command must not be able to keep us waiting for EOF.
  char tmpl[] = "/tmp/cachefs-cmd-out.XXXXXX";
  Fd out(::mkstemp(tmpl));
  if (!out.valid()) {
    r.output = "mkstemp failed";
    return r;
  }
  ::unlink(tmpl);

  // Everything the child needs is built before fork.
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const std::string_view key = entry.substr(0, entry.find('=') + 1);
    bool overridden = false;
    for (const std::string& o : env_overrides) overridden |= o.starts_with(key);
    if (!overridden) env_s.emplace_back(entry);
  }
  env_s.insert(env_s.end(), env_overrides.begin(), env_overrides.end());
  std::vector<char*> envp, args;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_s = argv;
  for (auto& a : argv_s) args.push_back(a.data());
  args.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) {
    r.output = "fork failed";
    return r;
  }
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(out.get(), 1);
    ::dup2(out.get(), 2);
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    ::execvpe(args[0], args.data(), envp.data());
    _exit(127);
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    const pid_t w = ::waitpid(pid, &r.status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (Clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &r.status, 0);
      r.output = "(timed out) ";
      break;
    }
    SleepMs(5);
  }
  ::lseek(out.get(), 0, SEEK_SET);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out.get(), buf, sizeof buf)) > 0) r.output.append(buf, static_cast<size_t>(n));
  return r;
}

// ---------------------------------------------------------------------------
// TempArea

TempArea::TempArea() {
  char tmpl[] = "/tmp/cachefs-mount-test.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  root_ = Canonical(tmpl);
}

TempArea::~TempArea() {
  // Last line of defence: detach whatever is still mounted inside the area, so the
  // removal below never walks into (or through) a mount.
  for (int round = 0; round < 3; ++round) {
    bool any = false;
    for (const MountEntry& m : ReadMountInfo()) {
      if (m.mountpoint.starts_with(root_ + "/")) {
        any = true;
        ::umount2(m.mountpoint.c_str(), MNT_DETACH);
      }
    }
    if (!any) break;
  }
  ::nftw(root_.c_str(), RemoveEntry, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

std::string TempArea::Path(std::string_view rel) const {
  if (rel.empty()) return root_;
  return root_ + "/" + std::string(rel);
}

std::string TempArea::MakeDir(std::string_view rel, mode_t mode) const {
  std::string path = root_;
  size_t start = 0;
  while (start < rel.size()) {
    size_t slash = rel.find('/', start);
    if (slash == std::string_view::npos) slash = rel.size();
    path += "/" + std::string(rel.substr(start, slash - start));
    ::mkdir(path.c_str(), mode);
    start = slash + 1;
  }
  return path;
}

// ---------------------------------------------------------------------------
// CachefsProcess

CachefsProcess::CachefsProcess(std::string mountpoint, std::vector<std::string> args,
                               std::string log_path)
    : mountpoint_(Canonical(mountpoint)), args_(std::move(args)), log_path_(std::move(log_path)) {}

CachefsProcess::~CachefsProcess() {
  Cleanup();
}

std::string CachefsProcess::Log() const {
  auto s = ReadFile(log_path_);
  if (!s) return "(no log)";
  // A sanitizer report needs all its stacks; otherwise the tail says enough.
  const size_t keep = s->find("Sanitizer") != std::string::npos ? 200000 : 4000;
  if (s->size() > keep) return "..." + s->substr(s->size() - keep);
  return *s;
}

bool SuiteRefusesWatch() {
  const char* extra = ::getenv("CACHEFS_TEST_EXTRA_ARGS");
  return extra != nullptr &&
         std::string_view(extra).find("--no-watch-backing") != std::string_view::npos;
}

bool OverIoUring() {
  const char* extra = ::getenv("CACHEFS_TEST_EXTRA_ARGS");
  return extra != nullptr &&
         std::string_view(extra).find("--io-uring=on") != std::string_view::npos;
}

::testing::AssertionResult CachefsProcess::Start() {
  if (running()) return ::testing::AssertionFailure() << "already running";
  // Requests come through /dev/fuse unless a test (or CACHEFS_TEST_EXTRA_ARGS,
  // after it) asks for io_uring: a kernel switch left on by one test must not
  // change the transport of the others.
  std::vector<std::string> argv_s = {kCachefsBinary, "--io-uring=off"};
  argv_s.insert(argv_s.end(), args_.begin(), args_.end());
  // Lets CTest run a whole suite again under other settings (a tiny descriptor
  // budget, say): space-separated arguments added to every mount.
  if (const char* extra = ::getenv("CACHEFS_TEST_EXTRA_ARGS")) {
    std::istringstream words(extra);
    for (std::string w; words >> w;) argv_s.push_back(w);
  }
  argv_s.push_back("-f");
  argv_s.push_back(mountpoint_);
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  Fd log(::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log.valid()) return ::testing::AssertionFailure() << "cannot open " << log_path_;
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return ::testing::AssertionFailure() << "fork: " << ErrnoName(errno);
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) _exit(126);
    const int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(log.get(), 1);
    ::dup2(log.get(), 2);
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;

  std::string cmdline;
  for (const auto& a : argv_s) cmdline += a + " ";
  const auto deadline = Clock::now() + std::chrono::milliseconds(kMountWaitMs);
  while (Clock::now() < deadline) {
    if (IsCachefsMounted(mountpoint_)) return ::testing::AssertionSuccess();
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      last_status_ = status;
      return ::testing::AssertionFailure()
             << "cachefs exited before mounting (" << CommandResult{status, ""}.Describe()
             << ")\ncommand: " << cmdline << "\nlog:\n"
             << Log();
    }
    SleepMs(5);
  }
  Cleanup();
  return ::testing::AssertionFailure() << "no fuse.cachefs mount on " << mountpoint_ << " after "
                                       << kMountWaitMs << " ms\ncommand: " << cmdline << "\nlog:\n"
                                       << Log();
}

bool CachefsProcess::WaitExit(int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int status = 0;
    const pid_t w = ::waitpid(pid_, &status, WNOHANG);
    if (w == pid_ || (w < 0 && errno == ECHILD)) {
      last_status_ = w == pid_ ? status : -1;
      pid_ = -1;
      return true;
    }
    if (Clock::now() > deadline) return false;
    SleepMs(2);
  }
}

::testing::AssertionResult CachefsProcess::Stop(int sig) {
  if (!running()) return ::testing::AssertionFailure() << "cachefs is not running";
  ::kill(pid_, sig);
  if (!WaitExit(kMountWaitMs)) {
    Cleanup();
    return ::testing::AssertionFailure() << "cachefs did not exit within " << kMountWaitMs
                                         << " ms of signal " << sig << "\nlog:\n"
                                         << Log();
  }
  const CommandResult r{last_status_, ""};
  if (!r.Exited0()) {
    const bool still = IsAnythingMounted(mountpoint_);
    Cleanup();
    return ::testing::AssertionFailure()
           << "cachefs, stopped by signal " << sig << ", ended with " << r.Describe()
           << (still ? " and left its mount" : "") << "\nlog:\n"
           << Log();
  }
  if (IsAnythingMounted(mountpoint_)) {
    Cleanup();
    return ::testing::AssertionFailure() << "cachefs exited 0 but left a mount on " << mountpoint_;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult CachefsProcess::Restart() {
  if (auto r = Stop(); !r) return r;
  return Start();
}

std::optional<std::string> CachefsProcess::EndedUnexpectedly() {
  if (!running()) return std::nullopt;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
  pid_ = -1;
  last_status_ = status;
  return CommandResult{status, ""}.Describe();
}

void CachefsProcess::Kill() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  WaitExit(kMountWaitMs);
}

void CachefsProcess::Cleanup() noexcept {
  try {
    if (running()) {
      ::kill(pid_, SIGTERM);
      if (!WaitExit(3000)) {
        ::kill(pid_, SIGKILL);
        WaitExit(kMountWaitMs);
      }
    }
    if (IsAnythingMounted(mountpoint_)) {
      RunCommand({"fusermount3", "-u", mountpoint_}, {}, 5000);
      if (IsAnythingMounted(mountpoint_))
        RunCommand({"fusermount3", "-u", "-z", mountpoint_}, {}, 5000);
      if (IsAnythingMounted(mountpoint_)) ::umount2(mountpoint_.c_str(), MNT_DETACH);
    }
  } catch (...) {
  }
}

// ---------------------------------------------------------------------------
// MountTest

MountTest::MountTest() {
  for (int i = 0; i < 3; ++i) temp_.MakeDir("backing/b" + std::to_string(i));
  temp_.MakeDir("mnt");
  temp_.MakeDir("mnt2");
  temp_.MakeDir("outside");
  temp_.MakeDir("logs");
}

MountTest::~MountTest() {
  // A daemon that died by itself during the test (a crash) fails the test, even
  // when every check before happened to pass.
  for (size_t i = 0; i < mounts_.size(); ++i) {
    if (auto how = mounts_[i]->EndedUnexpectedly()) {
      ADD_FAILURE() << "cachefs daemon " << i << " on " << mounts_[i]->mountpoint()
                    << " died during the test: " << *how;
    }
  }
  for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) (*it)->Cleanup();
  const bool failed = ::testing::Test::HasFailure();
  if (failed) {
    for (size_t i = 0; i < mounts_.size(); ++i) {
      std::fprintf(stderr, "---- cachefs log %zu ----\n%s\n", i, mounts_[i]->Log().c_str());
    }
  }
  mounts_.clear();
}

std::string MountTest::InBacking(int i, std::string_view rel) const {
  return Backing(i) + "/" + std::string(rel);
}

std::string MountTest::Mnt(std::string_view rel) const {
  return rel.empty() ? temp_.Path("mnt") : temp_.Path("mnt") + "/" + std::string(rel);
}

std::string MountTest::Mnt2(std::string_view rel) const {
  return rel.empty() ? temp_.Path("mnt2") : temp_.Path("mnt2") + "/" + std::string(rel);
}

std::string MountTest::Outside(std::string_view rel) const {
  return rel.empty() ? temp_.Path("outside") : temp_.Path("outside") + "/" + std::string(rel);
}

::testing::AssertionResult MountTest::StartMount(std::vector<std::string> args,
                                                 const std::string& mountpoint) {
  const std::string log = temp_.Path("logs/cachefs-" + std::to_string(next_log_++) + ".log");
  mounts_.push_back(std::make_unique<CachefsProcess>(mountpoint.empty() ? Mnt() : mountpoint,
                                                     std::move(args), log));
  return mounts_.back()->Start();
}

std::vector<std::string> MountTest::SingleArgs() const {
  return {"--cache-directory", Backing(0)};
}

std::string MountTest::Stats(const std::string& mnt) const {
  char buf[4096];
  const ssize_t n =
      ::getxattr((mnt.empty() ? Mnt() : mnt).c_str(), "trusted.cachefs.stats", buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

uint64_t MountTest::Counter(const std::string& json, const std::string& name) {
  const size_t at = json.find("\"" + name + "\":");
  if (at == std::string::npos) return UINT64_MAX;
  return std::strtoull(json.c_str() + at + name.size() + 3, nullptr, 10);
}

uint64_t MountTest::WaitForCounter(const std::string& name, uint64_t at_least) const {
  uint64_t v = 0;
  for (int i = 0; i < 400; ++i) {
    v = Counter(Stats(), name);
    if (v != UINT64_MAX && v >= at_least) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return v;
}

std::vector<std::string> MountTest::RoutedArgs() const {
  return {"--define-cache-directories",
          Backing(1) + "=\\.one$|" + Backing(2) + "=\\.two$|" + Backing(0) + "="};
}

}  // namespace cachefs_test

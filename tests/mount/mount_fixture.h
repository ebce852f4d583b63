// Real-mount test support: a private temporary area, cachefs daemons started
// with fork/exec on it, and small POSIX helpers. Nothing here mocks cachefs: every
// test talks to the kernel, which talks to a real daemon.
//
// Cleanup is unconditional: a CachefsProcess that goes out of scope (also after a
// failed ASSERT) stops its daemon, kills it if it does not go, detaches any mount
// left behind, and the TempArea then removes its tree without ever crossing into a
// mount. A daemon also gets SIGTERM if the test process dies (PR_SET_PDEATHSIG).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#ifndef CACHEFS_BINARY
#error "CACHEFS_BINARY must name the cachefs executable under test"
#endif

namespace cachefs_test {

inline constexpr const char* kCachefsBinary = CACHEFS_BINARY;
inline constexpr int kMountWaitMs = 10'000;

// ---- small POSIX helpers (paths are absolute) ----

// The file's whole content; nullopt (errno set) when it cannot be read.
std::optional<std::string> ReadFile(const std::string& path);
// Writes `data` with open(path, flags, mode); false (errno set) on any failure.
bool WriteFile(const std::string& path, std::string_view data,
               int flags = O_WRONLY | O_CREAT | O_TRUNC, mode_t mode = 0644);
// Names in a directory, without "." and ".."; in readdir order, duplicates kept.
std::vector<std::string> ListDir(const std::string& path);
std::set<std::string> ListDirSet(const std::string& path);
bool Exists(const std::string& path);  // lstat succeeds
// True while /proc/self/mountinfo shows a fuse.cachefs mount at `mountpoint`.
bool IsCachefsMounted(const std::string& mountpoint);
// True while any mount at all sits at `mountpoint`.
bool IsAnythingMounted(const std::string& mountpoint);
// errno's symbolic name ("ENOENT").
std::string ErrnoName(int err);

// `size` letters, the same for the same seed: file contents for tests.
std::string Pattern(size_t size, unsigned seed);

// A recursive description of a tree (type, mode, size, mtime, link target or
// content digest per entry), never following symlinks nor crossing mounts; for
// "nothing changed here" checks.
std::map<std::string, std::string> SnapshotTree(const std::string& root);

struct CommandResult {
  int status = -1;     // waitpid status
  std::string output;  // stdout and stderr together
  bool Exited0() const;
  std::string Describe() const;
};
// Runs argv[0] (looked up in PATH) with `env_overrides` ("NAME=value") added to the
// environment; killed after `timeout_ms`.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& env_overrides = {},
                         int timeout_ms = 20'000);

// The suite runs with requests over io_uring (CACHEFS_TEST_EXTRA_ARGS holds
// --io-uring=on): for the few tests about the /dev/fuse loop itself.
bool OverIoUring();
// The suite runs with --no-watch-backing (CACHEFS_TEST_EXTRA_ARGS), which
// overrides a test's own --watch-backing: for the tests of the watch.
bool SuiteRefusesWatch();

// ---- the temporary area ----

// mkdtemp under /tmp; removed (without crossing mounts, after detaching any mount
// still inside it) by the destructor.
class TempArea {
 public:
  TempArea();
  ~TempArea();
  TempArea(const TempArea&) = delete;
  TempArea& operator=(const TempArea&) = delete;

  const std::string& root() const { return root_; }
  std::string Path(std::string_view rel) const;
  // mkdir -p of root/rel; returns the absolute path.
  std::string MakeDir(std::string_view rel, mode_t mode = 0755) const;

 private:
  std::string root_;
};

// ---- one cachefs daemon ----

class CachefsProcess {
 public:
  // `args` go between the binary and "-f MOUNTPOINT"; `log_path` gets the daemon's
  // stdout and stderr.
  CachefsProcess(std::string mountpoint, std::vector<std::string> args, std::string log_path);
  ~CachefsProcess();
  CachefsProcess(const CachefsProcess&) = delete;
  CachefsProcess& operator=(const CachefsProcess&) = delete;

  // Starts the daemon and waits (at most kMountWaitMs) for the fuse.cachefs mount.
  ::testing::AssertionResult Start();
  // Sends `sig`, waits for the daemon to exit, and demands exit code 0 and no mount.
  ::testing::AssertionResult Stop(int sig = SIGTERM);
  ::testing::AssertionResult Restart();
  // SIGKILL and reap; the (dead) mount stays.
  void Kill();
  // If the daemon ended on its own (crashed) while it should be serving: how it
  // ended ("killed by signal 6"); the process is reaped. nullopt while it runs.
  std::optional<std::string> EndedUnexpectedly();
  // Whatever it takes: SIGTERM, SIGKILL, fusermount3 -u (-z). Never fails, never throws.
  void Cleanup() noexcept;

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& mountpoint() const { return mountpoint_; }
  // waitpid status of the last exit.
  int last_status() const { return last_status_; }
  std::string Log() const;
  const std::string& log_path() const { return log_path_; }

 private:
  // Waits up to timeout_ms for the child to exit; true when reaped.
  bool WaitExit(int timeout_ms);

  std::string mountpoint_;
  std::vector<std::string> args_;
  std::string log_path_;
  pid_t pid_ = -1;
  int last_status_ = -1;
};

// ---- the fixture ----

// Layout of the temp area:
//   root/backing/b0 .. b{N-1}   backing directories (b0: the catch-all)
//   root/mnt, root/mnt2         mountpoints
//   root/outside                a directory no daemon may ever touch
//   root/logs                   daemon logs
class MountTest : public ::testing::Test {
 protected:
  MountTest();
  ~MountTest() override;

  std::string Backing(int i) const { return temp_.Path("backing/b" + std::to_string(i)); }
  // Path inside the backing directory i.
  std::string InBacking(int i, std::string_view rel) const;
  std::string Mnt(std::string_view rel = "") const;
  std::string Mnt2(std::string_view rel = "") const;
  std::string Outside(std::string_view rel = "") const;

  // Starts a daemon on `mountpoint` (default: Mnt()) with `args`.
  ::testing::AssertionResult StartMount(std::vector<std::string> args,
                                        const std::string& mountpoint = "");
  // The daemon started n-th (0-based).
  CachefsProcess& mount(size_t n = 0) { return *mounts_.at(n); }

  // Common argument sets.
  std::vector<std::string> SingleArgs() const;  // --cache-directory b0
  // b1 for names ending ".one", b2 for ".two", b0 catch-all.
  std::vector<std::string> RoutedArgs() const;

  // The live counters of the mount at `mnt` (default: Mnt()): the JSON of its
  // root's trusted.cachefs.stats ("" if unreadable).
  std::string Stats(const std::string& mnt = "") const;
  // One counter of that JSON; UINT64_MAX if it is not there.
  static uint64_t Counter(const std::string& json, const std::string& name);
  // Waits (at most 10 s) until the mount's counter `name` reaches `at_least`;
  // returns its last value.
  uint64_t WaitForCounter(const std::string& name, uint64_t at_least) const;

  TempArea temp_;
  std::vector<std::unique_ptr<CachefsProcess>> mounts_;
  size_t next_log_ = 0;
};

// A scoped file descriptor for tests.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    const int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

}  // namespace cachefs_test

// Expects `call` to return -1 (or a null pointer) with errno == err.
#define EXPECT_ERRNO(err, call)                                                        \
  do {                                                                                 \
    errno = 0;                                                                         \
    const long long cachefs_rc_ = static_cast<long long>(call);                        \
    const int cachefs_errno_ = errno;                                                  \
    EXPECT_EQ(cachefs_rc_, -1LL) << #call << " unexpectedly succeeded";                \
    EXPECT_EQ(::cachefs_test::ErrnoName(cachefs_errno_), ::cachefs_test::ErrnoName(err)) \
        << #call;                                                                      \
  } while (0)

// Expects a POSIX call to succeed (return >= 0), printing errno otherwise.
#define EXPECT_SYS_OK(call)                                                                \
  do {                                                                                     \
    errno = 0;                                                                             \
    const long long cachefs_rc_ = static_cast<long long>(call);                            \
    EXPECT_GE(cachefs_rc_, 0LL) << #call << ": " << ::cachefs_test::ErrnoName(errno);      \
  } while (0)
#define ASSERT_SYS_OK(call)                                                                \
  do {                                                                                     \
    errno = 0;                                                                             \
    const long long cachefs_rc_ = static_cast<long long>(call);                            \
    ASSERT_GE(cachefs_rc_, 0LL) << #call << ": " << ::cachefs_test::ErrnoName(errno);      \
  } while (0)

// The real cachefs binary, given wrong input: exit status 2, exactly one line on
// stderr that names the mistake, and nothing mounted.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

extern char** environ;

namespace {

namespace fs = std::filesystem;

struct Result {
  int status = -1;
  std::string err;
  std::string out;
};

// Runs cachefs with `args`; with `prefix`, through that command (setpriv ...).
Result run(std::vector<std::string> args, std::vector<std::string> env_extra = {},
           std::vector<std::string> prefix = {}) {
  char tmpl_out[] = "/tmp/cachefs-cli-out-XXXXXX";
  char tmpl_err[] = "/tmp/cachefs-cli-err-XXXXXX";
  const int out = ::mkstemp(tmpl_out);
  const int err = ::mkstemp(tmpl_err);
  args.insert(args.begin(), CACHEFS_BINARY);
  args.insert(args.begin(), prefix.begin(), prefix.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    if (std::string_view(*e).starts_with("CACHEFS_")) continue;
    env_s.emplace_back(*e);
  }
  for (auto& e : env_extra) env_s.push_back(e);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out, 1);
  posix_spawn_file_actions_adddup2(&fa, err, 2);
  pid_t pid;
  Result r;
  if (posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), envp.data()) == 0) {
    ::waitpid(pid, &r.status, 0);
  }
  posix_spawn_file_actions_destroy(&fa);
  auto slurp = [](const char* p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  r.out = slurp(tmpl_out);
  r.err = slurp(tmpl_err);
  ::close(out);
  ::close(err);
  ::unlink(tmpl_out);
  ::unlink(tmpl_err);
  return r;
}

bool mounted(const std::string& path) {
  std::ifstream m("/proc/self/mountinfo");
  std::string line;
  while (std::getline(m, line)) {
    if (line.find(" " + path + " ") != std::string::npos) return true;
  }
  return false;
}

class CachefsCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cachefs-cli-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    fs::create_directories(dir_ + "/cache");
    fs::create_directories(dir_ + "/mnt");
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs cachefs with `args` and checks the one-line error and that nothing got mounted.
  void expect_error(std::vector<std::string> args, const std::string& fragment,
                    std::vector<std::string> env = {}, std::vector<std::string> prefix = {}) {
    const Result r = run(std::move(args), std::move(env), std::move(prefix));
    ASSERT_TRUE(WIFEXITED(r.status)) << r.err;
    EXPECT_EQ(WEXITSTATUS(r.status), 2) << r.err;
    EXPECT_EQ(r.err.rfind("cachefs: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << "stderr: " << r.err;
    EXPECT_FALSE(mounted(mnt()));
  }
  std::string cache() const { return dir_ + "/cache"; }
  std::string mnt() const { return dir_ + "/mnt"; }
  std::string dir_;
};

TEST_F(CachefsCli, HelpAndVersionExitZero) {
  Result r = run({"--help"});
  EXPECT_EQ(WEXITSTATUS(r.status), 0);
  EXPECT_NE(r.out.find("--define-cache-directories"), std::string::npos);
  r = run({"--version"});
  EXPECT_EQ(WEXITSTATUS(r.status), 0);
  EXPECT_EQ(r.out.rfind("cachefs ", 0), 0u);
}

// --watch-backing needs CAP_SYS_ADMIN (an unlimited fanotify queue) ...
TEST_F(CachefsCli, WatchBackingWithoutTheRightToWatch) {
  expect_error({"--cache-directory", cache(), "--watch-backing", "-f", mnt()},
               "--watch-backing: fanotify: Operation not permitted", {},
               {"setpriv", "--bounding-set=-sys_admin"});
}
// ... and a filesystem whose directories can be found again by handle.
TEST_F(CachefsCli, WatchBackingOnAFilesystemWithoutHandles) {
  expect_error({"--cache-directory", "/proc/sys", "--store", dir_ + "/store", "--watch-backing",
                "-f", mnt()},
               "--watch-backing: cannot watch '/proc/sys': the kernel cannot find its "
               "directories by handle");
}

TEST_F(CachefsCli, UnknownFlag) {
  expect_error({"--cache-dir", cache(), mnt()}, "--cache-dir");
}
TEST_F(CachefsCli, MissingMountpoint) {
  expect_error({"--cache-directory", cache()}, "missing MOUNTPOINT");
}
TEST_F(CachefsCli, NoDefaultDirectory) {
  expect_error({mnt()}, "no default cache directory");
}
TEST_F(CachefsCli, RouteWithoutEquals) {
  expect_error({"--cache-directory", cache(), "--define-cache-directories", cache() + "|x", mnt()},
               "entry 1");
}
TEST_F(CachefsCli, TrailingBar) {
  expect_error({"--cache-directory", cache(), "--define-cache-directories", cache() + "=x|", mnt()},
               "trailing '|'");
}
TEST_F(CachefsCli, EmptySegment) {
  expect_error({"--cache-directory", cache(), "--define-cache-directories", "a=x||b=y", mnt()},
               "entry 2 is empty");
}
TEST_F(CachefsCli, InvalidRegexNamesRoute) {
  expect_error(
      {"--cache-directory", cache(), "--define-cache-directories", cache() + "=[z-a]", mnt()},
      "route 1 '" + cache() + "=[z-a]': invalid regex");
}
TEST_F(CachefsCli, BadPolicyFlagAndEnv) {
  expect_error({"--cache-directory", cache(), "--resolution-policy", "lax", mnt()},
               "--resolution-policy: unknown resolution policy 'lax'");
  expect_error({"--cache-directory", cache(), mnt()}, "CACHEFS_RESOLUTION_POLICY",
               {"CACHEFS_RESOLUTION_POLICY=lax"});
}
TEST_F(CachefsCli, BadWriteMode) {
  expect_error({"--cache-directory", cache(), "--write-mode", "rw", mnt()}, "--write-mode");
}
TEST_F(CachefsCli, MissingCacheDirectory) {
  expect_error({"--cache-directory", dir_ + "/nope", mnt()}, "No such file or directory");
  EXPECT_FALSE(fs::exists(dir_ + "/nope"));
}
TEST_F(CachefsCli, MissingMountpointDirectory) {
  expect_error({"--cache-directory", cache(), dir_ + "/nomnt"}, "mountpoint");
}
TEST_F(CachefsCli, MountpointInsideCache) {
  fs::create_directories(cache() + "/m");
  expect_error({"--cache-directory", cache(), cache() + "/m"}, "lies inside cache directory");
}
TEST_F(CachefsCli, UnknownDashO) {
  expect_error({"--cache-directory", cache(), mnt(), "-o", "allow_other,frobnicate"},
               "-o frobnicate: unknown mount option");
}
TEST_F(CachefsCli, BadThreads) {
  expect_error({"--cache-directory", cache(), "--threads", "many", mnt()}, "--threads");
}
TEST_F(CachefsCli, BadBusyPoll) {
  expect_error({"--cache-directory", cache(), "--busy-poll", "-5", mnt()}, "--busy-poll");
  expect_error({"--cache-directory", cache(), mnt(), "-o", "busy_poll=lots"}, "--busy-poll");
}
TEST_F(CachefsCli, BadConfigFile) {
  std::ofstream(dir_ + "/c.yaml") << "cache-directory: " << cache() << "\nroutes: {a: 1}\n";
  expect_error({"--config", dir_ + "/c.yaml", mnt()},
               dir_ + "/c.yaml:2:9: 'routes' must be a list");
}
TEST_F(CachefsCli, BadLogLevel) {
  expect_error({"--cache-directory", cache(), "--log-level", "chatty", mnt()}, "--log-level");
}

}  // namespace

namespace {

TEST_F(CachefsCli, DedupTakesOnOrOff) {
  expect_error({"--cache-directory", cache(), "--dedup", "maybe", mnt()}, "--dedup: 'maybe'");
  expect_error({"--cache-directory", cache(), "--kernel-passthrough", "maybe", mnt()},
               "--kernel-passthrough: 'maybe' is neither on nor off");
  expect_error({"--cache-directory", cache(), "-o", "kernel_passthrough=yes", mnt()},
               "--kernel-passthrough: 'yes'");
  expect_error({"--cache-directory", cache(), "--io-uring", "yes", mnt()},
               "--io-uring: 'yes' is not auto, on or off");
  expect_error({"--cache-directory", cache(), "-o", "io_uring=1", mnt()}, "--io-uring: '1'");
}
TEST_F(CachefsCli, DedupDelayMustBeANonNegativeNumber) {
  expect_error({"--cache-directory", cache(), "--dedup-delay", "-1", mnt()}, "--dedup-delay");
  expect_error({"--cache-directory", cache(), "--dedup-delay", "soon", mnt()}, "--dedup-delay");
}
TEST_F(CachefsCli, WritebackCacheFlagsMustNotContradict) {
  expect_error({"--cache-directory", cache(), "--writeback-cache", "--no-writeback-cache", mnt()},
               "--writeback-cache and --no-writeback-cache contradict each other");
  expect_error({"--cache-directory", cache(), "-o", "writeback_cache,no_writeback_cache", mnt()},
               "contradict");
}
TEST_F(CachefsCli, StoreThatIsNotAStoreIsRefusedAndLeftAlone) {
  fs::create_directories(dir_ + "/notstore");
  std::ofstream(dir_ + "/notstore/precious") << "keep me";
  expect_error({"--cache-directory", cache(), "--store", dir_ + "/notstore", mnt()},
               "is not a cachefs store");
  EXPECT_TRUE(fs::exists(dir_ + "/notstore/precious"));
  EXPECT_FALSE(fs::exists(dir_ + "/notstore/objects"));
}
TEST_F(CachefsCli, StoreOfAnotherFormatIsRefused) {
  fs::create_directories(dir_ + "/store");
  std::ofstream(dir_ + "/store/cachefs-store") << "cachefs object store\nformat 7\n";
  expect_error({"--cache-directory", cache(), "--store", dir_ + "/store", mnt()}, "format 7");
}

}  // namespace

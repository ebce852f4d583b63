// The runners' pieces for real: child processes with streamed output, the
// cachefs mount a build gets (a real daemon), and bubblewrap sandboxes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/error.h"
#include "runners/bubblewrap.h"
#include "runners/cache_mount.h"
#include "runners/process.h"

namespace fs = std::filesystem;
using namespace cachefs::runners;
using namespace std::chrono_literals;

namespace {

class RunnersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/var/tmp/cachefs-runners-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    fs::create_directories(root_ + "/cache");
    fs::create_directories(root_ + "/ws");
    fs::create_directories(root_ + "/work");
  }
  void TearDown() override {
    EXPECT_FALSE(is_cachefs_mount(root_ + "/work/cache")) << "a mount was left behind";
    fs::remove_all(root_);
  }
  static std::string slurp(const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string root_;
};

struct Captured {
  std::vector<std::string> out, err;
  std::function<void(std::string_view, bool)> sink() {
    return [this](std::string_view l, bool is_err) { (is_err ? err : out).emplace_back(l); };
  }
};

TEST_F(RunnersTest, StreamsLinesFromBothStreamsAndReportsTheStatus) {
  Captured c;
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "echo one; echo two >&2; printf 'no newline'; exit 3"};
  const int status = run_streaming(o, c.sink());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_EQ(c.out, (std::vector<std::string>{"one", "no newline"}));
  EXPECT_EQ(c.err, (std::vector<std::string>{"two"}));
  EXPECT_EQ(describe_status(status), "exited with status 3");
}

TEST_F(RunnersTest, StopEndsTheWholeProcessGroup) {
  const std::string marker = root_ + "/bg.pid";
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "sleep 1000 & echo $! > " + marker + "; wait"};
  std::atomic<bool> stop{false};
  std::thread t([&] {
    std::this_thread::sleep_for(300ms);
    stop = true;
  });
  const int status = run_streaming(o, [](std::string_view, bool) {}, [&] { return stop.load(); },
                                   1s);
  t.join();
  EXPECT_TRUE(WIFSIGNALED(status)) << describe_status(status);
  const pid_t bg = std::stoi(slurp(marker));
  // Gone, or a zombie waiting for a reaper (this container's init may not reap).
  bool alive = true;
  for (int i = 0; i < 50 && alive; ++i) {
    std::this_thread::sleep_for(20ms);
    const std::string stat = slurp("/proc/" + std::to_string(bg) + "/stat");
    alive = !stat.empty() && stat.find(") Z ") == std::string::npos;
  }
  EXPECT_FALSE(alive) << "the step's background process survived";
}

TEST_F(RunnersTest, AMissingProgramCannotBeStarted) {
  SpawnOptions o;
  o.argv = {"no-such-program-anywhere"};
  EXPECT_EQ(run_streaming(o, [](std::string_view, bool) {}), -1);
}

TEST_F(RunnersTest, CacheMountStartsAndStopsARealDaemon) {
  CacheMountOptions o;
  o.cachefs = CACHEFS_BINARY;
  o.args = {"--cache-directory", root_ + "/cache"};
  o.work_dir = root_ + "/work";
  pid_t daemon = -1;
  {
    CacheMount m(o);
    EXPECT_TRUE(is_cachefs_mount(m.path()));
    std::ofstream(m.path() + "/written-through") << "data";
    EXPECT_NE(m.stats().find("\"files_written\""), std::string::npos) << m.stats();
    daemon = std::stoi(m.stats().substr(m.stats().find("\"pid\":") + 6));
  }
  EXPECT_FALSE(is_cachefs_mount(root_ + "/work/cache"));
  EXPECT_FALSE(fs::exists(root_ + "/work/cache"));
  EXPECT_EQ(slurp(root_ + "/cache/written-through"), "data");
  EXPECT_NE(::kill(daemon, 0), 0) << "the daemon is still running";
}

TEST_F(RunnersTest, CacheMountReportsTheDaemonsOwnError) {
  CacheMountOptions o;
  o.cachefs = CACHEFS_BINARY;
  o.args = {"--cache-directory", root_ + "/missing"};
  o.work_dir = root_ + "/work";
  try {
    CacheMount m(o);
    FAIL() << "mounted a missing cache directory";
  } catch (const cachefs::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
}

TEST_F(RunnersTest, CacheMountRefusesAnExistingPathThatIsNotAMount) {
  CacheMountOptions o;
  o.existing = root_ + "/cache";
  try {
    CacheMount m(o);
    FAIL();
  } catch (const cachefs::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("is not a cachefs mount"), std::string::npos) << e.what();
  }
}

TEST_F(RunnersTest, BubblewrapRunsAStepInTheSandbox) {
  std::ofstream(root_ + "/ws/input") << "from the workspace\n";
  BubblewrapRunner r({"", root_ + "/ws", root_ + "/cache"});
  Captured c;
  const int status = r.run(
      "pwd; cat ../../input; echo \"$GREETING\"; echo \"${HOSTVAR:-unset}\"\n"
      "echo cached > /var/cache/melange/out; ls /tmp | wc -l",
      "/home/build/sub/dir", {{"GREETING", "hello"}, {"PATH", "/usr/bin:/bin"}}, c.sink(),
      nullptr);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << describe_status(status) << (c.err.empty() ? "" : c.err[0]);
  for (auto& l : c.err) ADD_FAILURE() << "stderr: " << l;
  EXPECT_EQ(c.out, (std::vector<std::string>{"/home/build/sub/dir", "from the workspace", "hello", "unset", "0"}));
  EXPECT_TRUE(fs::is_directory(root_ + "/ws/sub/dir"));
  EXPECT_EQ(slurp(root_ + "/cache/out"), "cached\n");
}

TEST_F(RunnersTest, BubblewrapStopsAtTheFirstFailingCommand) {
  BubblewrapRunner r({"", root_ + "/ws", ""});
  Captured c;
  const int status = r.run("echo before; false; echo after", "/home/build", {{"PATH", "/bin"}},
                           c.sink(), nullptr);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_EQ(c.out, (std::vector<std::string>{"before"}));
}

TEST_F(RunnersTest, TheHostRootIsReadOnly) {
  BubblewrapRunner r({"", root_ + "/ws", ""});
  Captured c;
  const int status = r.run("touch /usr/cachefs-escape", "/home/build", {{"PATH", "/usr/bin:/bin"}},
                           c.sink(), nullptr);
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_FALSE(fs::exists("/usr/cachefs-escape"));
}

TEST_F(RunnersTest, BubblewrapOverARealCacheMount) {
  CacheMountOptions o;
  o.cachefs = CACHEFS_BINARY;
  o.args = {"--cache-directory", root_ + "/cache"};
  o.work_dir = root_ + "/work";
  CacheMount m(o);
  BubblewrapRunner r({"", root_ + "/ws", m.path()});
  Captured c;
  const int status = r.run("mkdir -p /var/cache/melange/pip && echo wheel > /var/cache/melange/pip/w",
                           "/home/build", {{"PATH", "/usr/bin:/bin"}}, c.sink(), nullptr);
  EXPECT_EQ(WEXITSTATUS(status), 0) << (c.err.empty() ? "" : c.err[0]);
  m.stop();
  EXPECT_EQ(slurp(root_ + "/cache/pip/w"), "wheel\n");
}

}  // namespace

#include "runners/packages.h"

namespace {

TEST_F(RunnersTest, PackagesAreCheckedAgainstTheRoot) {
  // The host: a Debian root with a shell, coreutils and a compiler toolchain.
  EXPECT_TRUE(missing_packages("/", {"busybox", "coreutils", "bash", "make"}).empty());
  EXPECT_EQ(missing_packages("/", {"coreutils", "no-such-package-xyz", "bash=5.2-r0"}),
            (std::vector<std::string>{"no-such-package-xyz"}));
  // An apk root (Wolfi/Alpine) lists its packages in lib/apk/db/installed.
  fs::create_directories(root_ + "/rootfs/lib/apk/db");
  std::ofstream(root_ + "/rootfs/lib/apk/db/installed") << "C:x\nP:go-1.23\nV:1.23.1-r0\n\nP:git\n";
  EXPECT_EQ(missing_packages(root_ + "/rootfs", {"go-1.23", "git", "nodejs"}),
            (std::vector<std::string>{"nodejs"}));
}

}  // namespace

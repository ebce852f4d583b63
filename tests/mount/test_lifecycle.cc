// The daemon's life: clean unmounts on SIGTERM and SIGINT, what kill -9 leaves
// and how to recover from it, mounting through mount(8) / mount.fuse3, the pid
// file, and usage errors.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "mount_fixture.h"

namespace cachefs_test {
namespace {

using namespace std::chrono_literals;

// Some traffic of every kind, so that shutdown has node state to tear down.
void Exercise(const std::string& mnt, int round) {
  const std::string dir = mnt + "/round" + std::to_string(round);
  ASSERT_SYS_OK(::mkdir(dir.c_str(), 0755));
  for (int i = 0; i < 20; ++i) {
    const std::string f = dir + "/f" + std::to_string(i) + (i % 2 ? ".one" : "");
    ASSERT_TRUE(WriteFile(f, std::string(static_cast<size_t>(i) * 100, 'x')));
    ASSERT_EQ(ReadFile(f), std::string(static_cast<size_t>(i) * 100, 'x'));
  }
  ASSERT_SYS_OK(::rename((dir + "/f1.one").c_str(), (dir + "/g1.one").c_str()));
  ASSERT_SYS_OK(::link((dir + "/f0").c_str(), (dir + "/h0").c_str()));
  ASSERT_SYS_OK(::unlink((dir + "/f2").c_str()));
  ASSERT_SYS_OK(::symlink("f3", (dir + "/l3").c_str()));
  EXPECT_EQ(ListDir(dir).size(), 21u);
  EXPECT_EQ(ListDir(mnt).size(), static_cast<size_t>(round + 1));
}

class LifecycleTest : public MountTest {
 protected:
  // Four rounds of: use the mount, stop the daemon with `sig`, check it is gone,
  // start it again; what the rounds wrote persists.
  void StopsCleanlyOn(int sig) {
    ASSERT_TRUE(StartMount(RoutedArgs()));
    for (int round = 0; round < 4; ++round) {
      ASSERT_NO_FATAL_FAILURE(Exercise(Mnt(), round));
      ASSERT_TRUE(mount().Stop(sig)) << "round " << round;
      EXPECT_FALSE(IsAnythingMounted(Mnt()));
      if (round < 3) {
        ASSERT_TRUE(mount().Start());
      }
    }
    EXPECT_EQ(ReadFile(InBacking(0, "round3/f4")), std::string(400, 'x'));
  }
  std::string BinDir() const {
    std::string b = kCachefsBinary;
    return b.substr(0, b.rfind('/'));
  }
  // Waits for a daemonized cachefs (not our child) to go away; a zombie counts as gone.
  static bool WaitGone(pid_t pid, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
      std::string pid_s, comm, state;
      if (!(stat >> pid_s >> comm >> state) || state == "Z") return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  static pid_t ReadPid(const std::string& path) {
    std::ifstream in(path);
    pid_t pid = -1;
    in >> pid;
    return pid;
  }
};

TEST_F(LifecycleTest, SigtermUnmountsCleanly) {
  StopsCleanlyOn(SIGTERM);
}

TEST_F(LifecycleTest, SigintUnmountsCleanly) {
  StopsCleanlyOn(SIGINT);
}

TEST_F(LifecycleTest, SigtermRightAfterMounting) {
  ASSERT_TRUE(StartMount(SingleArgs()));
  ASSERT_TRUE(mount().Stop(SIGTERM));
  ASSERT_TRUE(mount().Start());
  struct stat st {};
  ASSERT_SYS_OK(::stat(Mnt().c_str(), &st));
  ASSERT_TRUE(mount().Stop(SIGINT));
}

TEST_F(LifecycleTest, SigtermWhileTheMountIsBusy) {
  ASSERT_TRUE(StartMount(SingleArgs()));
  ASSERT_TRUE(WriteFile(Mnt("held"), "held open"));
  Fd held(::open(Mnt("held").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(held.valid());
  Fd dir(::open(Mnt().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir.valid());
  // A writer keeps going until the mount disappears under it.
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 0; i < 100000 && !stop.load(); ++i) {
      if (!WriteFile(Mnt("busy" + std::to_string(i % 50)), std::string(8192, 'b'))) break;
      written.fetch_add(1);
    }
  });
  while (written.load() < 50) std::this_thread::sleep_for(1ms);
  const bool stopped = static_cast<bool>(mount().Stop(SIGTERM));
  stop.store(true);
  writer.join();
  EXPECT_TRUE(stopped) << mount().Log();
  EXPECT_FALSE(IsAnythingMounted(Mnt()));
  EXPECT_EQ(ReadFile(InBacking(0, "held")), "held open");
}

TEST_F(LifecycleTest, Kill9LeavesADeadMountThatFusermountRemoves) {
  ASSERT_TRUE(StartMount(SingleArgs()));
  ASSERT_TRUE(WriteFile(Mnt("survivor"), "still here"));
  mount().Kill();
  ASSERT_FALSE(mount().running());
  EXPECT_TRUE(WIFSIGNALED(mount().last_status()));
  EXPECT_TRUE(IsCachefsMounted(Mnt())) << "a killed daemon cannot unmount";
  struct stat st {};
  // The kernel says ENOTCONN when the daemon's /dev/fuse closes. Over io_uring
  // the rings are torn down after the process is gone: a request queued to one
  // before that ends ECANCELED (fuse_uring_send_in_task, the ring's task dead),
  // one that meets the teardown ECONNABORTED.
  EXPECT_EQ(::stat(Mnt("survivor").c_str(), &st), -1);
  const int err = errno;
  EXPECT_TRUE(err == ENOTCONN || (OverIoUring() && (err == ECONNABORTED || err == ECANCELED)))
      << ErrnoName(err);
  const CommandResult r = RunCommand({"fusermount3", "-u", Mnt()});
  EXPECT_TRUE(r.Exited0()) << r.Describe();
  EXPECT_FALSE(IsAnythingMounted(Mnt()));
  // A new daemon on the same mountpoint works, and the data is all there.
  ASSERT_TRUE(mount().Start());
  EXPECT_EQ(ReadFile(Mnt("survivor")), "still here");
  ASSERT_TRUE(WriteFile(Mnt("second-life"), "ok"));
  ASSERT_TRUE(mount().Stop());
  EXPECT_EQ(ReadFile(InBacking(0, "second-life")), "ok");
}

TEST_F(LifecycleTest, DashOCarriesCachefsAndFuseOptions) {
  ASSERT_TRUE(
      StartMount({"-o", "cache_directory=" + Backing(0) + ",write_mode=readonly,allow_other", "-o",
                  "define_cache_directories=" + Backing(1) + "=\\.one$"}));
  std::ifstream in("/proc/self/mountinfo");
  std::string line, ours;
  while (std::getline(in, line)) {
    if (line.find(" " + Mnt() + " ") != std::string::npos) ours = line;
  }
  EXPECT_NE(ours.find("allow_other"), std::string::npos) << ours;
  EXPECT_NE(ours.find(" ro"), std::string::npos) << ours;
  EXPECT_ERRNO(EROFS, ::mkdir(Mnt("x").c_str(), 0755));
  ASSERT_TRUE(mount().Stop());
  // Read-write again, with the route from -o.
  mounts_.clear();
  ASSERT_TRUE(StartMount({"-o", "cache_directory=" + Backing(0), "-o",
                          "define_cache_directories=" + Backing(1) + "=\\.one$"}));
  ASSERT_TRUE(WriteFile(Mnt("routed.one"), "r"));
  EXPECT_EQ(ReadFile(InBacking(1, "routed.one")), "r");
}

TEST_F(LifecycleTest, PidFileIsWrittenAndRemoved) {
  const std::string pid_file = temp_.Path("cachefs.pid");
  std::vector<std::string> args = SingleArgs();
  args.insert(args.end(), {"--pid-file", pid_file});
  ASSERT_TRUE(StartMount(args));
  // Written once mounted; give the daemon a moment past the mount itself.
  for (int i = 0; i < 1000 && ReadPid(pid_file) <= 0; ++i) std::this_thread::sleep_for(2ms);
  EXPECT_EQ(ReadPid(pid_file), mount().pid());
  ASSERT_TRUE(mount().Stop());
  EXPECT_FALSE(Exists(pid_file));
}

// mount(8) style: mount.fuse3 runs "cachefs SOURCE MOUNTPOINT -o OPTIONS" through
// /bin/sh, so `cachefs` is looked up in PATH. mount(8) itself resets PATH to the
// standard one before running helpers, so a test cannot point it at the build
// tree: it calls mount.fuse3 the way mount(8) would, with PATH prepended, and
// separately goes through mount(8) with the "fuse" type's PROGRAM#SOURCE form.
class MountHelperTest : public LifecycleTest {
 protected:
  ~MountHelperTest() override {
    // The daemon is not our child: detach its mount (it then exits) and make sure.
    if (IsAnythingMounted(Mnt())) ::umount2(Mnt().c_str(), MNT_DETACH);
    const pid_t pid = ReadPid(pid_file_);
    if (pid > 0 && !WaitGone(pid, 5s)) ::kill(pid, SIGKILL);
  }
  void ExpectWorkingMountThenUmount() {
    ASSERT_TRUE(IsCachefsMounted(Mnt()));
    ASSERT_TRUE(WriteFile(Mnt("via-helper.one"), "helper"));
    EXPECT_EQ(ReadFile(InBacking(1, "via-helper.one")), "helper");
    ASSERT_TRUE(WriteFile(Mnt("plain"), "plain"));
    EXPECT_EQ(ReadFile(InBacking(0, "plain")), "plain");
    EXPECT_FALSE(ListDirSet(Mnt()).count(".cachefs"));
    // mount.fuse3 adds dev,suid; the cache is nosuid,nodev all the same.
    const std::string opts = MountOptionsOf(Mnt());
    EXPECT_NE(opts.find("nosuid"), std::string::npos) << opts;
    EXPECT_NE(opts.find("nodev"), std::string::npos) << opts;
    for (int i = 0; i < 1000 && ReadPid(pid_file_) <= 0; ++i) std::this_thread::sleep_for(2ms);
    const pid_t pid = ReadPid(pid_file_);
    EXPECT_GT(pid, 0);
    const CommandResult u = RunCommand({"umount", Mnt()});
    EXPECT_TRUE(u.Exited0()) << u.Describe();
    EXPECT_FALSE(IsAnythingMounted(Mnt()));
    if (pid > 0) {
      EXPECT_TRUE(WaitGone(pid, 10s)) << "the daemon did not exit after umount";
    }
  }
  // The per-mount options /proc/self/mounts shows for `mnt`.
  static std::string MountOptionsOf(const std::string& mnt) {
    const auto mounts = ReadFile("/proc/self/mounts");
    std::istringstream lines(mounts ? *mounts : "");
    for (std::string line; std::getline(lines, line);) {
      std::istringstream f(line);
      std::string src, dst, type, opts;
      f >> src >> dst >> type >> opts;
      if (dst == mnt) return opts;
    }
    return "";
  }
  std::string Options() const {
    return "allow_other,pid_file=" + pid_file_ + ",define_cache_directories=" + Backing(1) +
           "=\\.one$";
  }
  std::string pid_file_ = temp_.Path("helper.pid");
};

TEST_F(MountHelperTest, MountFuse3WithTypeFuseCachefsFindsCachefsInPath) {
  const std::string path =
      "PATH=" + BinDir() + ":" + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin");
  const CommandResult r = RunCommand(
      {"/sbin/mount.fuse3", Backing(0), Mnt(), "-t", "fuse.cachefs", "-o", Options()}, {path});
  ASSERT_TRUE(r.Exited0()) << r.Describe();
  ExpectWorkingMountThenUmount();
}

TEST_F(MountHelperTest, MountCommandWithProgramAndSource) {
  const CommandResult r =
      RunCommand({"mount", "-t", "fuse", std::string(kCachefsBinary) + "#" + Backing(0), Mnt(),
                  "-o", Options()});
  ASSERT_TRUE(r.Exited0()) << r.Describe();
  ExpectWorkingMountThenUmount();
}

TEST_F(MountHelperTest, MountCommandWithCacheDirectoryOption) {
  const CommandResult r = RunCommand({"mount", "-t", "fuse", std::string(kCachefsBinary) + "#none",
                                      Mnt(), "-o", Options() + ",cache_directory=" + Backing(0)});
  ASSERT_TRUE(r.Exited0()) << r.Describe();
  ExpectWorkingMountThenUmount();
}

TEST_F(LifecycleTest, UsageErrorsExit2WithOneLine) {
  const std::string bin = kCachefsBinary;
  const std::vector<std::vector<std::string>> cases = {
      {bin},
      {bin, "--cache-directory", Backing(0)},
      {bin, "--cache-directory", temp_.Path("does-not-exist"), Mnt()},
      {bin, "--define-cache-directories", Backing(1) + "=(unclosed|" + Backing(0) + "=", Mnt()},
      {bin, "--define-cache-directories", Backing(1) + "=\\.o$", Mnt()},  // no catch-all
      {bin, "--cache-directory", Backing(0), "--resolution-policy", "lenient", Mnt()},
      {bin, "--cache-directory", Backing(0), "--write-mode", "sometimes", Mnt()},
      {bin, "--cache-directory", Backing(0), "--prefetch-threads", "65", Mnt()},
      {bin, "--cache-directory", Backing(0), "-o", "no_such_option", Mnt()},
      {bin, "--cache-directory", Backing(0), "--bogus-flag", Mnt()},
      {bin, "--cache-directory", temp_.root(), temp_.Path("mnt")},  // mount inside cache dir
  };
  for (const auto& argv : cases) {
    std::string cmd;
    for (size_t i = 1; i < argv.size(); ++i) cmd += argv[i] + " ";
    const CommandResult r = RunCommand(argv);
    EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 2) << cmd << ": " << r.Describe();
    EXPECT_TRUE(r.output.starts_with("cachefs: ")) << cmd << ": " << r.Describe();
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << cmd << ": " << r.Describe();
    EXPECT_FALSE(IsAnythingMounted(Mnt()));
  }
}

}  // namespace
}  // namespace cachefs_test

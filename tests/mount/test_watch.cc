// --watch-backing: with hour-long kernel caches, a change made behind the mount's
// back (in a backing directory, or through another mount) shows through the
// mount within moments. Each test first has the mount cache what it will then
// change, and the control test shows that without the watch the same caches
// keep showing the old state.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>

#include "mount_fixture.h"

namespace cachefs_test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kRefused = "this suite's mounts do not watch";

class WatchTest : public MountTest {
 protected:
  // Waits (at most 5 s) until `ok()` holds.
  static bool Eventually(const std::function<bool()>& ok) {
    const auto end = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < end) {
      if (ok()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return ok();
  }
  static off_t Size(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? st.st_size : -1;
  }
  static mode_t Mode(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
  }
  // The inode marks the daemon's fanotify group holds, as the kernel lists
  // them (-1: it has no group).
  static int KernelMarks(pid_t pid) {
    const std::string proc = "/proc/" + std::to_string(pid);
    for (const auto& e : std::filesystem::directory_iterator(proc + "/fd")) {
      std::error_code ec;
      if (std::filesystem::read_symlink(e.path(), ec) != "anon_inode:[fanotify]") continue;
      const auto info = ReadFile(proc + "/fdinfo/" + e.path().filename().string());
      if (!info) return -1;
      int marks = 0;
      for (size_t at = info->find("fanotify ino:"); at != std::string::npos;
           at = info->find("fanotify ino:", at + 1)) {
        ++marks;
      }
      return marks;
    }
    return -1;
  }

  // Fills b0 (and b1 for ".one" names), then has the mount at `mnt` cache
  // every name, attribute, page and absence the changes below touch.
  void Prepare(const std::string& mnt) {
    ASSERT_SYS_OK(::mkdir(InBacking(0, "d").c_str(), 0755));
    ASSERT_SYS_OK(::mkdir(InBacking(0, "d/sub").c_str(), 0755));
    ASSERT_SYS_OK(::mkdir(InBacking(1, "d").c_str(), 0755));
    ASSERT_TRUE(WriteFile(InBacking(0, "d/f"), "hello"));
    ASSERT_TRUE(WriteFile(InBacking(0, "d/gone"), "x"));
    ASSERT_TRUE(WriteFile(InBacking(0, "d/sub/deep"), "deep"));
    ASSERT_TRUE(WriteFile(InBacking(1, "d/r.one"), "routed"));
    EXPECT_EQ(ReadFile(mnt + "/d/f"), "hello");
    EXPECT_EQ(ReadFile(mnt + "/d/r.one"), "routed");
    EXPECT_EQ(ReadFile(mnt + "/d/sub/deep"), "deep");
    EXPECT_TRUE(Exists(mnt + "/d/gone"));
    EXPECT_FALSE(Exists(mnt + "/d/new"));  // a negative entry, cached
    EXPECT_FALSE(Exists(mnt + "/d/new.one"));
    EXPECT_EQ(Mode(mnt + "/d"), 0755u);
    EXPECT_EQ(ListDirSet(mnt + "/d"), (std::set<std::string>{"f", "gone", "sub", "r.one"}));
  }
  // Changes all of it in the backing directories, as another process.
  void ChangeBehindTheBack() {
    ASSERT_TRUE(WriteFile(InBacking(0, "d/sub/deep"), "deep"));  // the same bytes, but an event
    ASSERT_TRUE(WriteFile(InBacking(0, "d/f"), " world", O_WRONLY | O_APPEND));
    ASSERT_SYS_OK(::chmod(InBacking(0, "d/f").c_str(), 0600));
    ASSERT_SYS_OK(::chmod(InBacking(0, "d").c_str(), 0700));
    ASSERT_TRUE(WriteFile(InBacking(0, "d/new"), "new"));
    ASSERT_TRUE(WriteFile(InBacking(1, "d/new.one"), "new one"));
    ASSERT_TRUE(WriteFile(InBacking(1, "d/r.one"), "rerouted"));
    ASSERT_SYS_OK(::unlink(InBacking(0, "d/gone").c_str()));
    ASSERT_SYS_OK(::rename(InBacking(0, "d/sub").c_str(), InBacking(0, "d/moved").c_str()));
  }
  std::vector<std::string> Args(bool watch) const {
    std::vector<std::string> a = RoutedArgs();
    a.emplace_back(watch ? "--watch-backing" : "--no-watch-backing");
    // Absences are cached too, so that the watch must tell of new names.
    a.insert(a.end(), {"--negative-timeout", "3600"});
    if (!watch) a.insert(a.end(), {"--entry-timeout", "3600", "--attr-timeout", "3600"});
    return a;
  }
};

TEST_F(WatchTest, ChangesMadeInTheBackingDirectoriesShowAtOnce) {
  if (SuiteRefusesWatch()) GTEST_SKIP() << kRefused;
  ASSERT_TRUE(StartMount(Args(true)));
  Prepare(Mnt());
  // The mount's own changes (made by the daemon) are not taken for a
  // stranger's. (Not file writes: the kernel makes those, as the writer.)
  // Prepare's own changes in the roots, marked from the start, are read first.
  std::this_thread::sleep_for(100ms);
  const uint64_t before = Counter(Stats(), "watch_events");
  ASSERT_SYS_OK(::mkdir(Mnt("own").c_str(), 0755));
  ASSERT_SYS_OK(::chmod(Mnt("own").c_str(), 0700));
  ASSERT_SYS_OK(::rename(Mnt("own").c_str(), Mnt("own2").c_str()));
  ASSERT_SYS_OK(::rmdir(Mnt("own2").c_str()));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(Counter(Stats(), "watch_events"), before) << Stats();
  ChangeBehindTheBack();
  EXPECT_TRUE(Eventually([&] { return ReadFile(Mnt("d/f")) == "hello world"; }));
  EXPECT_EQ(Size(Mnt("d/f")), 11);
  EXPECT_TRUE(Eventually([&] { return Mode(Mnt("d/f")) == 0600u; }));
  EXPECT_TRUE(Eventually([&] { return Mode(Mnt("d")) == 0700u; }));
  EXPECT_TRUE(Eventually([&] { return ReadFile(Mnt("d/new")) == "new"; }));
  EXPECT_TRUE(Eventually([&] { return ReadFile(Mnt("d/new.one")) == "new one"; }));
  EXPECT_TRUE(Eventually([&] { return ReadFile(Mnt("d/r.one")) == "rerouted"; }));
  EXPECT_TRUE(Eventually([&] { return !Exists(Mnt("d/gone")); }));
  EXPECT_TRUE(Eventually([&] { return !Exists(Mnt("d/sub/deep")); }));
  EXPECT_EQ(ReadFile(Mnt("d/moved/deep")), "deep");
  EXPECT_TRUE(Eventually([&] {
    return ListDirSet(Mnt("d")) == (std::set<std::string>{"f", "new", "new.one", "moved", "r.one"});
  }));
  // The watch knows a directory by the path it had when a change in it was
  // first seen; once it moves, a change in it must be found under the new path.
  // (Checked on a cached absence: a file's content would be refreshed anyway,
  // since the kernel asks for attributes again after each read it sent.)
  EXPECT_FALSE(Exists(Mnt("d/moved/first")));
  ASSERT_TRUE(WriteFile(InBacking(0, "d/moved/first"), "first"));
  ASSERT_TRUE(Eventually([&] { return Exists(Mnt("d/moved/first")); }));
  ASSERT_SYS_OK(::rename(InBacking(0, "d/moved").c_str(), InBacking(0, "d/again").c_str()));
  EXPECT_TRUE(Eventually([&] { return Exists(Mnt("d/again")); }));
  EXPECT_FALSE(Exists(Mnt("d/again/later")));
  ASSERT_TRUE(WriteFile(InBacking(0, "d/again/later"), "later"));
  EXPECT_TRUE(Eventually([&] { return Exists(Mnt("d/again/later")); }));
  const std::string stats = Stats();
  EXPECT_GT(Counter(stats, "watch_events"), 0u) << stats;
  EXPECT_GT(Counter(stats, "watch_invalidations"), 0u) << stats;
  EXPECT_EQ(Counter(stats, "watch_unmarked"), 0u) << stats;
  EXPECT_NE(stats.find("\"watch_backing\":true"), std::string::npos) << stats;
}

// What the test above would see without the watch: the timeouts alone keep
// the old state (which is why they default to 10 s then).
TEST_F(WatchTest, WithoutTheWatchLongTimeoutsKeepTheOldState) {
  ASSERT_TRUE(StartMount(Args(false)));
  Prepare(Mnt());
  ChangeBehindTheBack();
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(Size(Mnt("d/f")), 5);
  EXPECT_EQ(Mode(Mnt("d/f")), 0644u);
  EXPECT_FALSE(Exists(Mnt("d/new")));
  EXPECT_TRUE(Exists(Mnt("d/gone")));
  EXPECT_NE(Stats().find("\"watch_backing\":false"), std::string::npos);
}

// Without a flag the mount watches whenever the daemon may (here: root), and
// the name and attribute timeouts not given then default to an hour. Absences
// stay uncached: a name another mount makes must show at once
// (ConcurrencyTest.TwoMountsOverTheSameBackingDirectories), not moments later.
TEST_F(WatchTest, ByDefaultAMountWatchesWhenItMay) {
  ASSERT_TRUE(StartMount(RoutedArgs()));
  const bool watching = !SuiteRefusesWatch();
  EXPECT_NE(Stats().find(watching ? "\"watch_backing\":true" : "\"watch_backing\":false"),
            std::string::npos)
      << Stats();
  EXPECT_NE(mount().Log().find(watching ? "the kernel may cache: names 3600 s, attributes "
                                          "3600 s, absent names 0 s"
                                        : "run out: names 10 s, attributes 10 s, absent names 0 s"),
            std::string::npos)
      << mount().Log();
}

// One that may not (the kernel cannot find /proc's directories by handle)
// mounts all the same, says why it does not watch, and keeps the 10 s
// timeouts. Asked for with --watch-backing, the same refusal is an error
// (CachefsCli.WatchBackingOnAFilesystemWithoutHandles).
TEST_F(WatchTest, ByDefaultAMountThatMayNotWatchDoesWithout) {
  ASSERT_TRUE(StartMount({"--cache-directory", "/proc/sys", "--store", temp_.Path("store")}));
  EXPECT_TRUE(Exists(Mnt("kernel")));
  EXPECT_NE(Stats().find("\"watch_backing\":false"), std::string::npos) << Stats();
  const std::string log = mount().Log();
  if (!SuiteRefusesWatch()) {
    EXPECT_NE(log.find("not watching the backing directories (--watch-backing: cannot watch "
                       "'/proc/sys': the kernel cannot find its directories by handle"),
              std::string::npos)
        << log;
  }
  EXPECT_NE(log.find("run out: names 10 s, attributes 10 s, absent names 0 s"), std::string::npos)
      << log;
}

TEST_F(WatchTest, TwoWatchingMountsSeeEachOthersChanges) {
  if (SuiteRefusesWatch()) GTEST_SKIP() << kRefused;
  ASSERT_TRUE(StartMount(Args(true), Mnt()));
  ASSERT_TRUE(StartMount(Args(true), Mnt2()));
  Prepare(Mnt2());
  // Made through the first mount: the second caches hold the old state.
  ASSERT_TRUE(WriteFile(Mnt("d/f"), "rewritten through mount 1"));
  ASSERT_TRUE(WriteFile(Mnt("d/new"), "new"));
  ASSERT_SYS_OK(::unlink(Mnt("d/gone").c_str()));
  ASSERT_SYS_OK(::rename(Mnt("d/sub").c_str(), Mnt("d/moved").c_str()));
  ASSERT_SYS_OK(::mkdir(Mnt("d/made").c_str(), 0750));
  EXPECT_TRUE(Eventually([&] { return ReadFile(Mnt2("d/f")) == "rewritten through mount 1"; }));
  EXPECT_TRUE(Eventually([&] { return ReadFile(Mnt2("d/new")) == "new"; }));
  EXPECT_TRUE(Eventually([&] { return !Exists(Mnt2("d/gone")); }));
  EXPECT_TRUE(Eventually([&] { return ReadFile(Mnt2("d/moved/deep")) == "deep"; }));
  EXPECT_TRUE(Eventually([&] { return Mode(Mnt2("d/made")) == 0750u; }));
  // And back: the first mount learns of the second's changes.
  EXPECT_EQ(ReadFile(Mnt("d/made/x")), std::nullopt);
  ASSERT_TRUE(WriteFile(Mnt2("d/made/x"), "from 2"));
  EXPECT_TRUE(Eventually([&] { return ReadFile(Mnt("d/made/x")) == "from 2"; }));
  // The second mount learned of the first one's changes through its watch.
  EXPECT_GT(Counter(Stats(Mnt2()), "watch_invalidations"), 0u);
}

// A mark holds its directory's inode in the kernel's cache, so the daemon
// gives a directory's mark up once the kernel has forgotten every node showing
// it: the marks follow the kernel's cache of the mount. A directory looked up
// again is watched again.
TEST_F(WatchTest, MarksFollowTheKernelsCacheOfTheMount) {
  if (SuiteRefusesWatch()) GTEST_SKIP() << kRefused;
  constexpr int kDirs = 40;
  ASSERT_SYS_OK(::mkdir(InBacking(0, "m").c_str(), 0755));
  for (int i = 0; i < kDirs; ++i) {
    const std::string d = "m/d" + std::to_string(i);
    ASSERT_SYS_OK(::mkdir(InBacking(0, d).c_str(), 0755));
    ASSERT_TRUE(WriteFile(InBacking(0, d + "/f"), "x"));
  }
  std::vector<std::string> args = SingleArgs();
  args.insert(args.end(), {"--watch-backing", "--negative-timeout", "3600"});
  ASSERT_TRUE(StartMount(args));
  const pid_t pid = mount().pid();
  EXPECT_EQ(KernelMarks(pid), 1);  // the root
  for (int i = 0; i < kDirs; ++i) {
    EXPECT_EQ(ReadFile(Mnt("m/d" + std::to_string(i) + "/f")), "x");
  }
  EXPECT_EQ(KernelMarks(pid), 2 + kDirs);
  EXPECT_EQ(Counter(Stats(), "watch_marks"), 2u + kDirs);

  // A directory renamed behind the mount's back, shown at once by its old node
  // (held by an open descriptor) and by a new one under its new name, keeps
  // its mark when the old node goes.
  {
    Fd held(::open(Mnt("m/d1").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(held.valid());
    ASSERT_SYS_OK(::rename(InBacking(0, "m/d1").c_str(), InBacking(0, "m/e1").c_str()));
    std::this_thread::sleep_for(200ms);  // the watch has told the kernel of both names
    EXPECT_EQ(ReadFile(Mnt("m/e1/f")), "x");
    EXPECT_EQ(KernelMarks(pid), 2 + kDirs);
  }
  std::this_thread::sleep_for(200ms);  // the old node's FORGET, and the watch's turn
  EXPECT_EQ(KernelMarks(pid), 2 + kDirs);
  EXPECT_FALSE(Exists(Mnt("m/e1/new")));  // an absence the kernel now caches
  ASSERT_TRUE(WriteFile(InBacking(0, "m/e1/new"), "new"));
  EXPECT_TRUE(Eventually([&] { return ReadFile(Mnt("m/e1/new")) == "new"; }));

  // Directories renamed behind the mount's back: the watch has the kernel
  // drop their old names, the kernel forgets their nodes, and their marks go
  // (as they do when memory pressure shrinks the kernel's cache; not shown
  // here with drop_caches, which would empty the caches other tests running
  // beside this one rely on).
  for (int i = 2; i < kDirs; ++i) {
    ASSERT_SYS_OK(::rename(InBacking(0, "m/d" + std::to_string(i)).c_str(),
                           InBacking(0, "m/x" + std::to_string(i)).c_str()));
  }
  EXPECT_TRUE(Eventually([&] { return KernelMarks(pid) == 4; })) << KernelMarks(pid);  // /, m, d0, e1
  EXPECT_EQ(Counter(Stats(), "watch_marks"), 4u);

  EXPECT_FALSE(Exists(Mnt("m/x7/new")));
  EXPECT_EQ(KernelMarks(pid), 5);
  ASSERT_TRUE(WriteFile(InBacking(0, "m/x7/new"), "new"));
  EXPECT_TRUE(Eventually([&] { return ReadFile(Mnt("m/x7/new")) == "new"; }));
}

// Discard mode watches its lower layer: a change there shows unless the
// mount has its own copy, which keeps hiding it.
TEST_F(WatchTest, DiscardModeSeesLowerChangesItHasNotMadeItself) {
  if (SuiteRefusesWatch()) GTEST_SKIP() << kRefused;
  ASSERT_SYS_OK(::mkdir(InBacking(0, "d").c_str(), 0755));
  ASSERT_TRUE(WriteFile(InBacking(0, "d/shared"), "lower"));
  ASSERT_TRUE(WriteFile(InBacking(0, "d/mine"), "lower"));
  std::vector<std::string> args = SingleArgs();
  args.insert(args.end(),
              {"--write-mode", "discard", "--watch-backing", "--negative-timeout", "3600"});
  ASSERT_TRUE(StartMount(args));
  EXPECT_EQ(ReadFile(Mnt("d/shared")), "lower");
  ASSERT_TRUE(WriteFile(Mnt("d/mine"), "upper"));
  EXPECT_FALSE(Exists(Mnt("d/later")));
  ASSERT_TRUE(WriteFile(InBacking(0, "d/shared"), "lower, changed"));
  ASSERT_TRUE(WriteFile(InBacking(0, "d/mine"), "lower, changed"));
  ASSERT_TRUE(WriteFile(InBacking(0, "d/later"), "later"));
  EXPECT_TRUE(Eventually([&] { return ReadFile(Mnt("d/shared")) == "lower, changed"; }));
  EXPECT_TRUE(Eventually([&] { return ReadFile(Mnt("d/later")) == "later"; }));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(ReadFile(Mnt("d/mine")), "upper");
}

}  // namespace
}  // namespace cachefs_test

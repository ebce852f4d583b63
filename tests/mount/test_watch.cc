// --watch-backing: with hour-long kernel caches, a change made behind the mount's
// back (in a backing directory, or through another mount) shows through the
// mount within moments. Each test first has the mount cache what it will then
// change, and the control test shows that without the watch the same caches
// keep showing the old state.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>

#include "mount_fixture.h"

namespace cachefs_test {
namespace {

using namespace std::chrono_literals;

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
    if (watch) {
      a.emplace_back("--watch-backing");
    } else {
      for (const char* t : {"--entry-timeout", "--attr-timeout", "--negative-timeout"}) {
        a.emplace_back(t);
        a.emplace_back("3600");
      }
    }
    return a;
  }
};

TEST_F(WatchTest, ChangesMadeInTheBackingDirectoriesShowAtOnce) {
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
  if (WatchingBacking()) GTEST_SKIP() << "every mount of this suite watches";
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

TEST_F(WatchTest, TwoWatchingMountsSeeEachOthersChanges) {
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

// Discard mode watches its lower layer: a change there shows unless the
// mount has its own copy, which keeps hiding it.
TEST_F(WatchTest, DiscardModeSeesLowerChangesItHasNotMadeItself) {
  ASSERT_SYS_OK(::mkdir(InBacking(0, "d").c_str(), 0755));
  ASSERT_TRUE(WriteFile(InBacking(0, "d/shared"), "lower"));
  ASSERT_TRUE(WriteFile(InBacking(0, "d/mine"), "lower"));
  std::vector<std::string> args = SingleArgs();
  args.insert(args.end(), {"--write-mode", "discard", "--watch-backing"});
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

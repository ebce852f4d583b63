// Hostile backing trees and names. Symlinks planted in backing directories must
// reach clients as symlinks and never be followed by the daemon: nothing outside
// the backing directories and the store may be created or changed, whatever the
// client does through the mount. Every test snapshots root/outside (and the names
// around the backing directories) first and compares at the end.
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "mount_fixture.h"

namespace cachefs_test {
namespace {

class ConfinementTest : public MountTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(WriteFile(Outside("victim.txt"), "precious"));
    ASSERT_TRUE(WriteFile(Outside("victim.o"), "precious object"));
    temp_.MakeDir("outside/b");
    temp_.MakeDir("outside/sub");
    ASSERT_TRUE(WriteFile(Outside("sub/inner.o"), "inner"));
    // A second "outside": a sibling of the backing directories, reachable from a
    // backing directory with a relative "../escape" link (but not from the mount).
    temp_.MakeDir("backing/escape");
    ASSERT_TRUE(WriteFile(temp_.Path("backing/escape/victim.txt"), "precious too"));
  }
  void TearDown() override { ExpectNothingOutsideChanged(); }

  void TakeSnapshot() {
    outside_ = SnapshotTree(Outside());
    escape_ = SnapshotTree(temp_.Path("backing/escape"));
    top_ = ListDirSet(temp_.root());
    backing_top_ = ListDirSet(temp_.Path("backing"));
    taken_ = true;
  }
  void ExpectNothingOutsideChanged() {
    if (!taken_) return;
    EXPECT_EQ(SnapshotTree(Outside()), outside_) << "root/outside changed";
    EXPECT_EQ(SnapshotTree(temp_.Path("backing/escape")), escape_) << "root/backing/escape changed";
    EXPECT_EQ(ListDirSet(temp_.root()), top_) << "something was created in the temp area";
    EXPECT_EQ(ListDirSet(temp_.Path("backing")), backing_top_)
        << "something was created beside the backing directories";
  }
  ::testing::AssertionResult Start(std::vector<std::string> args) {
    auto r = StartMount(std::move(args));
    TakeSnapshot();  // after the daemon made its store
    return r;
  }
  std::vector<std::string> Routed(const char* policy) const {
    return {"--define-cache-directories", Backing(1) + "=\\.o$|" + Backing(0) + "=",
            "--resolution-policy", policy};
  }

  std::map<std::string, std::string> outside_, escape_;
  std::set<std::string> top_, backing_top_;
  bool taken_ = false;
};

// Whether open(O_CREAT) succeeds (the descriptor is closed again).
bool Creates(const std::string& path, int extra_flags = 0) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | extra_flags, 0644));
  return fd.valid();
}

// Every way a client can try to create something below `dir` (a name in the mount).
// None may succeed in writing outside; returns how many calls succeeded.
int TryToCreateBelow(const std::string& dir, const std::string& suffix) {
  int ok = 0;
  ok += Creates(dir + "/new" + suffix);
  ok += ::mkdir((dir + "/newdir" + suffix).c_str(), 0755) == 0;
  ok += ::symlink("x", (dir + "/newlink" + suffix).c_str()) == 0;
  ok += ::mknod((dir + "/fifo" + suffix).c_str(), S_IFIFO | 0644, 0) == 0;
  return ok;
}

TEST_F(ConfinementTest, PlantedAbsoluteSymlinkReachesTheClientAsASymlink) {
  ASSERT_SYS_OK(::symlink(Outside().c_str(), InBacking(0, "planted").c_str()));
  ASSERT_SYS_OK(::symlink(Outside("victim.txt").c_str(), InBacking(0, "planted-file").c_str()));
  ASSERT_TRUE(Start(SingleArgs()));
  struct stat st {};
  ASSERT_SYS_OK(::lstat(Mnt("planted").c_str(), &st));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  char buf[4096] = {};
  ASSERT_GT(::readlink(Mnt("planted").c_str(), buf, sizeof buf), 0);
  EXPECT_EQ(std::string(buf), Outside());
  EXPECT_TRUE(ListDirSet(Mnt()).count("planted"));
  // Operations on the name itself act on the link, never on its target.
  EXPECT_SYS_OK(::lchown(Mnt("planted").c_str(), 4242, 4242));
  const timespec ts[2] = {{1, 0}, {2, 0}};
  EXPECT_SYS_OK(::utimensat(AT_FDCWD, Mnt("planted").c_str(), ts, AT_SYMLINK_NOFOLLOW));
  EXPECT_NE(::lsetxattr(Mnt("planted").c_str(), "user.x", "1", 1, 0), 0);
  EXPECT_LT(::lgetxattr(Mnt("planted").c_str(), "user.x", buf, sizeof buf), 0);
  EXPECT_ERRNO(ELOOP, ::open(Mnt("planted-file").c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
  EXPECT_ERRNO(EEXIST, ::open(Mnt("planted-file").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  EXPECT_ERRNO(EEXIST, ::mkdir(Mnt("planted").c_str(), 0755));
  ASSERT_SYS_OK(::lstat(InBacking(0, "planted").c_str(), &st));
  EXPECT_EQ(st.st_uid, 4242u);  // the link changed, not outside/
  EXPECT_EQ(st.st_mtim.tv_sec, 2);
  // Renaming and removing the link leave the target alone.
  ASSERT_SYS_OK(::rename(Mnt("planted").c_str(), Mnt("moved").c_str()));
  ASSERT_SYS_OK(::unlink(Mnt("moved").c_str()));
  ASSERT_SYS_OK(::unlink(Mnt("planted-file").c_str()));
  EXPECT_TRUE(ListDir(Mnt()).empty());
}

TEST_F(ConfinementTest, CreatingBelowAPlantedRelativeSymlinkNeverWritesOutside) {
  // From root/backing/b0 the link reaches root/backing/escape; from root/mnt it
  // names root/escape, which does not exist. A daemon that followed it would write
  // into root/backing/escape.
  ASSERT_SYS_OK(::symlink("../escape", InBacking(0, "planted").c_str()));
  ASSERT_TRUE(Start(SingleArgs()));
  struct stat st {};
  ASSERT_SYS_OK(::lstat(Mnt("planted").c_str(), &st));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(TryToCreateBelow(Mnt("planted"), ""), 0);
  EXPECT_ERRNO(ENOENT, ::open(Mnt("planted/victim.txt").c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_ERRNO(ENOENT, ::truncate(Mnt("planted/victim.txt").c_str(), 0));
}

TEST_F(ConfinementTest, CreatingBelowAPlantedSymlinkRoutedThereNeverWritesOutside) {
  // The symlink sits in the branch the new names route to (b1), but the name is
  // not a union directory (b0 has nothing): the client sees a symlink.
  ASSERT_SYS_OK(::symlink("../escape", InBacking(1, "planted").c_str()));
  ASSERT_SYS_OK(::symlink("../escape", InBacking(0, "planted2").c_str()));
  ASSERT_TRUE(Start(Routed("weak")));
  EXPECT_EQ(TryToCreateBelow(Mnt("planted"), ".o"), 0);
  EXPECT_EQ(TryToCreateBelow(Mnt("planted2"), ".o"), 0);
}

class DirAndSymlinkTest : public ConfinementTest, public ::testing::WithParamInterface<const char*> {
 protected:
  // b0/shared is a real directory; b1/shared a symlink to outside, to which every
  // name ending in .o would route.
  void Plant(const std::string& target) {
    temp_.MakeDir("backing/b0/shared/deeper");
    ASSERT_TRUE(WriteFile(InBacking(0, "shared/existing.txt"), "mine"));
    ASSERT_SYS_OK(::symlink(target.c_str(), InBacking(1, "shared").c_str()));
    ASSERT_TRUE(Start(Routed(GetParam())));
  }
  void Attack() {
    struct stat st {};
    ASSERT_SYS_OK(::lstat(Mnt("shared").c_str(), &st));
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << "a union directory, from b0";
    // The symlinked branch contributes nothing to the listing or lookups.
    EXPECT_EQ(ListDirSet(Mnt("shared")), (std::set<std::string>{"existing.txt", "deeper"}));
    EXPECT_ERRNO(ENOENT, ::stat(Mnt("shared/victim.o").c_str(), &st));
    EXPECT_ERRNO(ENOENT, ::stat(Mnt("shared/victim.txt").c_str(), &st));
    EXPECT_ERRNO(ENOENT, ::stat(Mnt("shared/sub").c_str(), &st));
    // Names routed to b1 cannot be created through the symlink...
    EXPECT_FALSE(Creates(Mnt("shared/evil.o")));
    EXPECT_FALSE(Creates(Mnt("shared/victim.o"), O_TRUNC));
    EXPECT_NE(::symlink("x", Mnt("shared/evil-link.o").c_str()), 0);
    EXPECT_NE(::mknod(Mnt("shared/evil-fifo.o").c_str(), S_IFIFO | 0644, 0), 0);
    // ...nor one level further down, where the parent chain would pass through it.
    EXPECT_FALSE(Creates(Mnt("shared/deeper/evil.o")));
    ASSERT_SYS_OK(::mkdir(Mnt("shared/b").c_str(), 0755));
    EXPECT_FALSE(Creates(Mnt("shared/b/evil.o")));
    // ...nor moved or linked there.
    ASSERT_TRUE(WriteFile(Mnt("mover.o"), "mover"));
    EXPECT_NE(::rename(Mnt("mover.o").c_str(), Mnt("shared/moved.o").c_str()), 0);
    EXPECT_NE(::link(Mnt("mover.o").c_str(), Mnt("shared/linked.o").c_str()), 0);
    EXPECT_EQ(ReadFile(Mnt("mover.o")), "mover");
    // Names routed to b0 work as usual.
    ASSERT_TRUE(WriteFile(Mnt("shared/fine.txt"), "fine"));
    EXPECT_EQ(ReadFile(InBacking(0, "shared/fine.txt")), "fine");
    // Attribute changes and xattrs on the union directory stay in real directories.
    EXPECT_SYS_OK(::chmod(Mnt("shared").c_str(), 0700));
    EXPECT_SYS_OK(::chown(Mnt("shared").c_str(), 777, 777));
    const timespec ts[2] = {{3, 0}, {4, 0}};
    EXPECT_SYS_OK(::utimensat(AT_FDCWD, Mnt("shared").c_str(), ts, 0));
    EXPECT_SYS_OK(::setxattr(Mnt("shared").c_str(), "user.x", "1", 1, 0));
    EXPECT_SYS_OK(::removexattr(Mnt("shared").c_str(), "user.x"));
    // Renaming and removing the union directory never touch what the link points to.
    ASSERT_SYS_OK(::rename(Mnt("shared").c_str(), Mnt("shared2").c_str()));
    EXPECT_EQ(ReadFile(Mnt("shared2/existing.txt")), "mine");
    ASSERT_SYS_OK(::unlink(Mnt("shared2/existing.txt").c_str()));
    ASSERT_SYS_OK(::unlink(Mnt("shared2/fine.txt").c_str()));
    ::rmdir(Mnt("shared2/b").c_str());
    ASSERT_SYS_OK(::rmdir(Mnt("shared2/deeper").c_str()));
    ASSERT_SYS_OK(::rmdir(Mnt("shared2").c_str()));
    // The planted link itself is still in b1, untouched.
    struct stat lst {};
    ASSERT_SYS_OK(::lstat(InBacking(1, "shared").c_str(), &lst));
    EXPECT_TRUE(S_ISLNK(lst.st_mode));
  }
};

TEST_P(DirAndSymlinkTest, AbsoluteSymlinkInOtherBranch) {
  Plant(Outside());
  Attack();
}

TEST_P(DirAndSymlinkTest, RelativeSymlinkInOtherBranch) {
  Plant("../../outside");
  Attack();
}

INSTANTIATE_TEST_SUITE_P(Policies, DirAndSymlinkTest, ::testing::Values("strict", "weak"));

TEST_F(ConfinementTest, SymlinkedIntermediateDirectoryInTargetBranch) {
  // b0 has a/b/; in b1 "a" is a symlink to outside/, which has a "b" of its own.
  temp_.MakeDir("backing/b0/a/b");
  ASSERT_SYS_OK(::symlink(Outside().c_str(), InBacking(1, "a").c_str()));
  ASSERT_TRUE(Start(Routed("strict")));
  EXPECT_FALSE(Creates(Mnt("a/b/evil.o")));
  EXPECT_LT(::open(Mnt("a/sub/inner.o").c_str(), O_RDONLY | O_CLOEXEC), 0);
  EXPECT_EQ(ListDir(Mnt("a/b")), std::vector<std::string>{});
  ASSERT_TRUE(WriteFile(Mnt("a/b/ok.txt"), "ok"));
  EXPECT_EQ(ReadFile(InBacking(0, "a/b/ok.txt")), "ok");
}

TEST_F(ConfinementTest, PlantedFifoDoesNotHangTheDaemon) {
  ASSERT_SYS_OK(::mkfifo(InBacking(0, "fifo").c_str(), 0644));
  ASSERT_TRUE(Start(SingleArgs()));
  struct stat st {};
  ASSERT_SYS_OK(::lstat(Mnt("fifo").c_str(), &st));
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  char buf[64];
  EXPECT_LT(::getxattr(Mnt("fifo").c_str(), "user.x", buf, sizeof buf), 0);
  EXPECT_GE(::listxattr(Mnt("fifo").c_str(), buf, sizeof buf), 0);
  EXPECT_NE(::truncate(Mnt("fifo").c_str(), 0), 0);
  // The mount still answers.
  ASSERT_TRUE(WriteFile(Mnt("after"), "alive"));
  EXPECT_EQ(ReadFile(Mnt("after")), "alive");
}

// The prefetcher reads ahead below every listed directory from background
// threads; like the rest of the daemon it must never follow a planted symlink nor
// open a FIFO. inotify sees every open of the watched objects; the real
// subdirectory beside them is the control that shows the read-ahead ran.
TEST_F(ConfinementTest, ReadAheadNeverFollowsPlantedSymlinksNorOpensFifos) {
  temp_.MakeDir("backing/b0/d/real");
  ASSERT_TRUE(WriteFile(InBacking(0, "d/real/x"), "x"));
  ASSERT_TRUE(WriteFile(InBacking(0, "d/file"), "file"));
  ASSERT_TRUE(WriteFile(InBacking(0, "first"), "first"));
  ASSERT_SYS_OK(::symlink(Outside("sub").c_str(), InBacking(0, "d/link").c_str()));
  ASSERT_SYS_OK(::symlink(Outside("victim.txt").c_str(), InBacking(0, "d/flink").c_str()));
  ASSERT_SYS_OK(::symlink("../../escape", InBacking(0, "d/real/rel").c_str()));
  ASSERT_SYS_OK(::symlink(Outside("victim.o").c_str(), InBacking(0, "d/real/olink").c_str()));
  ASSERT_SYS_OK(::mkfifo(InBacking(0, "d/fifo").c_str(), 0644));
  ASSERT_SYS_OK(::mkfifo(InBacking(0, "d/real/fifo").c_str(), 0644));
  // Watches set after Start(), which reads the outside trees for its snapshot.
  ASSERT_TRUE(Start(SingleArgs()));

  Fd in(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  ASSERT_TRUE(in.valid());
  std::map<int, std::string> watched;
  for (const std::string& path :
       {Outside(), Outside("sub"), Outside("victim.txt"), Outside("victim.o"),
        temp_.Path("backing/escape"), temp_.Path("backing/escape/victim.txt"),
        InBacking(0, "d/fifo"), InBacking(0, "d/real/fifo")}) {
    const int wd = ::inotify_add_watch(in.get(), path.c_str(), IN_OPEN | IN_ACCESS | IN_DONT_FOLLOW);
    ASSERT_GE(wd, 0) << path;
    watched[wd] = path;
  }
  const int control = ::inotify_add_watch(in.get(), InBacking(0, "d/real").c_str(), IN_OPEN);
  ASSERT_GE(control, 0);

  EXPECT_EQ(ReadFile(Mnt("first")), "first");  // reading: data is read ahead too
  EXPECT_EQ(ListDirSet(Mnt("d")).size(), 5u);  // real file link flink fifo
  bool control_seen = false;
  std::vector<std::string> touched;
  for (int i = 0; i < 200 && !control_seen; ++i) {
    alignas(inotify_event) char buf[4096];
    const ssize_t n = ::read(in.get(), buf, sizeof buf);
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      if (ev->wd == control) {
        control_seen = true;
      } else if (watched.count(ev->wd) != 0) {
        touched.push_back(watched[ev->wd]);
      }
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
    if (!control_seen) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_TRUE(control_seen) << "the read-ahead never opened d/real: " << Stats();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // anything still queued
  alignas(inotify_event) char buf[4096];
  for (ssize_t n; (n = ::read(in.get(), buf, sizeof buf)) > 0;) {
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      if (watched.count(ev->wd) != 0) touched.push_back(watched[ev->wd]);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
  }
  EXPECT_TRUE(touched.empty()) << "opened: " << ::testing::PrintToString(touched);
  EXPECT_GE(Counter(Stats(), "prefetch_dirs"), 1u);
  // The FIFOs were never opened for reading: stopping does not wait on a worker.
  EXPECT_TRUE(mount().Stop());
}

// ---------------------------------------------------------------------------
// names

class NamesTest : public ConfinementTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    ConfinementTest::SetUp();
    ASSERT_TRUE(Start(GetParam() ? Routed("strict") : SingleArgs()));
  }
  std::string Sfx() const { return GetParam() ? ".o" : ""; }
  int Landing() const { return GetParam() ? 1 : 0; }
};

TEST_P(NamesTest, OddCharactersWork) {
  for (const std::string base : {"line1\nline2", "tab\there", "back\\slash", " spaced ", "-dash",
                                 "star*?[x]", "#hash", "utf8-\xc3\xa9\xe2\x82\xac", "quote\"'",
                                 "\x01\x7f", ".hidden", "..dots", "..."}) {
    const std::string name = base + Sfx();
    ASSERT_TRUE(WriteFile(Mnt(name), name)) << "create '" << name << "': " << ErrnoName(errno);
    EXPECT_EQ(ReadFile(Mnt(name)), name);
    EXPECT_TRUE(ListDirSet(Mnt()).count(name)) << name;
    EXPECT_EQ(ReadFile(InBacking(Landing(), name)), name);
    ASSERT_SYS_OK(::rename(Mnt(name).c_str(), Mnt(name + "2" + Sfx()).c_str()));
    ASSERT_SYS_OK(::unlink(Mnt(name + "2" + Sfx()).c_str()));
  }
  ASSERT_SYS_OK(::mkdir(Mnt("dir\nwith newline").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("dir\nwith newline/f" + Sfx()), "nested"));
  EXPECT_EQ(ReadFile(InBacking(Landing(), "dir\nwith newline/f" + Sfx())), "nested");
}

TEST_P(NamesTest, NameOf255BytesWorks) {
  const std::string name = std::string(255 - Sfx().size(), 'n') + Sfx();
  ASSERT_EQ(name.size(), 255u);
  ASSERT_TRUE(WriteFile(Mnt(name), "long")) << ErrnoName(errno);
  EXPECT_EQ(ReadFile(Mnt(name)), "long");
  EXPECT_TRUE(ListDirSet(Mnt()).count(name));
  EXPECT_EQ(ReadFile(InBacking(Landing(), name)), "long");
  const std::string other = std::string(255 - Sfx().size(), 'm') + Sfx();
  ASSERT_SYS_OK(::rename(Mnt(name).c_str(), Mnt(other).c_str()));
  ASSERT_SYS_OK(::link(Mnt(other).c_str(), Mnt(name).c_str()));
  const std::string dir(255, 'd');
  ASSERT_SYS_OK(::mkdir(Mnt(dir).c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt(dir + "/" + name), "deep"));
  EXPECT_EQ(ReadFile(Mnt(dir + "/" + name)), "deep");
  const std::string lnk = std::string(255 - Sfx().size(), 'l') + Sfx();
  ASSERT_SYS_OK(::symlink("t", Mnt(lnk).c_str()));
  ASSERT_SYS_OK(::setxattr(Mnt(other).c_str(), ("user." + std::string(250, 'x')).c_str(), "v", 1, 0));
}

TEST_P(NamesTest, NameOf256BytesIsTooLong) {
  const std::string name = std::string(256 - Sfx().size(), 'n') + Sfx();
  ASSERT_EQ(name.size(), 256u);
  struct stat st {};
  EXPECT_ERRNO(ENAMETOOLONG, ::open(Mnt(name).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  EXPECT_ERRNO(ENAMETOOLONG, ::stat(Mnt(name).c_str(), &st));
  EXPECT_ERRNO(ENAMETOOLONG, ::mkdir(Mnt(name).c_str(), 0755));
  EXPECT_ERRNO(ENAMETOOLONG, ::symlink("t", Mnt(name).c_str()));
  EXPECT_ERRNO(ENAMETOOLONG, ::mknod(Mnt(name).c_str(), S_IFIFO | 0644, 0));
  ASSERT_TRUE(WriteFile(Mnt("short" + Sfx()), "s"));
  EXPECT_ERRNO(ENAMETOOLONG, ::rename(Mnt("short" + Sfx()).c_str(), Mnt(name).c_str()));
  EXPECT_ERRNO(ENAMETOOLONG, ::link(Mnt("short" + Sfx()).c_str(), Mnt(name).c_str()));
  EXPECT_EQ(ListDirSet(Mnt()), (std::set<std::string>{"short" + Sfx()}));
  for (int b = 0; b < 3; ++b) EXPECT_FALSE(Exists(InBacking(b, name)));
}

INSTANTIATE_TEST_SUITE_P(Layouts, NamesTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return std::string(i.param ? "Routed" : "Single");
                         });

}  // namespace
}  // namespace cachefs_test

// Discard mode over backing trees that already hold a cache: every change a
// build can make is visible to it, none reaches the backing trees (checked
// against a snapshot of type, mode, owner, size, mtime, content and xattrs of
// every entry), and the mount says what it threw away.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "mount_fixture.h"

namespace cachefs_test {
namespace {

// Directories under `dir` (the default upper layers live in <store>/upper).
size_t CountEntries(const std::string& dir) {
  return ListDir(dir).size();
}

class DiscardTest : public MountTest {
 protected:
  void SetUp() override {
    temp_.MakeDir("backing/b0/dir/sub");
    temp_.MakeDir("backing/b1/dir");
    temp_.MakeDir("backing/b0/rmme/a/b");
    temp_.MakeDir("backing/b0/mvdir/inner");
    temp_.MakeDir("backing/b1/mvdir");
    temp_.MakeDir("backing/b0/target-dir");
    ASSERT_TRUE(WriteFile(InBacking(0, "a.txt"), "lower a"));
    ASSERT_TRUE(WriteFile(InBacking(0, "big.bin"), Pattern(1 << 20, 1)));
    ASSERT_TRUE(WriteFile(InBacking(0, "dir/inner.txt"), "inner"));
    ASSERT_TRUE(WriteFile(InBacking(0, "dir/sub/deep.txt"), "deep"));
    ASSERT_TRUE(WriteFile(InBacking(1, "dir/routed.one"), "routed"));
    ASSERT_TRUE(WriteFile(InBacking(0, "rmme/top"), "t"));
    ASSERT_TRUE(WriteFile(InBacking(0, "rmme/a/b/leaf"), "leaf"));
    ASSERT_TRUE(WriteFile(InBacking(0, "mvdir/f"), "mv f"));
    ASSERT_TRUE(WriteFile(InBacking(0, "mvdir/inner/g"), "mv g"));
    ASSERT_TRUE(WriteFile(InBacking(1, "mvdir/h.one"), "mv h"));
    ASSERT_TRUE(WriteFile(InBacking(0, "ro.txt"), "read only"));
    ASSERT_SYS_OK(::chmod(InBacking(0, "ro.txt").c_str(), 0444));
    ASSERT_TRUE(WriteFile(InBacking(0, "x.txt"), "xattrs"));
    ASSERT_SYS_OK(::setxattr(InBacking(0, "x.txt").c_str(), "user.k", "lower", 5, 0));
    ASSERT_SYS_OK(::symlink("a.txt", InBacking(0, "link").c_str()));
    ASSERT_TRUE(WriteFile(InBacking(0, "h1"), "hard"));
    ASSERT_SYS_OK(::link(InBacking(0, "h1").c_str(), InBacking(0, "h2").c_str()));
    // A sparse file: 1 MiB hole, then data.
    {
      Fd fd(::open(InBacking(0, "sparse").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
      ASSERT_TRUE(fd.valid());
      ASSERT_EQ(::pwrite(fd.get(), "end", 3, 1 << 20), 3);
    }
    const timespec old[2] = {{1'500'000'000, 0}, {1'500'000'000, 0}};
    ASSERT_SYS_OK(::utimensat(AT_FDCWD, InBacking(0, "a.txt").c_str(), old, 0));
    for (int i = 0; i < 3; ++i) before_.push_back(SnapshotTree(Backing(i)));
  }

  // Routed, discard, the store outside the backing trees (so that nothing at all
  // appears in them, not even the store directory).
  std::vector<std::string> Args(std::vector<std::string> more = {}) const {
    std::vector<std::string> a = RoutedArgs();
    a.insert(a.end(), {"--write-mode", "discard", "--store", temp_.Path("store")});
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
  void ExpectBackingUntouched() {
    for (int i = 0; i < 3; ++i) EXPECT_EQ(SnapshotTree(Backing(i)), before_[i]) << "b" << i;
  }
  std::string Uppers() const { return temp_.Path("store/upper"); }

  std::vector<std::map<std::string, std::string>> before_;
};

TEST_F(DiscardTest, ReadsTheLowerLayerAsIs) {
  ASSERT_TRUE(StartMount(Args()));
  EXPECT_EQ(ReadFile(Mnt("a.txt")), "lower a");
  EXPECT_EQ(ReadFile(Mnt("dir/routed.one")), "routed");
  EXPECT_EQ(ListDirSet(Mnt("dir")), (std::set<std::string>{"inner.txt", "sub", "routed.one"}));
  struct stat st {};
  ASSERT_SYS_OK(::stat(Mnt("a.txt").c_str(), &st));
  EXPECT_EQ(st.st_mtim.tv_sec, 1'500'000'000);
  ExpectBackingUntouched();
}

TEST_F(DiscardTest, ChangesToLowerFilesAreVisibleAndTheBackingStaysAsItWas) {
  ASSERT_TRUE(StartMount(Args()));
  // Overwrite, append, truncate.
  ASSERT_TRUE(WriteFile(Mnt("a.txt"), "upper a"));
  EXPECT_EQ(ReadFile(Mnt("a.txt")), "upper a");
  ASSERT_TRUE(WriteFile(Mnt("big.bin"), "+tail", O_WRONLY | O_APPEND));
  EXPECT_EQ(ReadFile(Mnt("big.bin")), Pattern(1 << 20, 1) + "+tail");
  ASSERT_SYS_OK(::truncate(Mnt("dir/inner.txt").c_str(), 2));
  EXPECT_EQ(ReadFile(Mnt("dir/inner.txt")), "in");
  // The routed file is copied up as well.
  ASSERT_TRUE(WriteFile(Mnt("dir/routed.one"), "changed", O_WRONLY | O_APPEND));
  EXPECT_EQ(ReadFile(Mnt("dir/routed.one")), "routedchanged");
  // chmod, chown, utimens on a file, a directory and a symlink.
  ASSERT_SYS_OK(::chmod(Mnt("ro.txt").c_str(), 0600));
  ASSERT_SYS_OK(::chown(Mnt("dir/sub/deep.txt").c_str(), 1234, 5678));
  const timespec t[2] = {{1'000'000'000, 5}, {1'000'000'000, 7}};
  ASSERT_SYS_OK(::utimensat(AT_FDCWD, Mnt("x.txt").c_str(), t, 0));
  ASSERT_SYS_OK(::chmod(Mnt("dir").c_str(), 0700));
  ASSERT_SYS_OK(::lchown(Mnt("link").c_str(), 42, 43));
  struct stat st {};
  ASSERT_SYS_OK(::stat(Mnt("ro.txt").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(ReadFile(Mnt("ro.txt")), "read only");
  ASSERT_SYS_OK(::stat(Mnt("dir/sub/deep.txt").c_str(), &st));
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  ASSERT_SYS_OK(::stat(Mnt("x.txt").c_str(), &st));
  EXPECT_EQ(st.st_mtim.tv_sec, 1'000'000'000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 7);
  ASSERT_SYS_OK(::stat(Mnt("dir").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(ListDirSet(Mnt("dir")), (std::set<std::string>{"inner.txt", "sub", "routed.one"}));
  ASSERT_SYS_OK(::lstat(Mnt("link").c_str(), &st));
  EXPECT_EQ(st.st_uid, 42u);
  char target[16] = {};
  EXPECT_EQ(::readlink(Mnt("link").c_str(), target, sizeof target), 5);
  // xattrs: the lower value is copied up, then changed and removed.
  char v[16] = {};
  ASSERT_EQ(::getxattr(Mnt("x.txt").c_str(), "user.k", v, sizeof v), 5);
  ASSERT_SYS_OK(::setxattr(Mnt("x.txt").c_str(), "user.k", "upper", 5, 0));
  ASSERT_SYS_OK(::setxattr(Mnt("x.txt").c_str(), "user.new", "n", 1, 0));
  ASSERT_EQ(::getxattr(Mnt("x.txt").c_str(), "user.k", v, sizeof v), 5);
  EXPECT_EQ(std::string(v, 5), "upper");
  ASSERT_SYS_OK(::removexattr(Mnt("x.txt").c_str(), "user.new"));
  ASSERT_SYS_OK(::setxattr(Mnt("mvdir").c_str(), "user.d", "dir", 3, 0));
  EXPECT_EQ(::getxattr(Mnt("mvdir").c_str(), "user.d", v, sizeof v), 3);
  // The reserved names stay reserved.
  EXPECT_ERRNO(EPERM, ::setxattr(Mnt("a.txt").c_str(), "trusted.cachefs.opaque", "y", 1, 0));
  // Sparse: the copy keeps the hole.
  ASSERT_TRUE(WriteFile(Mnt("sparse"), "S", O_WRONLY));
  ASSERT_SYS_OK(::stat(Mnt("sparse").c_str(), &st));
  EXPECT_EQ(st.st_size, (1 << 20) + 3);
  EXPECT_LT(st.st_blocks * 512, 1 << 19);
  const auto sparse = ReadFile(Mnt("sparse"));
  ASSERT_TRUE(sparse.has_value());
  EXPECT_EQ(sparse->substr(0, 2), std::string("S") + '\0');
  EXPECT_EQ(sparse->substr(1 << 20), "end");
  // mmap a lower file shared and write through it.
  {
    Fd fd(::open(Mnt("h1").c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    void* p = ::mmap(nullptr, 4, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(p, MAP_FAILED);
    std::memcpy(p, "HARD", 4);
    ASSERT_SYS_OK(::msync(p, 4, MS_SYNC));
    ::munmap(p, 4);
  }
  EXPECT_EQ(ReadFile(Mnt("h1")), "HARD");
  ASSERT_TRUE(mount().Stop());
  ExpectBackingUntouched();
  // The report: files changed, in the log.
  const std::string log = mount().Log();
  EXPECT_NE(log.find("discard mode: "), std::string::npos) << log;
  EXPECT_NE(log.find("changed"), std::string::npos) << log;
  EXPECT_NE(log.find("\"discard\":{\"upper\""), std::string::npos) << log;  // and as JSON
  // Nothing is left of the upper layer.
  EXPECT_EQ(CountEntries(Uppers()), 0u);
}

TEST_F(DiscardTest, DeletesRenamesAndLinksAreVisibleAndTheBackingStaysAsItWas) {
  ASSERT_TRUE(StartMount(Args()));
  // Delete lower files (whiteouts), including one of two hard links.
  ASSERT_SYS_OK(::unlink(Mnt("a.txt").c_str()));
  EXPECT_ERRNO(ENOENT, ::access(Mnt("a.txt").c_str(), F_OK));
  ASSERT_SYS_OK(::unlink(Mnt("h2").c_str()));
  EXPECT_EQ(ReadFile(Mnt("h1")), "hard");
  ASSERT_SYS_OK(::unlink(Mnt("dir/routed.one").c_str()));
  EXPECT_EQ(ListDirSet(Mnt("dir")), (std::set<std::string>{"inner.txt", "sub"}));
  // The link to the deleted file dangles, as on any filesystem.
  EXPECT_ERRNO(ENOENT, ::access(Mnt("link").c_str(), F_OK));
  // Re-create a deleted name: the new file, not the old one.
  ASSERT_TRUE(WriteFile(Mnt("a.txt"), "again", O_WRONLY | O_CREAT | O_EXCL));
  EXPECT_EQ(ReadFile(Mnt("a.txt")), "again");
  // rm -rf of a lower tree, then the same directory made again: empty.
  const CommandResult rm = RunCommand({"rm", "-rf", Mnt("rmme")});
  ASSERT_TRUE(rm.Exited0()) << rm.Describe();
  EXPECT_ERRNO(ENOENT, ::access(Mnt("rmme").c_str(), F_OK));
  ASSERT_SYS_OK(::mkdir(Mnt("rmme").c_str(), 0755));
  EXPECT_TRUE(ListDir(Mnt("rmme")).empty());
  ASSERT_TRUE(WriteFile(Mnt("rmme/new"), "n"));
  EXPECT_EQ(ListDirSet(Mnt("rmme")), (std::set<std::string>{"new"}));
  // rmdir of a lower directory that is not empty fails; once emptied it works.
  EXPECT_ERRNO(ENOTEMPTY, ::rmdir(Mnt("dir/sub").c_str()));
  ASSERT_SYS_OK(::unlink(Mnt("dir/sub/deep.txt").c_str()));
  ASSERT_SYS_OK(::rmdir(Mnt("dir/sub").c_str()));
  EXPECT_EQ(ListDirSet(Mnt("dir")), (std::set<std::string>{"inner.txt"}));
  // Rename a lower file over another, and to a new name.
  ASSERT_SYS_OK(::rename(Mnt("ro.txt").c_str(), Mnt("x.txt").c_str()));
  EXPECT_EQ(ReadFile(Mnt("x.txt")), "read only");
  EXPECT_ERRNO(ENOENT, ::access(Mnt("ro.txt").c_str(), F_OK));
  ASSERT_SYS_OK(::rename(Mnt("big.bin").c_str(), Mnt("dir/moved.bin").c_str()));
  EXPECT_EQ(ReadFile(Mnt("dir/moved.bin")), Pattern(1 << 20, 1));
  // Rename a lower directory spanning two branches (mv dir): all of it moves.
  const CommandResult mv = RunCommand({"mv", Mnt("mvdir"), Mnt("moved")});
  ASSERT_TRUE(mv.Exited0()) << mv.Describe();
  EXPECT_ERRNO(ENOENT, ::access(Mnt("mvdir").c_str(), F_OK));
  EXPECT_EQ(ListDirSet(Mnt("moved")), (std::set<std::string>{"f", "inner", "h.one"}));
  EXPECT_EQ(ReadFile(Mnt("moved/f")), "mv f");
  EXPECT_EQ(ReadFile(Mnt("moved/inner/g")), "mv g");
  EXPECT_EQ(ReadFile(Mnt("moved/h.one")), "mv h");
  ASSERT_TRUE(WriteFile(Mnt("moved/inner/g2"), "new in moved"));
  // ...and a directory renamed over an empty lower directory replaces it.
  ASSERT_SYS_OK(::rename(Mnt("moved").c_str(), Mnt("target-dir").c_str()));
  EXPECT_EQ(ListDirSet(Mnt("target-dir")), (std::set<std::string>{"f", "inner", "h.one"}));
  EXPECT_EQ(ReadFile(Mnt("target-dir/inner/g2")), "new in moved");
  // The old name can be made again, empty.
  ASSERT_SYS_OK(::mkdir(Mnt("mvdir").c_str(), 0755));
  EXPECT_TRUE(ListDir(Mnt("mvdir")).empty());
  // Hard link and symlink to lower files.
  ASSERT_SYS_OK(::link(Mnt("dir/inner.txt").c_str(), Mnt("inner-link").c_str()));
  ASSERT_TRUE(WriteFile(Mnt("inner-link"), "via link"));
  EXPECT_EQ(ReadFile(Mnt("dir/inner.txt")), "via link");
  ASSERT_SYS_OK(::symlink("dir/inner.txt", Mnt("sym").c_str()));
  EXPECT_EQ(ReadFile(Mnt("sym")), "via link");
  // RENAME_EXCHANGE of two lower files.
  ASSERT_SYS_OK(::renameat2(AT_FDCWD, Mnt("h1").c_str(), AT_FDCWD, Mnt("sparse").c_str(),
                            RENAME_EXCHANGE));
  EXPECT_EQ(ReadFile(Mnt("sparse")), "hard");
  // RENAME_NOREPLACE onto a lower file.
  EXPECT_ERRNO(EEXIST, ::renameat2(AT_FDCWD, Mnt("sym").c_str(), AT_FDCWD,
                                    Mnt("dir/inner.txt").c_str(), RENAME_NOREPLACE));
  // Live counters through cachectl while mounted.
  const CommandResult stats = RunCommand({CACHECTL_BINARY, "stats", "--mount", Mnt(), "--json"});
  ASSERT_TRUE(stats.Exited0()) << stats.Describe();
  EXPECT_NE(stats.output.find("\"discard\""), std::string::npos) << stats.output;
  EXPECT_NE(stats.output.find("\"files_deleted\""), std::string::npos) << stats.output;
  const CommandResult human = RunCommand({CACHECTL_BINARY, "stats", "--mount", Mnt()});
  ASSERT_TRUE(human.Exited0()) << human.Describe();
  EXPECT_NE(human.output.find("discard"), std::string::npos) << human.output;
  ASSERT_TRUE(mount().Stop());
  ExpectBackingUntouched();
  EXPECT_NE(mount().Log().find("deleted"), std::string::npos);
}

TEST_F(DiscardTest, AnOpenLowerFileStaysUsableAfterItsNameIsDeleted) {
  ASSERT_TRUE(StartMount(Args()));
  Fd fd(::open(Mnt("dir/inner.txt").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_SYS_OK(::unlink(Mnt("dir/inner.txt").c_str()));
  EXPECT_ERRNO(ENOENT, ::access(Mnt("dir/inner.txt").c_str(), F_OK));
  // Written after its name went: copied up without a name, still this file.
  ASSERT_EQ(::pwrite(fd.get(), "IN", 2, 0), 2);
  ASSERT_SYS_OK(::fsync(fd.get()));
  char buf[16] = {};
  ASSERT_EQ(::pread(fd.get(), buf, sizeof buf, 0), 5);
  EXPECT_EQ(std::string(buf, 5), "INner");
  EXPECT_ERRNO(ENOENT, ::access(Mnt("dir/inner.txt").c_str(), F_OK));
  // O_TRUNC of a lower file copies nothing up but its attributes.
  ASSERT_TRUE(WriteFile(Mnt("big.bin"), "small"));
  EXPECT_EQ(ReadFile(Mnt("big.bin")), "small");
  fd.reset();
  ASSERT_TRUE(mount().Stop());
  ExpectBackingUntouched();
}

TEST_F(DiscardTest, NothingSurvivesTheNextMount) {
  ASSERT_TRUE(StartMount(Args()));
  ASSERT_TRUE(WriteFile(Mnt("a.txt"), "upper a"));
  ASSERT_TRUE(WriteFile(Mnt("created"), "c"));
  ASSERT_SYS_OK(::unlink(Mnt("dir/inner.txt").c_str()));
  ASSERT_TRUE(mount().Restart());
  EXPECT_EQ(ReadFile(Mnt("a.txt")), "lower a");
  EXPECT_ERRNO(ENOENT, ::access(Mnt("created").c_str(), F_OK));
  EXPECT_EQ(ReadFile(Mnt("dir/inner.txt")), "inner");
  ASSERT_TRUE(mount().Stop());
  ExpectBackingUntouched();
}

TEST_F(DiscardTest, KeepUpperLeavesTheChangesAndSaysWhere) {
  ASSERT_TRUE(StartMount(Args({"--keep-upper"})));
  ASSERT_TRUE(WriteFile(Mnt("a.txt"), "upper a"));
  ASSERT_SYS_OK(::unlink(Mnt("h1").c_str()));
  ASSERT_TRUE(mount().Stop());
  ExpectBackingUntouched();
  const std::string log = mount().Log();
  const size_t at = log.find("the changes are kept in ");
  ASSERT_NE(at, std::string::npos) << log;
  std::string where = log.substr(at + std::strlen("the changes are kept in "));
  where = where.substr(0, where.find('\n'));
  EXPECT_EQ(ReadFile(where + "/a.txt"), "upper a");
  struct stat st {};
  ASSERT_SYS_OK(::lstat((where + "/h1").c_str(), &st));
  EXPECT_TRUE(S_ISCHR(st.st_mode));  // the whiteout
  // A later mount does not take a kept layer for a dead mount's.
  ASSERT_TRUE(StartMount(Args()));
  ASSERT_TRUE(mount(1).Stop());
  EXPECT_EQ(ReadFile(where + "/a.txt"), "upper a");
}

TEST_F(DiscardTest, UpperDirGivenByTheUser) {
  const std::string up = temp_.MakeDir("my-upper");
  ASSERT_TRUE(StartMount(Args({"--upper", up})));
  ASSERT_TRUE(WriteFile(Mnt("dir/inner.txt"), "changed"));
  EXPECT_EQ(ReadFile(up + "/dir/inner.txt"), "changed");
  // Another mount cannot share it.
  const CommandResult second = RunCommand(
      {kCachefsBinary, "--cache-directory", Backing(0), "--write-mode", "discard", "--upper", up,
       "--store", temp_.Path("store"), Mnt2()});
  EXPECT_FALSE(second.Exited0());
  ASSERT_TRUE(mount().Stop());
  EXPECT_TRUE(Exists(up));
  EXPECT_TRUE(ListDir(up).empty());  // emptied, not removed: it is the user's
  ExpectBackingUntouched();
}

TEST_F(DiscardTest, BadUpperArgumentsAreRefused) {
  auto refused = [&](std::vector<std::string> extra, const std::string& words) {
    std::vector<std::string> argv = {kCachefsBinary, "--cache-directory", Backing(0)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(Mnt());
    const CommandResult r = RunCommand(argv);
    EXPECT_EQ(r.status >> 8, 2) << r.Describe();
    EXPECT_NE(r.output.find(words), std::string::npos) << r.output;
    EXPECT_FALSE(IsAnythingMounted(Mnt()));
  };
  refused({"--upper", temp_.Path("u")}, "--upper: only for --write-mode discard");
  refused({"--keep-upper"}, "--keep-upper: only for --write-mode discard");
  refused({"--write-mode", "discard", "--upper", InBacking(0, "dir")}, "overlap");
  refused({"--write-mode", "discard", "--upper", Mnt("x")}, "overlap");
  ASSERT_TRUE(WriteFile(temp_.MakeDir("full") + "/f", "x"));
  refused({"--write-mode", "discard", "--upper", temp_.Path("full")}, "is not empty");
  refused({"--write-mode", "discard", "--upper", InBacking(0, "a.txt")}, "--upper");
  ExpectBackingUntouched();
}

TEST_F(DiscardTest, ConcurrentWritersSeeTheirOwnChanges) {
  ASSERT_TRUE(StartMount(Args()));
  constexpr int kThreads = 4, kRounds = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const std::string mine = Mnt("w" + std::to_string(t) + "-" + std::to_string(i));
        const std::string data = Pattern(1000 + i * 37, t * 100 + i);
        if (!WriteFile(mine, data) || ReadFile(mine) != data) ++failures;
        // Everyone copies the same lower files up at once.
        const std::string shared = Mnt(i % 2 ? "big.bin" : "dir/sub/deep.txt");
        if (!WriteFile(shared, "t" + std::to_string(t), O_WRONLY)) ++failures;
        if (i % 5 == 0 && ::rename(mine.c_str(), (mine + ".r").c_str()) != 0) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(ListDir(Mnt()).size(), ListDirSet(Mnt()).size());  // no duplicates
  const auto deep = ReadFile(Mnt("dir/sub/deep.txt"));
  ASSERT_TRUE(deep.has_value());
  EXPECT_EQ(deep->size(), 4u);  // "deep" overwritten in place by "tN"
  ASSERT_TRUE(mount().Stop());
  ExpectBackingUntouched();
}

TEST_F(DiscardTest, TwoMountsDoNotSeeEachOthersWrites) {
  ASSERT_TRUE(StartMount(Args()));
  ASSERT_TRUE(StartMount(Args(), Mnt2()));
  ASSERT_TRUE(WriteFile(Mnt("a.txt"), "one"));
  ASSERT_TRUE(WriteFile(Mnt2("a.txt"), "two"));
  ASSERT_TRUE(WriteFile(Mnt("only-one"), "1"));
  ASSERT_SYS_OK(::unlink(Mnt2("h1").c_str()));
  EXPECT_EQ(ReadFile(Mnt("a.txt")), "one");
  EXPECT_EQ(ReadFile(Mnt2("a.txt")), "two");
  EXPECT_ERRNO(ENOENT, ::access(Mnt2("only-one").c_str(), F_OK));
  EXPECT_EQ(ReadFile(Mnt("h1")), "hard");
  EXPECT_EQ(CountEntries(Uppers()), 2u);
  ASSERT_TRUE(mount(0).Stop());
  ASSERT_TRUE(mount(1).Stop());
  ExpectBackingUntouched();
  EXPECT_EQ(CountEntries(Uppers()), 0u);
}

TEST_F(DiscardTest, KillingTheDaemonLeavesTheBackingUntouched) {
  ASSERT_TRUE(StartMount(Args()));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      WriteFile(Mnt("big.bin"), Pattern(4096, i), O_WRONLY);
      WriteFile(Mnt("k" + std::to_string(i % 50)), Pattern(20000, i));
      ::unlink(Mnt("k" + std::to_string((i + 25) % 50)).c_str());
      ::rename(Mnt("dir").c_str(), Mnt("dir2").c_str());
      ::rename(Mnt("dir2").c_str(), Mnt("dir").c_str());
    }
  });
  ::usleep(300'000);
  mount().Kill();
  stop = true;
  writer.join();
  RunCommand({"fusermount3", "-u", Mnt()});
  EXPECT_FALSE(IsAnythingMounted(Mnt()));
  ExpectBackingUntouched();
  // The next discard mount removes the dead one's layer and starts clean.
  EXPECT_EQ(CountEntries(Uppers()), 1u);
  ASSERT_TRUE(StartMount(Args()));
  EXPECT_EQ(CountEntries(Uppers()), 1u);
  EXPECT_EQ(ReadFile(Mnt("big.bin")), Pattern(1 << 20, 1));
  EXPECT_EQ(ListDirSet(Mnt("dir")), (std::set<std::string>{"inner.txt", "sub", "routed.one"}));
  ASSERT_TRUE(mount(1).Stop());
  ExpectBackingUntouched();
}

}  // namespace
}  // namespace cachefs_test

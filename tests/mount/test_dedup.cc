// Dedup through a real mount: what builds write becomes shared objects in the
// store, and sharing is invisible — a change through one path never shows
// through another, stat shows each path as its own file, and it all survives a
// restart. The daemon runs with --dedup-delay 0 so files are taken as soon as
// they are quiet; tests wait for the backing inodes to become one.
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <utility>

#include "reliability_util.h"
#include "store/object_store.h"

namespace cachefs_test {
namespace {

using namespace std::chrono_literals;

class DedupTest : public MountTest {
 protected:
  std::vector<std::string> Args(std::vector<std::string> base) const {
    base.insert(base.end(), {"--dedup-delay", "0"});
    return base;
  }
  // Waits until the backing paths share one inode; false after 10 s.
  static bool WaitShared(const std::vector<std::string>& paths) {
    for (int i = 0; i < 1000; ++i) {
      bool same = true;
      const struct stat first = Lstat(paths[0]);
      for (const auto& p : paths) same = same && Lstat(p).st_ino == first.st_ino;
      if (same && first.st_nlink > paths.size()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  // Waits until the daemon has nothing queued: its counters stop moving.
  void Settle() const {
    std::string last;
    for (int i = 0; i < 100; ++i) {
      std::this_thread::sleep_for(50ms);
      const std::string now = Stats();
      if (now == last) return;
      last = now;
    }
  }
};

// Sharing swaps a file's name for the object's: the store's business, not a
// change to the directory, whose times (restored by tar at the end of an
// untar, before dedup runs) stay as they were.
TEST_F(DedupTest, SharingLeavesTheDirectoryTimesAlone) {
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  const std::string data = Bytes(100'000, 9);
  ASSERT_SYS_OK(::mkdir(Mnt("d").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("a"), data));
  ASSERT_TRUE(WriteFile(Mnt("d/b"), data));
  const struct timespec times[2] = {{1'600'000'000, 5}, {1'500'000'000, 7}};
  ASSERT_SYS_OK(::utimensat(AT_FDCWD, Mnt("d").c_str(), times, 0));
  ASSERT_TRUE(WaitShared({InBacking(0, "a"), InBacking(0, "d/b")}));
  const struct stat d = Lstat(InBacking(0, "d"));
  EXPECT_EQ(d.st_mtim.tv_sec, 1'500'000'000);
  EXPECT_EQ(d.st_mtim.tv_nsec, 7);
  EXPECT_EQ(Lstat(Mnt("d")).st_mtim.tv_sec, 1'500'000'000);
}

// The put-back must not undo a change made through the mount while a swap in
// that directory is under way: neither times a user sets there (tar restoring a
// directory's mtime after extracting into it) nor the mtime a new name gives.
TEST_F(DedupTest, ChangesToTheDirectoryDuringASwapAreKept) {
  // Each swap waits between its look at the directory's times and the exchange.
  ::setenv("CACHEFS_TEST_REPLACE_PAUSE_MS", "300", 1);
  const auto started = StartMount(Args(SingleArgs()));
  ::unsetenv("CACHEFS_TEST_REPLACE_PAUSE_MS");
  ASSERT_TRUE(started);
  const std::string data = Bytes(100'000, 11);
  ASSERT_SYS_OK(::mkdir(Mnt("d").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("a"), data));
  // a becomes the object itself (no swap); each later copy is swapped for it.
  for (int i = 0; i < 1000 && Lstat(InBacking(0, "a")).st_nlink < 2; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(Lstat(InBacking(0, "a")).st_nlink, 2u);
  // Inside a swap: the object's temporary name is in the store's tmp/.
  const std::string tmp = InBacking(0, ".cachefs/tmp");
  const auto inside_a_swap = [&] {
    for (int i = 0; i < 1000; ++i) {
      if (!ListDir(tmp).empty()) return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  };

  ASSERT_TRUE(WriteFile(Mnt("d/b"), data));
  ASSERT_TRUE(inside_a_swap());
  const struct timespec times[2] = {{1'600'000'000, 5}, {1'500'000'000, 7}};
  ASSERT_SYS_OK(::utimensat(AT_FDCWD, Mnt("d").c_str(), times, 0));
  ASSERT_GE(WaitForCounter("dedup_linked", 1), 1u) << Stats();
  struct stat d = Lstat(InBacking(0, "d"));
  EXPECT_EQ(d.st_mtim.tv_sec, 1'500'000'000);
  EXPECT_EQ(d.st_mtim.tv_nsec, 7);

  ASSERT_TRUE(WriteFile(Mnt("d/c"), data));
  ASSERT_TRUE(inside_a_swap());
  // Clear of the clock's grain (a few ms) after c's creation set d's mtime.
  std::this_thread::sleep_for(50ms);
  ASSERT_SYS_OK(::mkdir(Mnt("d/sub").c_str(), 0755));
  ASSERT_GE(WaitForCounter("dedup_linked", 2), 2u) << Stats();
  d = Lstat(InBacking(0, "d"));
  const struct stat sub = Lstat(InBacking(0, "d/sub"));
  // d's mtime moved when sub was made, after the swap's look at it: not older
  // than sub's own (the same, at the clock's grain).
  EXPECT_GE(std::make_pair(d.st_mtim.tv_sec, d.st_mtim.tv_nsec),
            std::make_pair(sub.st_mtim.tv_sec, sub.st_mtim.tv_nsec));
  EXPECT_EQ(Lstat(InBacking(0, "d/c")).st_ino, Lstat(InBacking(0, "a")).st_ino);
}

TEST_F(DedupTest, IdenticalFilesShareOneObjectAndStillLookApart) {
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  const std::string data = Bytes(200'000, 1);
  ASSERT_SYS_OK(::mkdir(Mnt("sub").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("a"), data));
  ASSERT_TRUE(WriteFile(Mnt("sub/b"), data));
  ASSERT_TRUE(WriteFile(Mnt("c"), Bytes(200'000, 2)));
  ASSERT_TRUE(WaitShared({InBacking(0, "a"), InBacking(0, "sub/b")}));
  EXPECT_EQ(Lstat(InBacking(0, "a")).st_nlink, 3u);  // a, sub/b, the object
  EXPECT_NE(Lstat(InBacking(0, "c")).st_ino, Lstat(InBacking(0, "a")).st_ino);
  EXPECT_EQ(ReadFile(Mnt("sub/b")), data);
  // Each path is its own file to the user.
  const struct stat a = Lstat(Mnt("a")), b = Lstat(Mnt("sub/b"));
  EXPECT_NE(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 1u);
  EXPECT_EQ(b.st_nlink, 1u);
  EXPECT_EQ(a.st_size, 200'000);
  const std::string stats = Stats();
  EXPECT_GE(Counter(stats, "dedup_linked"), 1u) << stats;
  EXPECT_GE(Counter(stats, "dedup_bytes_saved"), 200'000u) << stats;
  EXPECT_EQ(Counter(stats, "files_written"), 3u) << stats;
  EXPECT_GE(Counter(stats, "bytes_written"), 600'000u) << stats;
  // The object's mark is the daemon's: not listed, not readable, not settable.
  char list[1024];
  const ssize_t n = ::listxattr(Mnt("a").c_str(), list, sizeof list);
  EXPECT_EQ(std::string(list, static_cast<size_t>(std::max<ssize_t>(n, 0))).find("cachefs"),
            std::string::npos);
  EXPECT_ERRNO(ENODATA, ::getxattr(Mnt("a").c_str(), "trusted.cachefs.object", list, sizeof list));
  EXPECT_ERRNO(EPERM, ::setxattr(Mnt("a").c_str(), "trusted.cachefs.object", "x", 1, 0));
}

// The kernel (write-back cache) writes back the mtime it computed for the last
// write when it drops an inode; for a deduplicated path that is not a change
// and must not cost a private copy (it did: rm -rf of an untarred tree copied
// every shared file before deleting it).
TEST_F(DedupTest, DroppingDeduplicatedFilesCopiesNothing) {
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  const std::string data = Bytes(20'000, 30);
  std::vector<std::string> paths;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(WriteFile(Mnt("f" + std::to_string(i)), data));
    paths.push_back(InBacking(0, "f" + std::to_string(i)));
    std::this_thread::sleep_for(5ms);  // a different mtime each
  }
  ASSERT_TRUE(WaitShared(paths));
  for (int i = 0; i < 10; ++i) ASSERT_SYS_OK(::unlink(Mnt("f" + std::to_string(i)).c_str()));
  std::this_thread::sleep_for(100ms);  // the kernel's write-backs of times, if any
  EXPECT_EQ(Counter(Stats(), "cow_breaks"), 0u) << Stats();
  // A utimens from a program is a change: it gets its copy.
  ASSERT_TRUE(WriteFile(Mnt("g"), data));
  ASSERT_TRUE(WriteFile(Mnt("h"), data));
  ASSERT_TRUE(WaitShared({InBacking(0, "g"), InBacking(0, "h")}));
  const timespec t[2] = {{5000, 0}, {6000, 0}};
  ASSERT_SYS_OK(::utimensat(AT_FDCWD, Mnt("g").c_str(), t, 0));
  EXPECT_GE(Counter(Stats(), "cow_breaks"), 1u) << Stats();
  EXPECT_EQ(Lstat(Mnt("g")).st_mtim.tv_sec, 6000);
  EXPECT_NE(Lstat(Mnt("h")).st_mtim.tv_sec, 6000);
  EXPECT_NE(Lstat(InBacking(0, "h")).st_mtim.tv_sec, 6000);
  EXPECT_EQ(ReadFile(Mnt("h")), data);
}

// Dedup waits for the whole mount to be write-quiet (an untar's metadata work
// and dedup's links share the journal and the CPUs), then catches up.
TEST_F(DedupTest, WaitsWhileTheMountIsBeingWritten) {
  ASSERT_TRUE(StartMount({"--cache-directory", Backing(0), "--dedup-delay", "0.3"}));
  const std::string data = Bytes(10'000, 31);
  ASSERT_TRUE(WriteFile(Mnt("a"), data));
  ASSERT_TRUE(WriteFile(Mnt("b"), data));
  // Another file written every 50 ms for 1.5 s: a and b are quiet, the mount is not.
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(WriteFile(Mnt("busy"), std::to_string(i), O_WRONLY | O_CREAT | O_APPEND));
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(Lstat(InBacking(0, "a")).st_ino, Lstat(InBacking(0, "b")).st_ino)
      << "deduplicated while the mount was being written";
  EXPECT_TRUE(WaitShared({InBacking(0, "a"), InBacking(0, "b")}));
}

// rm -rf right after an untar, while every file written is still queued for
// dedup: each unlinked file's descriptor is pinned (the name is gone, it could
// not be reopened), and was kept until the dedup worker reached the file, long
// after the kernel forgot it. On the bench corpus the daemon ran out of
// descriptors and rm failed with "Directory not empty". Once the kernel has
// forgotten such a file nobody can read it: its descriptors must close then.
TEST_F(DedupTest, FilesDeletedWhileQueuedForDedupDoNotKeepDescriptors) {
  ASSERT_TRUE(StartMount({"--cache-directory", Backing(0), "--dedup-delay", "3600",
                          "--max-open-files", "64"}));
  ASSERT_SYS_OK(::mkdir(Mnt("d").c_str(), 0755));
  constexpr int kFiles = 600;
  for (int i = 0; i < kFiles; ++i) {
    ASSERT_TRUE(WriteFile(Mnt("d/f" + std::to_string(i)), "content " + std::to_string(i)));
  }
  for (int i = 0; i < kFiles; ++i) ASSERT_SYS_OK(::unlink(Mnt("d/f" + std::to_string(i)).c_str()));
  EXPECT_SYS_OK(::rmdir(Mnt("d").c_str()));
  // The kernel's FORGETs are sent after the unlinks return.
  size_t open = 0;
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(100ms);
    open = ListDir("/proc/" + std::to_string(mount().pid()) + "/fd").size();
    if (open < 64 + 64 / 8 + 16) break;
  }
  EXPECT_LT(open, 64u + 64 / 8 + 16) << "descriptors the daemon holds for deleted files";
}

TEST_F(DedupTest, AcrossRoutesOnOneFilesystem) {
  ASSERT_TRUE(StartMount(Args(RoutedArgs())));
  const std::string data = Bytes(50'000, 3);
  ASSERT_TRUE(WriteFile(Mnt("x.one"), data));
  ASSERT_TRUE(WriteFile(Mnt("y.two"), data));
  ASSERT_TRUE(WriteFile(Mnt("z"), data));
  EXPECT_TRUE(WaitShared({InBacking(1, "x.one"), InBacking(2, "y.two"), InBacking(0, "z")}));
  EXPECT_EQ(ReadFile(Mnt("y.two")), data);
}

TEST_F(DedupTest, ModeAndOwnerKeepFilesApart) {
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  const std::string data = Bytes(10'000, 4);
  ASSERT_TRUE(WriteFile(Mnt("plain"), data, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  ASSERT_TRUE(WriteFile(Mnt("plain2"), data, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  ASSERT_TRUE(WriteFile(Mnt("exec"), data, O_WRONLY | O_CREAT | O_TRUNC, 0755));
  ASSERT_TRUE(WriteFile(Mnt("owned"), data));
  ASSERT_SYS_OK(::chown(Mnt("owned").c_str(), 1234, 1234));
  ASSERT_TRUE(WaitShared({InBacking(0, "plain"), InBacking(0, "plain2")}));
  Settle();
  const ino_t plain = Lstat(InBacking(0, "plain")).st_ino;
  EXPECT_NE(Lstat(InBacking(0, "exec")).st_ino, plain);
  EXPECT_NE(Lstat(InBacking(0, "owned")).st_ino, plain);
  EXPECT_EQ(Lstat(Mnt("exec")).st_mode & 07777, 0755u);
  EXPECT_EQ(Lstat(Mnt("owned")).st_uid, 1234u);
}

TEST_F(DedupTest, OtherFilesystemWorksWithDedupOff) {
  // b1 on a tmpfs of its own: not the store's filesystem.
  ScopedTmpfs tmpfs(Backing(1), "16m");
  ASSERT_TRUE(tmpfs.ok());
  ASSERT_TRUE(StartMount(Args(RoutedArgs())));
  const std::string data = Bytes(30'000, 5);
  ASSERT_TRUE(WriteFile(Mnt("x.one"), data));
  ASSERT_TRUE(WriteFile(Mnt("y.one"), data));
  ASSERT_TRUE(WriteFile(Mnt("z"), data));
  ASSERT_TRUE(WriteFile(Mnt("w"), data));
  ASSERT_TRUE(WaitShared({InBacking(0, "z"), InBacking(0, "w")}));
  Settle();
  EXPECT_NE(Lstat(InBacking(1, "x.one")).st_ino, Lstat(InBacking(1, "y.one")).st_ino);
  EXPECT_EQ(Lstat(InBacking(1, "x.one")).st_nlink, 1u);
  EXPECT_EQ(ReadFile(Mnt("y.one")), data);
  const std::string stats = Stats();
  EXPECT_NE(stats.find("\"dedup\":false,\"dedup_off_reason\":\"other filesystem than the store\""),
            std::string::npos)
      << stats;
  ASSERT_TRUE(mount().Stop());
}

TEST_F(DedupTest, AHashCollisionNeverMergesDifferentBytes) {
  // Every same-size content hashes alike in the daemon started now.
  ::setenv("CACHEFS_TEST_HASH_COLLIDE", "1", 1);
  const auto started = StartMount(Args(SingleArgs()));
  ::unsetenv("CACHEFS_TEST_HASH_COLLIDE");
  ASSERT_TRUE(started);
  const std::string one = Bytes(4096, 6), two = Bytes(4096, 7);
  ASSERT_TRUE(WriteFile(Mnt("one"), one));
  ASSERT_TRUE(WriteFile(Mnt("one-again"), one));
  ASSERT_TRUE(WaitShared({InBacking(0, "one"), InBacking(0, "one-again")}));
  ASSERT_TRUE(WriteFile(Mnt("two"), two));
  for (int i = 0; i < 500 && Counter(Stats(), "dedup_collisions") == 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  // At least once: the kernel may write back two's mtime after the first look
  // (write-back cache), which queues it again and counts the collision again.
  EXPECT_GE(Counter(Stats(), "dedup_collisions"), 1u) << Stats();
  EXPECT_LE(Counter(Stats(), "dedup_collisions"), 3u) << Stats();
  EXPECT_NE(Lstat(InBacking(0, "two")).st_ino, Lstat(InBacking(0, "one")).st_ino);
  EXPECT_EQ(ReadFile(Mnt("two")), two);
  EXPECT_EQ(ReadFile(Mnt("one")), one);
}

// The heart of invisibility: every kind of change through one path, with the
// other path closed, open, and mapped.
TEST_F(DedupTest, ChangesThroughOnePathNeverReachAnother) {
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  const std::string data = Bytes(100'000, 8);
  ASSERT_TRUE(WriteFile(Mnt("a"), data));
  ASSERT_TRUE(WriteFile(Mnt("b"), data));
  ASSERT_TRUE(WriteFile(Mnt("c"), data));
  ASSERT_TRUE(WaitShared({InBacking(0, "a"), InBacking(0, "b"), InBacking(0, "c")}));
  const struct stat before = Lstat(Mnt("b"));

  // b held open and mapped while a changes.
  Fd bfd(::open(Mnt("b").c_str(), O_RDONLY));
  ASSERT_TRUE(bfd.valid());
  void* map = ::mmap(nullptr, data.size(), PROT_READ, MAP_SHARED, bfd.get(), 0);
  ASSERT_NE(map, MAP_FAILED);
  {
    Fd afd(::open(Mnt("a").c_str(), O_WRONLY));
    ASSERT_TRUE(afd.valid());
    ASSERT_EQ(::pwrite(afd.get(), "CHANGED", 7, 10), 7);
  }
  EXPECT_EQ(ReadFile(Mnt("a"))->substr(10, 7), "CHANGED");
  char buf[7];
  ASSERT_EQ(::pread(bfd.get(), buf, 7, 10), 7);
  EXPECT_EQ(std::string(buf, 7), data.substr(10, 7));
  EXPECT_EQ(std::string(static_cast<const char*>(map) + 10, 7), data.substr(10, 7));
  EXPECT_EQ(ReadFile(Mnt("b")), data);
  EXPECT_EQ(ReadFile(InBacking(0, "b")), data);

  // Truncate, chmod, chown, utimens through c: b keeps its size and metadata.
  ASSERT_SYS_OK(::truncate(Mnt("c").c_str(), 5));
  ASSERT_SYS_OK(::chmod(Mnt("c").c_str(), 0600));
  ASSERT_SYS_OK(::chown(Mnt("c").c_str(), 4321, 4321));
  const timespec times[2] = {{1000, 0}, {2000, 0}};
  ASSERT_SYS_OK(::utimensat(AT_FDCWD, Mnt("c").c_str(), times, 0));
  EXPECT_EQ(ReadFile(Mnt("c")), data.substr(0, 5));
  const struct stat after = Lstat(Mnt("b"));
  EXPECT_EQ(after.st_size, before.st_size);
  EXPECT_EQ(after.st_mode, before.st_mode);
  EXPECT_EQ(after.st_uid, before.st_uid);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  EXPECT_EQ(ReadFile(Mnt("b")), data);
  EXPECT_EQ(std::string(static_cast<const char*>(map), data.size()), data);
  ::munmap(map, data.size());

  // A writable mapping of b, written: a and c keep what they had.
  {
    Fd wfd(::open(Mnt("b").c_str(), O_RDWR));
    void* w = ::mmap(nullptr, data.size(), PROT_READ | PROT_WRITE, MAP_SHARED, wfd.get(), 0);
    ASSERT_NE(w, MAP_FAILED);
    std::memcpy(static_cast<char*>(w) + 50, "MAPPED", 6);
    ::msync(w, data.size(), MS_SYNC);
    ::munmap(w, data.size());
  }
  EXPECT_EQ(ReadFile(Mnt("b"))->substr(50, 6), "MAPPED");
  EXPECT_EQ(ReadFile(Mnt("a"))->substr(50, 6), data.substr(50, 6));
  EXPECT_EQ(ReadFile(Mnt("c")), data.substr(0, 5));
  // Nothing changed the object other paths of it may still share.
  EXPECT_GE(Counter(Stats(), "cow_breaks"), 3u);
}

TEST_F(DedupTest, AFileKeptOpenForWritingStaysItsOwn) {
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  const std::string data = Bytes(20'000, 9);
  ASSERT_TRUE(WriteFile(Mnt("other"), data));
  Fd fd(::open(Mnt("log").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644));
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(::write(fd.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ::fsync(fd.get());
  // Quiet: dedup shares it with "other" while it is still open.
  ASSERT_TRUE(WaitShared({InBacking(0, "other"), InBacking(0, "log")}));
  ASSERT_EQ(::write(fd.get(), "tail", 4), 4);
  ::fsync(fd.get());
  EXPECT_EQ(ReadFile(Mnt("log")), data + "tail");
  EXPECT_EQ(ReadFile(Mnt("other")), data);
  EXPECT_EQ(ReadFile(InBacking(0, "other")), data);
}

TEST_F(DedupTest, HardLinksAUserMakesShareWritesOnlyAmongThemselves) {
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  const std::string data = Bytes(8'000, 10);
  ASSERT_TRUE(WriteFile(Mnt("a"), data));
  ASSERT_TRUE(WriteFile(Mnt("b"), data));
  ASSERT_TRUE(WaitShared({InBacking(0, "a"), InBacking(0, "b")}));
  ASSERT_SYS_OK(::link(Mnt("a").c_str(), Mnt("a2").c_str()));
  EXPECT_EQ(Lstat(Mnt("a")).st_nlink, 2u);
  EXPECT_EQ(Lstat(Mnt("a2")).st_ino, Lstat(Mnt("a")).st_ino);
  ASSERT_TRUE(WriteFile(Mnt("a2"), "through a2", O_WRONLY | O_TRUNC));
  EXPECT_EQ(ReadFile(Mnt("a")), "through a2");
  EXPECT_EQ(ReadFile(Mnt("b")), data);
  EXPECT_EQ(Lstat(Mnt("b")).st_nlink, 1u);
}

TEST_F(DedupTest, SharingSurvivesARestart) {
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  const std::string data = Bytes(64'000, 11);
  ASSERT_TRUE(WriteFile(Mnt("a"), data));
  ASSERT_TRUE(WriteFile(Mnt("b"), data));
  ASSERT_TRUE(WaitShared({InBacking(0, "a"), InBacking(0, "b")}));
  ASSERT_TRUE(mount().Stop());
  EXPECT_EQ(Lstat(InBacking(0, "a")).st_ino, Lstat(InBacking(0, "b")).st_ino);
  ASSERT_TRUE(mount().Start());
  const struct stat a = Lstat(Mnt("a")), b = Lstat(Mnt("b"));
  EXPECT_NE(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 1u);
  EXPECT_EQ(Lstat(Mnt("a")).st_ino, a.st_ino);  // stable
  EXPECT_EQ(ReadFile(Mnt("b")), data);  // not in the page cache yet: served by the daemon
  const std::string stats = Stats();
  EXPECT_EQ(Counter(stats, "files_read"), 1u) << stats;
  EXPECT_EQ(Counter(stats, "bytes_read"), data.size()) << stats;
  ASSERT_TRUE(WriteFile(Mnt("a"), "new", O_WRONLY | O_APPEND));
  EXPECT_EQ(ReadFile(Mnt("a")), data + "new");
  EXPECT_EQ(ReadFile(Mnt("b")), data);
}

TEST_F(DedupTest, FilesAreStillDeduplicatedWhenTheDaemonStops) {
  // A long delay: nothing is shared while mounted; stopping finishes the queue.
  ASSERT_TRUE(StartMount({"--cache-directory", Backing(0), "--dedup-delay", "3600"}));
  const std::string data = Bytes(5'000, 12);
  ASSERT_TRUE(WriteFile(Mnt("a"), data));
  ASSERT_TRUE(WriteFile(Mnt("b"), data));
  std::this_thread::sleep_for(200ms);
  EXPECT_NE(Lstat(InBacking(0, "a")).st_ino, Lstat(InBacking(0, "b")).st_ino);
  ASSERT_TRUE(mount().Stop());
  EXPECT_EQ(Lstat(InBacking(0, "a")).st_ino, Lstat(InBacking(0, "b")).st_ino);
}

TEST_F(DedupTest, DedupOffAndReadonlyLeaveFilesAlone) {
  ASSERT_TRUE(StartMount({"--cache-directory", Backing(0), "--dedup", "off", "--dedup-delay", "0"}));
  const std::string data = Bytes(5'000, 13);
  ASSERT_TRUE(WriteFile(Mnt("a"), data));
  ASSERT_TRUE(WriteFile(Mnt("b"), data));
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(mount().Stop());
  EXPECT_NE(Lstat(InBacking(0, "a")).st_ino, Lstat(InBacking(0, "b")).st_ino);
  EXPECT_EQ(Lstat(InBacking(0, "a")).st_nlink, 1u);
}

TEST_F(DedupTest, TwoMountsOverOneStoreWritingTheSameContent) {
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  ASSERT_TRUE(StartMount(Args(SingleArgs()), Mnt2()));
  const std::string data = Bytes(30'000, 14);
  ASSERT_SYS_OK(::mkdir(Mnt("one").c_str(), 0755));
  ASSERT_SYS_OK(::mkdir(Mnt("two").c_str(), 0755));
  auto writer = [&](const std::string& root) {
    for (int i = 0; i < 40; ++i) WriteFile(root + "/f" + std::to_string(i), data);
  };
  std::thread t1(writer, Mnt("one")), t2(writer, Mnt2("two"));
  t1.join();
  t2.join();
  std::vector<std::string> paths;
  for (const char* d : {"one", "two"}) {
    for (int i = 0; i < 40; ++i) paths.push_back(InBacking(0, std::string(d) + "/f" + std::to_string(i)));
  }
  EXPECT_TRUE(WaitShared(paths)) << Stats() << "\n" << mount(1).Log();
  for (const auto& p : paths) EXPECT_EQ(ReadFile(p), data) << p;
}

// Two daemons over one store, a file rewritten in place through both. Mount A
// (dedup delay 0) holds the file open, and has read it; mount B wrote it and
// deduplicates it when it stops (its delay is an hour, and stopping processes
// what is queued), so that what B does happens between two steps of A's, every
// time. Nothing is cached by the kernels (timeouts 0, no write-back cache).
class TwoMountDedupTest : public DedupTest {
 protected:
  std::vector<std::string> TwoMountArgs(const char* delay, const char* dedup = "on") const {
    return {"--cache-directory", Backing(0), "--dedup", dedup, "--dedup-delay", delay,
            "--entry-timeout", "0", "--attr-timeout", "0", "--no-writeback-cache"};
  }
  // Opens `rel` through A, read-write, and reads it whole (A now holds the file,
  // a plain one to it); checks it reads `data`.
  Fd OpenAndReadThroughA(const std::string& rel, const std::string& data) {
    Fd fd(::open(Mnt(rel).c_str(), O_RDWR));
    EXPECT_TRUE(fd.valid()) << ErrnoName(errno);
    std::string got(data.size(), '\0');
    EXPECT_EQ(::pread(fd.get(), got.data(), got.size(), 0), static_cast<ssize_t>(data.size()));
    EXPECT_TRUE(got == data);
    return fd;
  }
  // Writes "CHANGED" at offset 100 of "p" through A's descriptor `fd` (file
  // content `data` before) and checks A and the backing directory show it;
  // returns what the path holds now.
  std::string ChangeThroughA(const Fd& fd, const std::string& data) {
    EXPECT_EQ(::pwrite(fd.get(), "CHANGED", 7, 100), 7) << ErrnoName(errno);
    EXPECT_SYS_OK(::fsync(fd.get()));
    std::string want = data;
    want.replace(100, 7, "CHANGED");
    EXPECT_TRUE(ReadFile(Mnt("p")) == want) << "through A";
    EXPECT_TRUE(ReadFile(InBacking(0, "p")) == want) << "in the backing directory";
    return want;
  }
  // The object store holds what every object's name says.
  void ExpectVerifyClean() {
    const CommandResult v = Cachectl(Backing(0), {"verify"});
    EXPECT_TRUE(v.Exited0()) << v.Describe();
  }
};

// B's dedup makes the file A holds a store object; A writes into it: the write
// goes to a private copy under the path (A finds the object mark when it starts
// writing), never into the object.
TEST_F(TwoMountDedupTest, AWriteAfterTheOtherMountAdoptedTheFileLeavesTheObjectIntact) {
  ASSERT_TRUE(StartMount(TwoMountArgs("0"), Mnt()));
  ASSERT_TRUE(StartMount(TwoMountArgs("3600"), Mnt2()));
  const std::string data = Bytes(50'000, 40);
  ASSERT_TRUE(WriteFile(Mnt2("p"), data));
  Fd fd = OpenAndReadThroughA("p", data);
  ASSERT_TRUE(fd.valid());
  const ino_t before = Lstat(InBacking(0, "p")).st_ino;
  ASSERT_TRUE(mount(1).Stop());
  ASSERT_EQ(Lstat(InBacking(0, "p")).st_nlink, 2u) << "B did not adopt the file\n"
                                                   << mount(1).Log();
  ASSERT_EQ(Lstat(InBacking(0, "p")).st_ino, before);

  const std::string want = ChangeThroughA(fd, data);
  EXPECT_NE(Lstat(InBacking(0, "p")).st_ino, before) << "written into the object";
  EXPECT_EQ(Counter(Stats(), "cow_breaks"), 1u) << Stats();
  ASSERT_TRUE(mount(1).Start());
  EXPECT_TRUE(ReadFile(Mnt2("p")) == want) << "through B";
  fd.reset();
  ASSERT_TRUE(mount(0).Stop());
  ASSERT_TRUE(mount(1).Stop());
  ExpectVerifyClean();
}

// B's dedup swaps the path A holds for an identical object (another path's):
// A's file has no name any more, and A's write would be lost in it. A finds the
// mark B left on it, writes to the path's new file instead (a private copy of
// the object), and the other path keeps its bytes.
TEST_F(TwoMountDedupTest, AWriteAfterTheOtherMountReplacedThePathIsNotLost) {
  ASSERT_TRUE(StartMount(TwoMountArgs("0"), Mnt()));
  ASSERT_TRUE(StartMount(TwoMountArgs("3600"), Mnt2()));
  const std::string data = Bytes(50'000, 41);
  ASSERT_TRUE(WriteFile(Mnt2("q"), data));  // queued first: adopted, then p linked to it
  ASSERT_TRUE(WriteFile(Mnt2("p"), data));
  Fd fd = OpenAndReadThroughA("p", data);
  ASSERT_TRUE(fd.valid());
  const ino_t before = Lstat(InBacking(0, "p")).st_ino;
  ASSERT_TRUE(mount(1).Stop());
  ASSERT_NE(Lstat(InBacking(0, "p")).st_ino, before) << "B did not replace p\n" << mount(1).Log();
  ASSERT_EQ(Lstat(InBacking(0, "p")).st_ino, Lstat(InBacking(0, "q")).st_ino);

  const std::string want = ChangeThroughA(fd, data);
  EXPECT_TRUE(ReadFile(Mnt("q")) == data);
  EXPECT_TRUE(ReadFile(InBacking(0, "q")) == data);
  EXPECT_NE(Lstat(InBacking(0, "p")).st_ino, Lstat(InBacking(0, "q")).st_ino);
  ASSERT_TRUE(mount(1).Start());
  EXPECT_TRUE(ReadFile(Mnt2("p")) == want) << "through B";
  EXPECT_TRUE(ReadFile(Mnt2("q")) == data);
  fd.reset();
  ASSERT_TRUE(mount(0).Stop());
  ASSERT_TRUE(mount(1).Stop());
  ExpectVerifyClean();
}

// A dedup that died between marking a file replaced and the exchange leaves
// the mark on a file that still has its name. The mark is the daemon's own (not
// shown, not settable), and harmless: a write through the mount goes to the
// file and drops it, and dedup takes the file as usual.
TEST_F(DedupTest, AStaleReplacedMarkIsHiddenAndHarmless) {
  const std::string data = Bytes(20'000, 43);
  ASSERT_TRUE(WriteFile(InBacking(0, "r"), data));
  ASSERT_SYS_OK(::setxattr(InBacking(0, "r").c_str(), "trusted.cachefs.replaced", "x", 1, 0));
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  char v[256];
  EXPECT_ERRNO(ENODATA, ::getxattr(Mnt("r").c_str(), "trusted.cachefs.replaced", v, sizeof v));
  EXPECT_ERRNO(EPERM, ::setxattr(Mnt("r").c_str(), "trusted.cachefs.replaced", "y", 1, 0));
  char list[1024];
  const ssize_t n = ::listxattr(Mnt("r").c_str(), list, sizeof list);
  EXPECT_EQ(std::string(list, static_cast<size_t>(std::max<ssize_t>(n, 0))).find("cachefs"),
            std::string::npos);
  ASSERT_TRUE(WriteFile(Mnt("r"), "new", O_WRONLY | O_APPEND));
  EXPECT_TRUE(ReadFile(InBacking(0, "r")) == data + "new");
  EXPECT_ERRNO(ENODATA,
               ::getxattr(InBacking(0, "r").c_str(), "trusted.cachefs.replaced", v, sizeof v));
  for (int i = 0; i < 1000 && Lstat(InBacking(0, "r")).st_nlink < 2; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(Lstat(InBacking(0, "r")).st_nlink, 2u) << Stats();
  EXPECT_TRUE(ReadFile(Mnt("r")) == data + "new");
}

// A file A is writing (a burst of writes that has not gone quiet: A's dedup is
// off, so A holds its write lock until it lets go of the file) is never taken
// by B's dedup; once A has let go, B's next look takes it.
TEST_F(TwoMountDedupTest, AFileTheOtherMountIsWritingIsLeftUntilItIsQuiet) {
  ASSERT_TRUE(StartMount(TwoMountArgs("0", "off"), Mnt()));
  ASSERT_TRUE(StartMount(TwoMountArgs("0.2"), Mnt2()));
  const std::string data = Bytes(50'000, 42);
  {
    Fd fd(::open(Mnt("p").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::write(fd.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
  }
  // B writes it too, and goes quiet: its dedup finds A mid-burst, and tries again
  // later (a second apart).
  ASSERT_TRUE(WriteFile(Mnt2("p"), data));
  uint64_t busy = 0;
  for (int i = 0;
       i < 1000 && (busy == 0 || busy == UINT64_MAX) && Lstat(InBacking(0, "p")).st_nlink == 1;
       ++i) {
    std::this_thread::sleep_for(10ms);
    busy = Counter(Stats(Mnt2()), "dedup_busy");
  }
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(Lstat(InBacking(0, "p")).st_nlink, 1u) << "taken while the other mount wrote it";
  EXPECT_EQ(Counter(Stats(Mnt2()), "dedup_adopted"), 0u) << Stats(Mnt2());
  ASSERT_NE(busy, UINT64_MAX) << Stats(Mnt2());
  ASSERT_GE(busy, 1u) << Stats(Mnt2());
  // A lets go of the file (its descriptors close with it): B's next try takes it.
  ASSERT_TRUE(mount(0).Stop());
  for (int i = 0; i < 1500 && Lstat(InBacking(0, "p")).st_nlink < 2; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(Lstat(InBacking(0, "p")).st_nlink, 2u) << Stats(Mnt2());
  EXPECT_EQ(Counter(Stats(Mnt2()), "dedup_adopted"), 1u) << Stats(Mnt2());
  EXPECT_TRUE(ReadFile(Mnt2("p")) == data);
  ASSERT_TRUE(mount(1).Stop());
  ExpectVerifyClean();
}

// A full disk: the private copy a shared file needs before its first change
// cannot be made, so that change fails with ENOSPC — and nothing shared, stored
// or written before is damaged. With room again, it works.
TEST_F(DedupTest, AFullDiskFailsTheChangeAndDamagesNothing) {
  ScopedTmpfs tmpfs(Backing(0), "2m");
  ASSERT_TRUE(tmpfs.ok());
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  const std::string data = Bytes(600'000, 15);
  ASSERT_TRUE(WriteFile(Mnt("a"), data));
  ASSERT_TRUE(WriteFile(Mnt("b"), data));
  ASSERT_TRUE(WaitShared({InBacking(0, "a"), InBacking(0, "b")}));
  // Fill what is left (in the backing directory: through the mount, the kernel's
  // write-back cache would take writes past the end of the disk).
  {
    Fd fill(::open(InBacking(0, "filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
    const std::string chunk(65536, 'f');
    while (::write(fill.get(), chunk.data(), chunk.size()) > 0) {
    }
    ::fsync(fill.get());
  }
  {
    Fd fd(::open(Mnt("a").c_str(), O_WRONLY));
    ASSERT_TRUE(fd.valid());
    errno = 0;
    const ssize_t n = ::pwrite(fd.get(), "X", 1, 0);
    const int err = errno;
    const int synced = ::fsync(fd.get());
    EXPECT_TRUE(n < 0 || synced != 0) << "a change needing a copy succeeded on a full disk";
    EXPECT_EQ(ErrnoName(n < 0 ? err : errno), "ENOSPC");
  }
  EXPECT_EQ(ReadFile(InBacking(0, "a")), data);
  EXPECT_EQ(ReadFile(InBacking(0, "b")), data);
  EXPECT_EQ(ReadFile(Mnt("b")), data);
  // Room again: the change goes through, to a only.
  ASSERT_SYS_OK(::unlink(InBacking(0, "filler").c_str()));
  ASSERT_TRUE(WriteFile(Mnt("a"), "X", O_WRONLY));
  EXPECT_EQ(ReadFile(Mnt("a")), "X" + data.substr(1));
  EXPECT_EQ(ReadFile(Mnt("b")), data);
  ASSERT_TRUE(mount().Stop());
}

// cachectl while a build uses the mount: gc and evict remove only what they
// should, nothing a build reads or writes is damaged, stats --mount reads the
// live counters, and verify is clean afterwards.
TEST_F(DedupTest, CachectlWhileABuildReadsAndWrites) {
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  std::vector<std::string> contents;
  for (unsigned i = 0; i < 8; ++i) contents.push_back(Bytes(3000 + i * 1000, 200 + i));
  // Old files, last used long ago: evict --older-than takes them.
  ASSERT_SYS_OK(::mkdir(InBacking(0, "old").c_str(), 0755));
  for (int i = 0; i < 20; ++i) {
    const std::string p = InBacking(0, "old/f" + std::to_string(i));
    ASSERT_TRUE(WriteFile(p, contents[i % contents.size()]));
    const timespec t[2] = {{1'000'000, 0}, {1'000'000, 0}};
    ASSERT_SYS_OK(::utimensat(AT_FDCWD, p.c_str(), t, AT_SYMLINK_NOFOLLOW));
  }
  ASSERT_SYS_OK(::mkdir(Mnt("new").c_str(), 0755));
  std::atomic<bool> stop{false};
  std::atomic<int> written{0}, bad{0};
  std::thread build([&] {
    for (int i = 0; !stop.load() || i < 100; ++i) {
      const std::string p = Mnt("new/f" + std::to_string(i));
      const std::string& want = contents[static_cast<size_t>(i) % contents.size()];
      if (!WriteFile(p, want)) ++bad;
      written = i + 1;
      const std::string back = Mnt("new/f" + std::to_string(i / 2));
      if (ReadFile(back) != contents[static_cast<size_t>(i / 2) % contents.size()]) ++bad;
    }
  });
  const std::string cache = "--cache-dir=" + Backing(0);
  for (int round = 0; round < 3; ++round) {
    CommandResult r = RunCommand({CACHECTL_BINARY, cache, "gc"});
    EXPECT_TRUE(r.Exited0()) << r.Describe();
    r = RunCommand({CACHECTL_BINARY, cache, "evict", "--older-than", "1d"});
    EXPECT_TRUE(r.Exited0()) << r.Describe();
    r = RunCommand({CACHECTL_BINARY, "stats", "--mount", Mnt(), "--json"});
    EXPECT_TRUE(r.Exited0()) << r.Describe();
    EXPECT_NE(r.output.find("\"files_written\""), std::string::npos) << r.output;
  }
  stop = true;
  build.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_TRUE(ListDir(InBacking(0, "old")).empty());
  Settle();
  for (int i = 0; i < written.load(); ++i) {
    EXPECT_TRUE(ReadFile(Mnt("new/f" + std::to_string(i))) == contents[static_cast<size_t>(i) % contents.size()])
        << "new/f" << i;
  }
  ASSERT_TRUE(mount().Stop());
  const CommandResult v = RunCommand({CACHECTL_BINARY, cache, "verify"});
  EXPECT_TRUE(v.Exited0()) << v.Describe();
}

// Every object in the store holds what its name says; returns the problems.
std::vector<std::string> VerifyStore(const std::string& dir) {
  std::vector<std::string> problems;
  auto store = cachefs::store::Store::open(dir, false);
  store->for_each_object([&](int dirfd, const char* name,
                             const std::optional<cachefs::store::ObjectKey>& key) {
    if (!key) {
      problems.push_back(std::string("stray name ") + name);
      return;
    }
    Fd fd(::openat(dirfd, name, O_RDONLY));
    struct stat st {};
    cachefs::store::Hash128 h;
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0 ||
        cachefs::store::hash_fd(fd.get(), static_cast<uint64_t>(st.st_size), h) != 0) {
      problems.push_back(std::string("unreadable ") + name);
    } else if (!(h == key->hash) || (st.st_mode & 07777) != key->mode || st.st_uid != key->uid ||
               st.st_gid != key->gid) {
      problems.push_back(std::string("damaged ") + name);
    }
  });
  return problems;
}

// kill -9 at random points while files are written (and deduplicated as they
// land): the store never holds a damaged object, and every file whose close
// returned before the kill has its content.
TEST_F(DedupTest, KilledAtRandomPointsLosesNothingCompleted) {
  constexpr int kTrials = 5;
  std::vector<std::string> contents;
  for (unsigned i = 0; i < 24; ++i) contents.push_back(Bytes(1000 + i * 2500, 100 + i));
  ASSERT_TRUE(StartMount(Args(SingleArgs())));
  std::srand(static_cast<unsigned>(::getpid()));
  std::string shared_dir;  // a trial that completed two files of the same content
  for (int trial = 0; trial < kTrials; ++trial) {
    const std::string dir = "t" + std::to_string(trial);
    ASSERT_SYS_OK(::mkdir(Mnt(dir).c_str(), 0755));
    std::atomic<int> done{0};
    std::thread writer([&] {
      for (int i = 0; i < 5000; ++i) {
        if (!WriteFile(Mnt(dir + "/f" + std::to_string(i)), contents[i % contents.size()])) return;
        done.store(i + 1);
      }
    });
    // At least one file first (a loaded machine may take a while), then a
    // random moment.
    for (int w = 0; w < 2000 && done.load() == 0; ++w) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::rand() % 400));
    mount().Kill();
    writer.join();
    RunCommand({"fusermount3", "-u", "-z", Mnt()});
    ASSERT_GT(done.load(), 0) << "trial " << trial;
    if (shared_dir.empty() && done.load() > static_cast<int>(contents.size())) shared_dir = dir;
    for (int i = 0; i < done.load(); ++i) {
      const std::string p = InBacking(0, dir + "/f" + std::to_string(i));
      const auto got = ReadFile(p);
      ASSERT_TRUE(got == contents[i % contents.size()])
          << p << " (trial " << trial << ", " << done.load() << " completed): "
          << (got ? std::to_string(got->size()) + " bytes" : "unreadable") << ", expected "
          << contents[i % contents.size()].size() << "; st_nlink " << Lstat(p).st_nlink;
    }
    const auto problems = VerifyStore(InBacking(0, ".cachefs"));
    EXPECT_TRUE(problems.empty()) << problems.front();
    ASSERT_TRUE(mount().Start()) << "trial " << trial;
  }
  // The restarted daemon cleared what the killed ones left in tmp/, and sharing
  // still holds apart. A loaded machine may have killed every trial before it
  // wrote f0's twin f24; then the pair is written now.
  EXPECT_TRUE(ListDir(InBacking(0, ".cachefs/tmp")).empty());
  if (shared_dir.empty()) {
    shared_dir = "late";
    ASSERT_SYS_OK(::mkdir(Mnt(shared_dir).c_str(), 0755));
    ASSERT_TRUE(WriteFile(Mnt(shared_dir + "/f0"), contents[0]));
    ASSERT_TRUE(WriteFile(Mnt(shared_dir + "/f24"), contents[0]));
    Settle();
  }
  ASSERT_TRUE(WriteFile(Mnt(shared_dir + "/f0"), "changed"));
  EXPECT_EQ(ReadFile(Mnt(shared_dir + "/f24")), contents[0]);
}

}  // namespace
}  // namespace cachefs_test

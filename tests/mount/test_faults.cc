// Faults from below: a full disk under the backing tree and the store (dedup
// on) and under the discard layer, and backing directories removed or replaced
// from outside while mounted. (kill -9: test_faults_kill.cc.)
#include <dirent.h>
#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <random>
#include <thread>

#include "reliability_util.h"

namespace cachefs_test {
namespace {

using namespace std::chrono_literals;

// Writes `chunk`s to `path` until something fails; returns the errno of the
// failing call (write, fsync or close), 0 if `limit` bytes went in.
int FillUntilError(const std::string& path, size_t limit) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return errno;
  const std::string chunk(256 * 1024, 'z');
  for (size_t written = 0; written < limit; written += chunk.size()) {
    if (::write(fd.get(), chunk.data(), chunk.size()) < 0) return errno;
  }
  if (::fsync(fd.get()) != 0) return errno;
  if (::close(fd.release()) != 0) return errno;
  return 0;
}

// The backing tree and the store on an 8 MB filesystem, dedup on: filling it
// fails with ENOSPC; reads, listings and the files stored before are intact;
// once space is freed, writes and copy-on-write of shared files work again.
TEST_F(FaultTest, FullDiskInPassthroughWithDedup) {
  ScopedTmpfs tmpfs(Backing(0), "8m");
  ASSERT_TRUE(tmpfs.ok());
  ASSERT_TRUE(StartMount(DedupArgs()));
  std::map<std::string, std::string> kept;
  for (int i = 0; i < 10; ++i) {
    const std::string name = "keep" + std::to_string(i);
    kept[name] = Bytes(100'000, i % 2 == 0 ? 7 : static_cast<uint64_t>(i));  // evens shared
    ASSERT_TRUE(WriteSynced(Mnt(name), kept[name]));
  }
  for (int i = 0; i < 100 && Lstat(InBacking(0, "keep0")).st_ino != Lstat(InBacking(0, "keep2")).st_ino; ++i)
    std::this_thread::sleep_for(20ms);
  const int err = FillUntilError(Mnt("big"), 64u << 20);
  EXPECT_EQ(ErrnoName(err), "ENOSPC") << "filling the disk through the mount";
  // A second writer meets the full disk too, and gets ENOSPC, not anything else.
  const int err2 = FillUntilError(Mnt("big2"), 1u << 20);
  if (err2 != 0) {
    EXPECT_EQ(ErrnoName(err2), "ENOSPC");
  }
  // A change to a shared file needs a private copy: no room, so ENOSPC (or it fits).
  {
    Fd fd(::open(Mnt("keep0").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    if (::pwrite(fd.get(), "X", 1, 0) < 0 || ::fsync(fd.get()) != 0) {
      EXPECT_EQ(ErrnoName(errno), "ENOSPC");
    } else {
      kept["keep0"][0] = 'X';
    }
  }
  // Everything else keeps working while the disk is full. (keep0 is read from the
  // backing tree: after a failed write-back the kernel's page cache may still
  // hold the bytes that did not make it, as on any filesystem.)
  for (const auto& [name, want] : kept) {
    EXPECT_TRUE(ReadFile(name == "keep0" ? InBacking(0, name) : Mnt(name)) == want) << name;
  }
  EXPECT_EQ(ListDirSet(Mnt()).count("keep9"), 1u);
  struct statvfs sv {};
  EXPECT_SYS_OK(::statvfs(Mnt().c_str(), &sv));
  // Space freed: writes work again, copy-on-write included.
  ASSERT_SYS_OK(::unlink(Mnt("big").c_str()));
  ::unlink(Mnt("big2").c_str());
  // The blocks come back once the kernel has forgotten the unlinked inodes and
  // the daemon has closed its descriptors of them: soon, not at once.
  for (int i = 0; i < 500; ++i) {
    struct statvfs b {};
    ::statvfs(Backing(0).c_str(), &b);
    if (static_cast<uint64_t>(b.f_bavail) * b.f_frsize > (4u << 20)) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(WriteSynced(Mnt("after"), Bytes(1'000'000, 99)));
  EXPECT_EQ(ReadFile(Mnt("after")), Bytes(1'000'000, 99));
  ASSERT_TRUE(WriteFile(Mnt("keep2"), "Y", O_WRONLY));
  kept["keep2"][0] = 'Y';
  for (const auto& [name, want] : kept) {
    if (name != "keep0") {
      EXPECT_TRUE(ReadFile(Mnt(name)) == want) << name;
    }
  }
  ASSERT_TRUE(mount().Stop());
  for (const auto& [name, want] : kept) {
    if (name != "keep0") {
      EXPECT_TRUE(ReadFile(InBacking(0, name)) == want) << name;
    }
  }
  const auto keep0 = ReadFile(InBacking(0, "keep0"));
  EXPECT_TRUE(keep0 == kept["keep0"] || (keep0 && keep0->substr(1) == kept["keep0"].substr(1)))
      << "keep0 holds more than its own old or new bytes";
  ExpectVerifyClean("after the full disk");
}

// Discard mode with its upper layer on an 8 MB filesystem: new files and
// copy-ups fail with ENOSPC when it is full, the lower layer stays readable and
// untouched, and after deleting, copy-up works again.
TEST_F(FaultTest, FullDiskInDiscardMode) {
  const std::string upper = temp_.MakeDir("upper");
  ScopedTmpfs tmpfs(upper, "8m");
  ASSERT_TRUE(tmpfs.ok());
  ASSERT_TRUE(WriteFile(InBacking(0, "lower-big"), Bytes(3'000'000, 3)));
  ASSERT_TRUE(WriteFile(InBacking(0, "lower-small"), "small"));
  ASSERT_TRUE(StartMount({"--cache-directory", Backing(0), "--write-mode", "discard", "--upper", upper}));
  const auto before = SnapshotTree(Backing(0));  // with the store the daemon made
  const int err = FillUntilError(Mnt("fill"), 64u << 20);
  EXPECT_EQ(ErrnoName(err), "ENOSPC") << "filling the upper layer";
  // Copy-up of a 3 MB lower file cannot fit.
  {
    Fd fd(::open(Mnt("lower-big").c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) {
      EXPECT_EQ(ErrnoName(errno), "ENOSPC");
    } else if (::pwrite(fd.get(), "X", 1, 0) >= 0 && ::fsync(fd.get()) == 0) {
      ADD_FAILURE() << "a 3 MB copy-up fit on a full 8 MB upper layer";
    } else {
      EXPECT_EQ(ErrnoName(errno), "ENOSPC");
    }
  }
  // The lower layer is intact and readable (lower-big itself from the backing
  // tree: the kernel may cache the byte whose write-back failed).
  EXPECT_TRUE(ReadFile(InBacking(0, "lower-big")) == Bytes(3'000'000, 3));
  EXPECT_EQ(ReadFile(Mnt("lower-small")), "small");
  EXPECT_EQ(ListDirSet(Mnt()).count("lower-big"), 1u);
  ASSERT_SYS_OK(::unlink(Mnt("fill").c_str()));
  for (int i = 0; i < 500; ++i) {
    struct statvfs b {};
    ::statvfs(upper.c_str(), &b);
    if (static_cast<uint64_t>(b.f_bavail) * b.f_frsize > (4u << 20)) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(WriteFile(Mnt("lower-big"), "X", O_WRONLY));
  std::string changed = Bytes(3'000'000, 3);
  changed[0] = 'X';
  EXPECT_TRUE(ReadFile(Mnt("lower-big")) == changed);
  ASSERT_TRUE(mount().Stop());
  EXPECT_EQ(SnapshotTree(Backing(0)), before) << "the lower layer changed";
}

// A backing subdirectory removed, or replaced by another, from outside while
// mounted: the daemon keeps serving the rest; what is gone fails with ENOENT or
// ESTALE (a descriptor it still holds may also read the old bytes); nothing crashes.
TEST_F(FaultTest, BackingDirectoryRemovedOrReplacedWhileMounted) {
  for (const char* d : {"gone", "swapped", "stays"}) {
    ASSERT_SYS_OK(::mkdir(InBacking(0, d).c_str(), 0755));
    for (int i = 0; i < 5; ++i)
      ASSERT_TRUE(WriteFile(InBacking(0, std::string(d) + "/f" + std::to_string(i)), d + std::to_string(i)));
  }
  ASSERT_TRUE(StartMount({"--cache-directory", Backing(0), "--entry-timeout", "0", "--attr-timeout", "0"}));
  // The daemon knows them all (nodes, descriptors).
  for (const char* d : {"gone", "swapped", "stays"}) {
    for (int i = 0; i < 5; ++i)
      ASSERT_EQ(ReadFile(Mnt(std::string(d) + "/f" + std::to_string(i))), d + std::to_string(i));
  }
  Fd held(::open(Mnt("gone/f0").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(held.valid());
  ASSERT_TRUE(RunCommand({"rm", "-rf", InBacking(0, "gone")}).Exited0());
  ASSERT_SYS_OK(::rename(InBacking(0, "swapped").c_str(), InBacking(0, "swapped.old").c_str()));
  ASSERT_SYS_OK(::mkdir(InBacking(0, "swapped").c_str(), 0755));
  ASSERT_TRUE(WriteFile(InBacking(0, "swapped/new"), "new"));

  auto gone_or_stale = [](int e) { return e == ENOENT || e == ESTALE; };
  for (int i = 0; i < 5; ++i) {
    const std::string p = Mnt("gone/f" + std::to_string(i));
    errno = 0;
    const auto got = ReadFile(p);
    EXPECT_TRUE(got ? *got == "gone" + std::to_string(i) : gone_or_stale(errno))
        << p << ": " << ErrnoName(errno);
  }
  errno = 0;
  EXPECT_FALSE(WriteFile(Mnt("gone/created"), "x"));
  EXPECT_TRUE(gone_or_stale(errno)) << ErrnoName(errno);
  EXPECT_FALSE(Exists(InBacking(0, "gone")));
  errno = 0;
  if (::mkdir(Mnt("gone/sub").c_str(), 0755) != 0) {
    EXPECT_TRUE(gone_or_stale(errno)) << ErrnoName(errno);
  }
  EXPECT_FALSE(Exists(InBacking(0, "gone"))) << "a removed directory came back";
  // A descriptor open before the removal still reads (the inode lives on).
  char buf[16];
  EXPECT_EQ(::pread(held.get(), buf, sizeof buf, 0), 5);
  // The replaced directory: the new one is what the mount shows.
  EXPECT_EQ(ReadFile(Mnt("swapped/new")), "new");
  errno = 0;
  const auto old = ReadFile(Mnt("swapped/f1"));
  EXPECT_TRUE(old ? *old == "swapped1" : gone_or_stale(errno)) << ErrnoName(errno);
  EXPECT_EQ(ReadFile(Mnt("swapped.old/f2")), "swapped2");
  ASSERT_TRUE(WriteFile(Mnt("swapped/made"), "made"));
  EXPECT_EQ(ReadFile(InBacking(0, "swapped/made")), "made");
  // The rest is served as before.
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(ReadFile(Mnt("stays/f" + std::to_string(i))), "stays" + std::to_string(i));
  ASSERT_TRUE(WriteFile(Mnt("stays/new"), "ok"));
  EXPECT_EQ(ListDirSet(Mnt()), (std::set<std::string>{"stays", "swapped", "swapped.old"}));
  held.reset();
  ASSERT_FALSE(mount().EndedUnexpectedly().has_value()) << mount().Log();
  ASSERT_TRUE(mount().Stop()) << mount().Log();
}

// A loop device over an image file, with ext4 on it, mounted at `dir`; cutting
// the image short makes every block past the cut fail with EIO (there is no
// device-mapper in these kernels for dm-error/dm-flakey; a loop device reading
// past the end of its file is the same fault, from the real block layer).
class ScopedLoopExt4 {
 public:
  ScopedLoopExt4(std::string image, std::string dir) : image_(std::move(image)), dir_(std::move(dir)) {
    Fd img(::open(image_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!img.valid() || ::ftruncate(img.get(), 32 << 20) != 0) return;
    const CommandResult l = RunCommand({"losetup", "-f", "--show", image_});
    if (!l.Exited0()) return;
    dev_ = l.output.substr(0, l.output.find('\n'));
    if (!RunCommand({"mkfs.ext4", "-q", dev_}).Exited0()) return;
    ok_ = ::mount(dev_.c_str(), dir_.c_str(), "ext4", 0, nullptr) == 0;
  }
  ~ScopedLoopExt4() {
    if (ok_) ::umount2(dir_.c_str(), MNT_DETACH);
    if (!dev_.empty()) RunCommand({"losetup", "-d", dev_});
    ::unlink(image_.c_str());
  }
  ScopedLoopExt4(const ScopedLoopExt4&) = delete;
  ScopedLoopExt4& operator=(const ScopedLoopExt4&) = delete;
  bool ok() const { return ok_; }
  // Everything past the first `keep` bytes of the device now fails with EIO.
  bool Cut(off_t keep) const { return ::truncate(image_.c_str(), keep) == 0; }

 private:
  std::string image_, dir_, dev_;
  bool ok_ = false;
};

// EIO from the backing filesystem: a read of a broken file fails with EIO
// through the mount, and the daemon keeps serving everything else.
TEST_F(FaultTest, EioFromTheBackingFilesystemIsPassedOnAndHarmsNothingElse) {
  const std::string dir = temp_.MakeDir("eio");
  ScopedLoopExt4 fs(temp_.Path("eio.img"), dir);
  if (!fs.ok()) GTEST_SKIP() << "no loop device or mkfs.ext4 here";
  const std::string broken = Bytes(2'000'000, 1);
  ASSERT_TRUE(WriteFile(dir + "/small", "small"));
  ASSERT_TRUE(WriteSynced(dir + "/broken", broken));
  ASSERT_TRUE(StartMount({"--cache-directory", dir, "--dedup", "off"}));
  ASSERT_EQ(ReadFile(Mnt("small")), "small");  // now in the mount's page cache
  ::sync();
  // Drop the backing file's clean pages so the next read goes to the device.
  {
    Fd b(::open((dir + "/broken").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(b.valid());
    ASSERT_SYS_OK(::fdatasync(b.get()));
    ASSERT_EQ(::posix_fadvise(b.get(), 0, 0, POSIX_FADV_DONTNEED), 0);
  }
  ASSERT_TRUE(fs.Cut(4 << 20));
  errno = 0;
  const auto got = ReadFile(Mnt("broken"));
  if (got) {
    ADD_FAILURE() << "read " << got->size() << " bytes of a file on blocks that fail";
  } else {
    EXPECT_EQ(ErrnoName(errno), "EIO");
  }
  // Everything else still works.
  EXPECT_EQ(ReadFile(Mnt("small")), "small");
  struct stat st {};
  EXPECT_SYS_OK(::stat(Mnt("broken").c_str(), &st));
  EXPECT_EQ(ListDirSet(Mnt()), (std::set<std::string>{"broken", "lost+found", "small"}));
  ASSERT_FALSE(mount().EndedUnexpectedly().has_value()) << mount().Log();
  ASSERT_TRUE(mount().Stop()) << mount().Log();
}

}  // namespace
}  // namespace cachefs_test

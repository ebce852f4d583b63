// Files the kernel writes itself (FUSE passthrough, ops::create): a new file
// made the way tar, cp and install make theirs (root, write-only, O_EXCL) gets
// a handle the kernel reads and writes straight to the backing file, with no
// WRITE request. It must read back byte for byte like any other file, behave
// like one (offsets, holes, appends, truncation, rename and unlink while
// open), count in the stats, never be deduplicated while it is being written,
// and every other kind of create (lock files, temporary files reopened by name,
// non-root creators) must stay as it was. The request counts are in
// test_round_trips.cc.
#include <grp.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>

#include "reliability_util.h"

namespace cachefs_test {
namespace {

using namespace std::chrono_literals;

constexpr int kTarFlags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;

class KernelPassthroughTest : public MountTest {
 protected:
  std::vector<std::string> Args(std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = SingleArgs();
    args.insert(args.end(), {"--dedup-delay", "0"});
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  uint64_t Count(const char* name) { return Counter(Stats(), name); }
  static bool WriteAll(int fd, const std::string& data) {
    return ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  }
};

TEST_F(KernelPassthroughTest, TarExtractsByteForByteAndTheFilesAreDeduplicated) {
  // A source tree like a cache's: small files, a bigger one, a duplicate, an
  // empty file, subdirectories and modes.
  const std::string src = temp_.MakeDir("src/tree");
  temp_.MakeDir("src/tree/sub/deeper");
  ASSERT_TRUE(WriteFile(src + "/small.go", Pattern(3000, 1)));
  ASSERT_TRUE(WriteFile(src + "/sub/big.jar", Bytes(3'000'000, 2)));
  ASSERT_TRUE(WriteFile(src + "/sub/deeper/copy.jar", Bytes(3'000'000, 2)));
  ASSERT_TRUE(WriteFile(src + "/empty", ""));
  ASSERT_TRUE(WriteFile(src + "/run.sh", "#!/bin/sh\n", O_WRONLY | O_CREAT | O_TRUNC, 0755));
  const std::string tarball = temp_.Path("tree.tar");
  const CommandResult pack = RunCommand({"tar", "-C", temp_.Path("src"), "-cf", tarball, "tree"});
  ASSERT_TRUE(pack.Exited0()) << pack.Describe();

  // The same tarball unpacked natively is what the mount must show (tar keeps
  // whole seconds of mtime).
  const std::string native = temp_.MakeDir("native");
  const CommandResult here = RunCommand({"tar", "-C", native, "-xf", tarball});
  ASSERT_TRUE(here.Exited0()) << here.Describe();
  ASSERT_TRUE(StartMount(Args()));
  const CommandResult unpack = RunCommand({"tar", "-C", Mnt(), "-xf", tarball});
  ASSERT_TRUE(unpack.Exited0()) << unpack.Describe();
  EXPECT_EQ(SnapshotTree(Mnt("tree")), SnapshotTree(native + "/tree"));
  for (const char* f : {"small.go", "sub/big.jar", "sub/deeper/copy.jar", "empty", "run.sh"}) {
    EXPECT_EQ(ReadFile(InBacking(0, std::string("tree/") + f)), ReadFile(src + "/" + f)) << f;
  }
  // Every regular file but none went through a passthrough handle; their bytes
  // are counted when the handle is released.
  EXPECT_EQ(WaitForCounter("kernel_written", 5), 5u) << Stats();
  EXPECT_EQ(WaitForCounter("bytes_written", 6'003'010), 6'003'010u) << Stats();
  // Once closed, the copies are shared like any files written through the mount.
  for (int i = 0; i < 1000 && Lstat(InBacking(0, "tree/sub/big.jar")).st_ino !=
                                  Lstat(InBacking(0, "tree/sub/deeper/copy.jar")).st_ino;
       ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(Lstat(InBacking(0, "tree/sub/big.jar")).st_ino,
            Lstat(InBacking(0, "tree/sub/deeper/copy.jar")).st_ino)
      << Stats();
  EXPECT_EQ(ReadFile(Mnt("tree/sub/deeper/copy.jar")), Bytes(3'000'000, 2));
}

TEST_F(KernelPassthroughTest, AHandleBehavesLikeAnyFileWhileItIsWritten) {
  ASSERT_TRUE(StartMount(Args()));
  ASSERT_SYS_OK(::mkdir(Mnt("d").c_str(), 0755));
  Fd fd(::open(Mnt("d/out.o").c_str(), kTarFlags, 0640));
  ASSERT_TRUE(fd.valid()) << ErrnoName(errno);
  EXPECT_EQ(WaitForCounter("kernel_written", 1), 1u) << Stats();
  // Offsets and a hole.
  ASSERT_TRUE(WriteAll(fd.get(), "head"));
  ASSERT_EQ(::pwrite(fd.get(), "tail", 4, 1 << 20), 4);
  struct stat st = Lstat(Mnt("d/out.o"));  // another process's stat, while it is open
  EXPECT_EQ(st.st_size, (1 << 20) + 4);
  EXPECT_LT(Lstat(InBacking(0, "d/out.o")).st_blocks, 64) << "the hole was written";
  // Truncation through the handle, then a rename and more writes.
  ASSERT_SYS_OK(::ftruncate(fd.get(), 8));
  ASSERT_SYS_OK(::rename(Mnt("d/out.o").c_str(), Mnt("d/renamed.o").c_str()));
  ASSERT_EQ(::pwrite(fd.get(), "more", 4, 8), 4);
  ASSERT_SYS_OK(::fchmod(fd.get(), 0600));
  ASSERT_SYS_OK(::fsync(fd.get()));
  std::string expected = "head";
  expected += std::string(4, '\0');
  expected += "more";
  EXPECT_EQ(ReadFile(InBacking(0, "d/renamed.o")), expected);
  fd.reset();
  EXPECT_EQ(ReadFile(Mnt("d/renamed.o")), expected);
  EXPECT_EQ(Lstat(Mnt("d/renamed.o")).st_mode & 07777, 0600u);
  EXPECT_FALSE(Exists(Mnt("d/out.o")));

  // O_APPEND, and a file unlinked while it is written: the writes go on, and
  // nothing comes back under the name.
  Fd app(::open(Mnt("d/log").c_str(), kTarFlags | O_APPEND, 0644));
  ASSERT_TRUE(app.valid()) << ErrnoName(errno);
  ASSERT_TRUE(WriteAll(app.get(), "one "));
  ASSERT_EQ(::pwrite(app.get(), "two", 3, 0), 3);  // appends all the same (O_APPEND)
  EXPECT_EQ(ReadFile(InBacking(0, "d/log")), "one two");
  // The kernel's rule (6.18), documented in cachefs(8): while a passthrough
  // handle is open, other opens of the file fail. Only tar-style creates get
  // one (see the next test).
  errno = 0;
  EXPECT_EQ(ReadFile(Mnt("d/log")), std::nullopt);
  EXPECT_EQ(ErrnoName(errno), "EIO");
  ASSERT_SYS_OK(::unlink(Mnt("d/log").c_str()));
  ASSERT_TRUE(WriteAll(app.get(), " three"));
  app.reset();
  EXPECT_FALSE(Exists(Mnt("d/log")));
  EXPECT_FALSE(Exists(InBacking(0, "d/log")));
  // The mount still answers, and the released handles were counted.
  EXPECT_EQ(WaitForCounter("kernel_written", 2), 2u);
  EXPECT_EQ(ListDirSet(Mnt("d")), std::set<std::string>{"renamed.o"});
}

TEST_F(KernelPassthroughTest, OtherCreatesStayOpenableByOthersWhileTheyAreWritten) {
  ASSERT_TRUE(StartMount(Args()));
  // What lock files (go, ccache, maven), shell redirections and temporary files
  // reopened by name (mkstemp, Python's NamedTemporaryFile) do.
  struct Case {
    const char* name;
    int flags;
  };
  for (const Case& c :
       {Case{"module.lock", O_RDWR | O_CREAT}, Case{"out.txt", O_WRONLY | O_CREAT | O_TRUNC},
        Case{"tmpXYZ123", O_RDWR | O_CREAT | O_EXCL}}) {
    SCOPED_TRACE(c.name);
    Fd writer(::open(Mnt(c.name).c_str(), c.flags | O_CLOEXEC, 0644));
    ASSERT_TRUE(writer.valid()) << ErrnoName(errno);
    ASSERT_TRUE(WriteAll(writer.get(), "partial"));
    Fd reader(::open(Mnt(c.name).c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(reader.valid()) << ErrnoName(errno);
    char buf[16] = {};
    EXPECT_EQ(::read(reader.get(), buf, sizeof buf), 7);
    EXPECT_EQ(::flock(reader.get(), LOCK_SH | LOCK_NB), 0) << ErrnoName(errno);
  }
  EXPECT_EQ(Count("kernel_written"), 0u) << Stats();
}

// The daemon sees none of the kernel's writes, but another mount over the same
// store may write the same file through itself, and its dedup then wants to
// share it. The writer's lock, which the kernel holds for the passthrough
// handle, must keep it off: shared now, the rest of the kernel's writes would
// go to a file no longer under the name.
TEST_F(KernelPassthroughTest, AnotherMountDoesNotShareAFileTheKernelWrites) {
  ASSERT_TRUE(StartMount(Args()));
  ASSERT_TRUE(StartMount(Args(), Mnt2()));
  const std::string data = Bytes(300'000, 7);
  ASSERT_TRUE(WriteFile(Mnt("first"), data));
  for (int i = 0; i < 1000 && Lstat(InBacking(0, "first")).st_nlink < 2; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(Lstat(InBacking(0, "first")).st_nlink, 2u) << "not made an object: " << Stats();
  Fd fd(::open(Mnt("second").c_str(), kTarFlags, 0644));
  ASSERT_TRUE(fd.valid()) << ErrnoName(errno);
  ASSERT_TRUE(WriteAll(fd.get(), data));
  // The other mount writes the same bytes over it, through its daemon, which
  // then tries to share the file once it is quiet (delay 0).
  ASSERT_TRUE(WriteFile(Mnt2("second"), data, O_WRONLY | O_CLOEXEC));
  for (int i = 0; i < 200 && Counter(Stats(Mnt2()), "dedup_busy") == 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(Counter(Stats(Mnt2()), "dedup_busy"), 1u) << Stats(Mnt2());
  EXPECT_EQ(Lstat(InBacking(0, "second")).st_nlink, 1u) << "shared while open: " << Stats(Mnt2());
  // The kernel's writes go on landing under the name, and the object is intact.
  ASSERT_TRUE(WriteAll(fd.get(), "+tail"));
  fd.reset();
  EXPECT_EQ(ReadFile(InBacking(0, "second")), data + "+tail");
  EXPECT_EQ(ReadFile(Mnt("first")), data);
  // Closed and changed since: a file of its own, then shared with a third copy.
  ASSERT_TRUE(WriteFile(Mnt("third"), data + "+tail"));
  for (int i = 0; i < 1000 && Lstat(InBacking(0, "second")).st_ino !=
                                  Lstat(InBacking(0, "third")).st_ino;
       ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(Lstat(InBacking(0, "second")).st_ino, Lstat(InBacking(0, "third")).st_ino) << Stats();
  EXPECT_EQ(ReadFile(Mnt("first")), data);
}

TEST_F(KernelPassthroughTest, ANonRootCreatorIsWrittenThroughTheDaemon) {
  ASSERT_SYS_OK(::chmod(temp_.root().c_str(), 0755));
  ASSERT_SYS_OK(::chmod(Backing(0).c_str(), 01777));
  ASSERT_TRUE(StartMount(Args({"-o", "allow_other"})));
  const std::string path = Mnt("users.o");
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(100);
    const int fd = ::open(path.c_str(), kTarFlags, 0644);
    if (fd < 0) _exit(1);
    _exit(::write(fd, "by nobody", 9) == 9 && ::close(fd) == 0 ? 0 : 2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(ReadFile(path), "by nobody");
  EXPECT_EQ(Lstat(InBacking(0, "users.o")).st_uid, 65534u);
  EXPECT_EQ(Count("kernel_written"), 0u) << Stats();
}

TEST_F(KernelPassthroughTest, OffSendsEveryWriteToTheDaemon) {
  ASSERT_TRUE(StartMount(Args({"--kernel-passthrough", "off"})));
  ASSERT_TRUE(WriteFile(Mnt("a.o"), Bytes(100'000, 3), kTarFlags));
  EXPECT_EQ(ReadFile(Mnt("a.o")), Bytes(100'000, 3));
  EXPECT_EQ(Count("kernel_written"), 0u) << Stats();
  EXPECT_EQ(Count("bytes_written"), 100'000u) << Stats();
}

TEST_F(KernelPassthroughTest, DiscardModeWritesTheUpperLayerOnly) {
  ASSERT_TRUE(WriteFile(InBacking(0, "kept"), "lower"));
  const auto before = SnapshotTree(Backing(0));
  std::vector<std::string> args = SingleArgs();
  args.insert(args.end(), {"--write-mode", "discard", "--store", temp_.MakeDir("store")});
  ASSERT_TRUE(StartMount(args));
  ASSERT_TRUE(WriteFile(Mnt("new.o"), Bytes(200'000, 4), kTarFlags));
  EXPECT_EQ(ReadFile(Mnt("new.o")), Bytes(200'000, 4));
  EXPECT_EQ(WaitForCounter("kernel_written", 1), 1u) << Stats();
  EXPECT_FALSE(Exists(InBacking(0, "new.o")));
  ASSERT_TRUE(mount().Stop());
  EXPECT_EQ(SnapshotTree(Backing(0)), before);
}

TEST_F(KernelPassthroughTest, AFullDiskFailsTheWriteAndTheMountGoesOn) {
  const std::string small = temp_.MakeDir("small");
  if (::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs: " << ErrnoName(errno);
  }
  struct Unmount {
    std::string at;
    ~Unmount() { ::umount2(at.c_str(), MNT_DETACH); }
  } unmount{small};
  temp_.MakeDir("store");
  ASSERT_TRUE(StartMount({"--cache-directory", small, "--store", temp_.Path("store")}));
  Fd fd(::open(Mnt("huge").c_str(), kTarFlags, 0644));
  ASSERT_TRUE(fd.valid()) << ErrnoName(errno);
  const std::string chunk(256 * 1024, 'x');
  int err = 0;
  for (int i = 0; i < 16 && err == 0; ++i) {
    if (::write(fd.get(), chunk.data(), chunk.size()) < 0) err = errno;
  }
  EXPECT_EQ(err, ENOSPC);
  EXPECT_EQ(Count("kernel_written"), 1u) << "not a passthrough handle: " << Stats();
  fd.reset();
  ASSERT_SYS_OK(::unlink(Mnt("huge").c_str()));
  // The space comes back once the daemon has handled the handle's RELEASE,
  // which the kernel sends without waiting for it.
  struct statvfs vfs {};
  for (int i = 0; i < 1000; ++i) {
    ASSERT_SYS_OK(::statvfs(small.c_str(), &vfs));
    if (vfs.f_bavail * vfs.f_frsize >= 512 * 1024) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_GE(vfs.f_bavail * vfs.f_frsize, 512u * 1024) << "the space never came back";
  ASSERT_TRUE(WriteFile(Mnt("after"), "fits", kTarFlags));
  EXPECT_EQ(ReadFile(Mnt("after")), "fits");
}

}  // namespace
}  // namespace cachefs_test

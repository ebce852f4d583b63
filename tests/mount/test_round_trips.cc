// What the kernel asks the daemon for, counted in the daemon's -d log: the
// performance design (ARCHITECTURE.md, "Speed") promises that a warm read of a
// cached file costs no request at all, that with --writeback-cache every
// close() is still a FLUSH the daemon answers (so close() reports a write-back
// that could not be delivered), that a file tar or cp creates is written by
// the kernel without any request (FUSE passthrough), and that any other file
// a build creates costs one WRITE per write() call.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string_view>
#include <thread>

#include "mount_fixture.h"

namespace cachefs_test {
namespace {

using namespace std::chrono_literals;

class RoundTripTest : public MountTest {
 protected:
  ::testing::AssertionResult Mount(std::vector<std::string> extra) {
    std::vector<std::string> args = SingleArgs();
    args.push_back("-d");
    args.insert(args.end(), extra.begin(), extra.end());
    return StartMount(args);
  }
  size_t LogSize() {
    struct stat st {};
    return ::stat(mount().log_path().c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
  }
  // Requests logged since byte `from` of the log, by opcode name.
  std::map<std::string, int> RequestsSince(size_t from) {
    std::this_thread::sleep_for(300ms);  // requests the kernel sends after close() returns
    std::ifstream in(mount().log_path());
    in.seekg(static_cast<std::streamoff>(from));
    std::map<std::string, int> out;
    // libfuse's debug lines: "unique: 12, opcode: GETATTR (3), nodeid: ...".
    constexpr std::string_view kOp = "opcode: ";
    std::string line;
    while (std::getline(in, line)) {
      const size_t at = line.find(kOp);
      if (at == std::string::npos) continue;
      const size_t start = at + kOp.size();
      const size_t end = line.find(" (", start);
      if (end != std::string::npos && end > start) ++out[line.substr(start, end - start)];
    }
    return out;
  }
  static std::string Describe(const std::map<std::string, int>& m) {
    std::ostringstream s;
    for (const auto& [k, v] : m) s << k << "=" << v << " ";
    return m.empty() ? "(none)" : s.str();
  }
  // What a build's compiler does with a cached header: open, fstat, read it all, close.
  static void ReadLikeABuild(const std::string& path, size_t times) {
    char buf[65536];
    for (size_t i = 0; i < times; ++i) {
      Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      ASSERT_TRUE(fd.valid()) << ErrnoName(errno);
      struct stat st {};
      ASSERT_SYS_OK(::fstat(fd.get(), &st));
      while (::read(fd.get(), buf, sizeof buf) > 0) {
      }
    }
  }
};

TEST_F(RoundTripTest, AWarmReadOfACachedFileSendsNoRequest) {
  ASSERT_TRUE(WriteFile(InBacking(0, "cached.h"), std::string(20000, 'h')));
  ASSERT_TRUE(Mount({}));
  // Cold: a lookup and reads; the reads mark atime stale, so the next fstat is a
  // GETATTR. From then on the file is warm.
  ReadLikeABuild(Mnt("cached.h"), 2);
  const size_t mark = LogSize();
  ReadLikeABuild(Mnt("cached.h"), 20);
  const auto seen = RequestsSince(mark);
  EXPECT_TRUE(seen.empty()) << "20 warm reads sent: " << Describe(seen);
}

TEST_F(RoundTripTest, WithTheWritebackCacheEveryCloseIsAnsweredFlush) {
  ASSERT_TRUE(WriteFile(InBacking(0, "cached.h"), std::string(20000, 'h')));
  ASSERT_TRUE(Mount({"--writeback-cache"}));
  ReadLikeABuild(Mnt("cached.h"), 2);
  const size_t mark = LogSize();
  ReadLikeABuild(Mnt("cached.h"), 20);
  const auto seen = RequestsSince(mark);
  // Declined once, the kernel would never send FLUSH again.
  EXPECT_EQ(seen.count("FLUSH") ? seen.at("FLUSH") : 0, 20) << Describe(seen);
}

// Before each write() the kernel checks whether the file carries
// security.capability (to drop it). A FUSE filesystem that does not take over
// killing privileges gets that as a GETXATTR per write() call; with
// FUSE_HANDLE_KILLPRIV_V2 (fs/kernel_io.h) the kernel remembers the answer.
// (A file the build creates is written with direct I/O, which never asks: the
// file here already exists, so its writes go through the page cache.)
TEST_F(RoundTripTest, WritingAFileInManyPiecesAsksAboutCapabilitiesOnce) {
  ASSERT_TRUE(WriteFile(InBacking(0, "big.jar"), ""));
  ASSERT_TRUE(Mount({}));
  const size_t mark = LogSize();
  Fd fd(::open(Mnt("big.jar").c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid()) << ErrnoName(errno);
  const std::string record(10240, 'j');  // tar writes 10 KiB records
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(::write(fd.get(), record.data(), record.size()), static_cast<ssize_t>(record.size()));
  }
  fd.reset();
  const auto seen = RequestsSince(mark);
  EXPECT_GE(seen.count("WRITE") ? seen.at("WRITE") : 0, 40) << Describe(seen);
  EXPECT_LE(seen.count("GETXATTR") ? seen.at("GETXATTR") : 0, 1) << Describe(seen);
}

// What tar does for each file: create it (write-only, O_EXCL), write it in
// pieces of 10 KiB. The kernel writes them to the backing file itself: no
// WRITE at all, and one GETXATTR (security.capability, asked before the first
// write of an inode).
TEST_F(RoundTripTest, AFileTarCreatesIsWrittenWithoutARequest) {
  ASSERT_TRUE(Mount({}));
  const size_t mark = LogSize();
  Fd fd(::open(Mnt("member.go").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd.valid()) << ErrnoName(errno);
  std::string written;
  for (int i = 0; i < 12; ++i) {
    const std::string piece(10240, static_cast<char>('a' + i));
    ASSERT_EQ(::write(fd.get(), piece.data(), piece.size()), static_cast<ssize_t>(piece.size()));
    written += piece;
  }
  fd.reset();
  const auto seen = RequestsSince(mark);
  EXPECT_EQ(seen.count("WRITE"), 0u) << Describe(seen);
  EXPECT_LE(seen.count("GETXATTR") ? seen.at("GETXATTR") : 0, 1) << Describe(seen);
  EXPECT_EQ(seen.count("RELEASE") ? seen.at("RELEASE") : 0, 1) << Describe(seen);
  EXPECT_EQ(ReadFile(InBacking(0, "member.go")), written);
  EXPECT_EQ(ReadFile(Mnt("member.go")), written);
}

// Any other created file (here: read-write, as a temporary file is), or any
// file with --kernel-passthrough off, is written through the daemon. Through
// the page cache each piece that is not a page multiple would be two WRITEs
// (the kernel sends the partial page it does not hold apart), plus a GETXATTR
// for the first; the creator's handle does direct I/O, so one WRITE per
// write() and nothing else.
TEST_F(RoundTripTest, AnyOtherCreatedFileIsOneWritePerCall) {
  for (const bool off : {false, true}) {
    SCOPED_TRACE(off ? "--kernel-passthrough off" : "read-write create");
    if (off) {
      ASSERT_TRUE(mount().Stop());
      mounts_.clear();
    }
    ASSERT_TRUE(Mount(off ? std::vector<std::string>{"--kernel-passthrough", "off"}
                          : std::vector<std::string>{}));
    const size_t mark = LogSize();
    const int flags = off ? O_WRONLY : O_RDWR;
    Fd fd(::open(Mnt("member.go").c_str(), flags | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.valid()) << ErrnoName(errno);
    std::string written;
    for (int i = 0; i < 12; ++i) {
      const std::string piece(9728 + i, static_cast<char>('a' + i));
      ASSERT_EQ(::write(fd.get(), piece.data(), piece.size()), static_cast<ssize_t>(piece.size()));
      written += piece;
    }
    fd.reset();
    const auto seen = RequestsSince(mark);
    EXPECT_EQ(seen.count("WRITE") ? seen.at("WRITE") : 0, 12) << Describe(seen);
    EXPECT_EQ(seen.count("GETXATTR"), 0u) << Describe(seen);
    EXPECT_EQ(ReadFile(InBacking(0, "member.go")), written);
    EXPECT_EQ(ReadFile(Mnt("member.go")), written);
    ASSERT_SYS_OK(::unlink(Mnt("member.go").c_str()));
  }
}

// With --writeback-cache the kernel gathers writes in its page cache, so the
// creator's handle stays a cached one.
TEST_F(RoundTripTest, WithTheWritebackCacheACreatedFileIsWrittenBack) {
  ASSERT_TRUE(Mount({"--writeback-cache"}));
  const size_t mark = LogSize();
  Fd fd(::open(Mnt("member.go").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd.valid()) << ErrnoName(errno);
  const std::string piece(1000, 'w');
  for (int i = 0; i < 40; ++i) ASSERT_EQ(::write(fd.get(), piece.data(), piece.size()), 1000);
  fd.reset();
  const auto seen = RequestsSince(mark);
  EXPECT_LT(seen.count("WRITE") ? seen.at("WRITE") : 0, 40) << Describe(seen);
  EXPECT_EQ(ReadFile(InBacking(0, "member.go")), std::string(40000, 'w'));
}

TEST_F(RoundTripTest, AWriteReachesTheBackingFileBeforeItReturns) {
  ASSERT_TRUE(Mount({}));
  Fd fd(::open(Mnt("out.o").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd.valid()) << ErrnoName(errno);
  ASSERT_EQ(::write(fd.get(), "object code", 11), 11);
  // Still open, never flushed or synced: the backing file already holds it, so
  // another mount over the same directory, or a host process, sees it at once.
  EXPECT_EQ(ReadFile(InBacking(0, "out.o")), "object code");
}

}  // namespace
}  // namespace cachefs_test

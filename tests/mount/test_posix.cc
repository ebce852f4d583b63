// POSIX semantics on a real cachefs mount, run twice: with one backing directory,
// and with three routed ones (every file name gets a suffix that routes it to a
// non-default directory, so parent chains are created on the way and directories
// span branches).
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "mount_fixture.h"

namespace cachefs_test {
namespace {

struct Layout {
  const char* name;
  bool routed;
  const char* suffix;  // appended to every file name
  int landing;         // backing directory those files land in
  bool discard = false;  // discard mode: they land in the upper layer (kept at unmount)
  bool writeback = false;  // --writeback-cache (the kernel gathers writes; default: write through)
};

const Layout kSingle{"Single", false, "", 0};
const Layout kRouted{"Routed", true, ".one", 1};
const Layout kDiscard{"Discard", false, "", 0, true};
const Layout kDiscardRouted{"DiscardRouted", true, ".one", 1, true};
const Layout kWriteback{"Writeback", false, "", 0, false, true};
const Layout kWritebackRouted{"WritebackRouted", true, ".one", 1, false, true};

void PrintTo(const Layout& l, std::ostream* os) { *os << l.name; }

std::string LayoutName(const ::testing::TestParamInfo<Layout>& info) { return info.param.name; }

class PosixTest : public MountTest, public ::testing::WithParamInterface<Layout> {
 protected:
  void SetUp() override { ASSERT_TRUE(StartMount(Args())); }

  std::vector<std::string> Args() const {
    std::vector<std::string> a = GetParam().routed ? RoutedArgs() : SingleArgs();
    if (GetParam().discard) {
      a.insert(a.end(), {"--write-mode", "discard", "--upper", temp_.Path("upper"), "--keep-upper"});
    }
    if (GetParam().writeback) a.push_back("--writeback-cache");
    return a;
  }
  // A file name as the layout spells it.
  std::string F(std::string_view base) const { return std::string(base) + GetParam().suffix; }
  // Where a file created through the mount at `rel` lands.
  std::string B(std::string_view rel) const {
    if (GetParam().discard) return temp_.Path("upper/" + std::string(rel));
    return InBacking(GetParam().landing, rel);
  }
  // Where an entry that no route claims lands (the catch-all, or the upper layer).
  std::string B0(std::string_view rel) const {
    if (GetParam().discard) return temp_.Path("upper/" + std::string(rel));
    return InBacking(0, rel);
  }
};

// ---------------------------------------------------------------------------
// create, O_EXCL, O_TRUNC, O_APPEND

TEST_P(PosixTest, CreateWriteRead) {
  const std::string path = Mnt(F("created"));
  ASSERT_TRUE(WriteFile(path, "hello cachefs\n", O_WRONLY | O_CREAT | O_EXCL, 0640))
      << ErrnoName(errno);
  EXPECT_EQ(ReadFile(path), "hello cachefs\n");
  struct stat st {};
  ASSERT_SYS_OK(::stat(path.c_str(), &st));
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_size, 14);
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_EQ(ReadFile(B(F("created"))), "hello cachefs\n");
  EXPECT_TRUE(ListDirSet(Mnt()).count(F("created")));
}

TEST_P(PosixTest, CreateInNestedDirectories) {
  ASSERT_SYS_OK(::mkdir(Mnt("a").c_str(), 0755));
  ASSERT_SYS_OK(::mkdir(Mnt("a/b").c_str(), 0750));
  const std::string rel = "a/b/" + F("leaf");
  ASSERT_TRUE(WriteFile(Mnt(rel), "leaf")) << ErrnoName(errno);
  EXPECT_EQ(ReadFile(Mnt(rel)), "leaf");
  EXPECT_EQ(ReadFile(B(rel)), "leaf");
  struct stat st {};
  ASSERT_SYS_OK(::stat(Mnt("a/b").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0750u);
}

TEST_P(PosixTest, ExclusiveCreateOfExistingFails) {
  const std::string path = Mnt(F("excl"));
  ASSERT_TRUE(WriteFile(path, "first"));
  EXPECT_ERRNO(EEXIST, ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  EXPECT_EQ(ReadFile(path), "first");
  // O_EXCL on a directory name fails the same way.
  ASSERT_SYS_OK(::mkdir(Mnt("excl-dir").c_str(), 0755));
  EXPECT_ERRNO(EEXIST, ::open(Mnt("excl-dir").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
}

TEST_P(PosixTest, TruncatingOpenEmptiesFile) {
  const std::string path = Mnt(F("trunc"));
  ASSERT_TRUE(WriteFile(path, std::string(10000, 'x')));
  ASSERT_TRUE(WriteFile(path, "short", O_WRONLY | O_TRUNC));
  EXPECT_EQ(ReadFile(path), "short");
  struct stat st {};
  ASSERT_SYS_OK(::stat(path.c_str(), &st));
  EXPECT_EQ(st.st_size, 5);
  EXPECT_EQ(ReadFile(B(F("trunc"))), "short");
  // O_TRUNC without writing anything.
  Fd fd(::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  ASSERT_TRUE(fd.valid()) << ErrnoName(errno);
  fd.reset();
  EXPECT_EQ(ReadFile(path), "");
  EXPECT_EQ(ReadFile(B(F("trunc"))), "");
}

TEST_P(PosixTest, TwoAppendersNeverOverwriteEachOther) {
  const std::string path = Mnt(F("append"));
  ASSERT_TRUE(WriteFile(path, "HEADER\n"));
  constexpr int kRecords = 400;
  constexpr size_t kLen = 16;  // "W0-000000......\n"
  auto appender = [&](int who) {
    Fd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    if (!fd.valid()) return;
    for (int i = 0; i < kRecords; ++i) {
      char rec[kLen + 1];
      std::snprintf(rec, sizeof rec, "W%d-%06d......\n", who, i);
      if (::write(fd.get(), rec, kLen) != static_cast<ssize_t>(kLen)) return;
    }
  };
  std::thread t1(appender, 1), t2(appender, 2);
  t1.join();
  t2.join();
  const auto content = ReadFile(path);
  ASSERT_TRUE(content);
  ASSERT_EQ(content->size(), 7 + 2 * kRecords * kLen);
  ASSERT_EQ(content->substr(0, 7), "HEADER\n");
  int next[3] = {0, 0, 0};
  for (size_t off = 7; off < content->size(); off += kLen) {
    const std::string rec = content->substr(off, kLen);
    int who = -1, seq = -1;
    ASSERT_EQ(std::sscanf(rec.c_str(), "W%d-%d", &who, &seq), 2) << "torn record at " << off << ": " << rec;
    ASSERT_TRUE(who == 1 || who == 2) << rec;
    EXPECT_EQ(seq, next[who]) << "records out of order or lost at offset " << off;
    next[who] = seq + 1;
    EXPECT_EQ(rec.substr(9), "......\n") << "torn record at " << off;
  }
  EXPECT_EQ(next[1], kRecords);
  EXPECT_EQ(next[2], kRecords);
  EXPECT_EQ(ReadFile(B(F("append"))), content);
}

// ---------------------------------------------------------------------------
// rename

TEST_P(PosixTest, RenameOverExistingFile) {
  const std::string src = Mnt(F("src")), dst = Mnt(F("dst"));
  ASSERT_TRUE(WriteFile(src, "new content"));
  ASSERT_TRUE(WriteFile(dst, "old"));
  struct stat before {};
  ASSERT_SYS_OK(::stat(src.c_str(), &before));
  ASSERT_SYS_OK(::rename(src.c_str(), dst.c_str()));
  EXPECT_ERRNO(ENOENT, ::access(src.c_str(), F_OK));
  EXPECT_EQ(ReadFile(dst), "new content");
  struct stat after {};
  ASSERT_SYS_OK(::stat(dst.c_str(), &after));
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_FALSE(Exists(B(F("src"))));
  EXPECT_EQ(ReadFile(B(F("dst"))), "new content");
  const auto names = ListDirSet(Mnt());
  EXPECT_FALSE(names.count(F("src")));
  EXPECT_TRUE(names.count(F("dst")));
}

TEST_P(PosixTest, AtomicReplaceNeverShowsPartialContent) {
  const std::string target = Mnt(F("atomic"));
  const std::string tmp = Mnt(F("atomic.tmp"));
  constexpr size_t kSize = 96 * 1024;
  ASSERT_TRUE(WriteFile(target, std::string(kSize, 'A')));
  std::atomic<bool> done{false};
  std::atomic<int> writes{0};
  std::string writer_error;
  std::thread writer([&] {
    for (int i = 1; i <= 150; ++i) {
      if (!WriteFile(tmp, std::string(kSize, static_cast<char>('A' + i % 26)))) {
        writer_error = "write temp: " + ErrnoName(errno);
        break;
      }
      if (::rename(tmp.c_str(), target.c_str()) != 0) {
        writer_error = "rename: " + ErrnoName(errno);
        break;
      }
      writes.fetch_add(1);
    }
    done.store(true);
  });
  int reads = 0;
  std::string problem;
  do {
    const auto content = ReadFile(target);
    ++reads;
    if (!content) {
      problem = "target unreadable: " + ErrnoName(errno);
    } else if (content->size() != kSize) {
      problem = "partial content: " + std::to_string(content->size()) + " bytes";
    } else if (std::count(content->begin(), content->end(), (*content)[0]) !=
               static_cast<long>(kSize)) {
      problem = "mixed content";
    }
  } while (!done.load() && problem.empty());
  writer.join();
  EXPECT_EQ(writer_error, "");
  EXPECT_EQ(problem, "") << "after " << reads << " reads and " << writes.load() << " renames";
  EXPECT_EQ(writes.load(), 150);
  EXPECT_GT(reads, 0);
  EXPECT_EQ(ReadFile(target), std::string(kSize, static_cast<char>('A' + 150 % 26)));
  EXPECT_FALSE(Exists(tmp));
}

TEST_P(PosixTest, RenameDirectoryMovesItsContents) {
  ASSERT_SYS_OK(::mkdir(Mnt("d").c_str(), 0755));
  ASSERT_SYS_OK(::mkdir(Mnt("d/sub").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("d/" + F("x")), "x"));
  ASSERT_TRUE(WriteFile(Mnt("d/sub/" + F("y")), "y"));
  ASSERT_TRUE(WriteFile(Mnt("d/plain"), "plain"));
  ASSERT_SYS_OK(::rename(Mnt("d").c_str(), Mnt("e").c_str()));
  EXPECT_ERRNO(ENOENT, ::access(Mnt("d").c_str(), F_OK));
  EXPECT_EQ(ReadFile(Mnt("e/" + F("x"))), "x");
  EXPECT_EQ(ReadFile(Mnt("e/sub/" + F("y"))), "y");
  EXPECT_EQ(ReadFile(Mnt("e/plain")), "plain");
  EXPECT_EQ(ListDirSet(Mnt("e")), (std::set<std::string>{F("x"), "sub", "plain"}));
  // In every backing directory that held it.
  for (int b = 0; b < 3; ++b) EXPECT_FALSE(Exists(InBacking(b, "d"))) << "b" << b;
  EXPECT_EQ(ReadFile(B("e/" + F("x"))), "x");
  EXPECT_EQ(ReadFile(B("e/sub/" + F("y"))), "y");
  EXPECT_EQ(ReadFile(B0("e/plain")), "plain");
  // Creating in the renamed directory still works, and lands under the new name.
  ASSERT_TRUE(WriteFile(Mnt("e/sub/" + F("z")), "z"));
  EXPECT_EQ(ReadFile(B("e/sub/" + F("z"))), "z");
}

TEST_P(PosixTest, RenameDirectoryOverDirectories) {
  ASSERT_SYS_OK(::mkdir(Mnt("from").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("from/" + F("f")), "f"));
  ASSERT_SYS_OK(::mkdir(Mnt("empty").c_str(), 0755));
  ASSERT_SYS_OK(::mkdir(Mnt("full").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("full/" + F("g")), "g"));
  EXPECT_ERRNO(ENOTEMPTY, ::rename(Mnt("from").c_str(), Mnt("full").c_str()));
  EXPECT_EQ(ReadFile(Mnt("full/" + F("g"))), "g");
  EXPECT_EQ(ReadFile(Mnt("from/" + F("f"))), "f");
  ASSERT_SYS_OK(::rename(Mnt("from").c_str(), Mnt("empty").c_str()));
  EXPECT_EQ(ReadFile(Mnt("empty/" + F("f"))), "f");
  EXPECT_FALSE(Exists(Mnt("from")));
  // A file cannot replace a directory, nor a directory a file.
  ASSERT_TRUE(WriteFile(Mnt(F("file")), "file"));
  EXPECT_ERRNO(EISDIR, ::rename(Mnt(F("file")).c_str(), Mnt("full").c_str()));
  EXPECT_ERRNO(ENOTDIR, ::rename(Mnt("full").c_str(), Mnt(F("file")).c_str()));
}

TEST_P(PosixTest, RenameNoReplace) {
  const std::string a = Mnt(F("nr-a")), b = Mnt(F("nr-b")), c = Mnt(F("nr-c"));
  ASSERT_TRUE(WriteFile(a, "a"));
  ASSERT_TRUE(WriteFile(b, "b"));
  EXPECT_ERRNO(EEXIST, ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_NOREPLACE));
  EXPECT_EQ(ReadFile(a), "a");
  EXPECT_EQ(ReadFile(b), "b");
  ASSERT_SYS_OK(::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, c.c_str(), RENAME_NOREPLACE));
  EXPECT_FALSE(Exists(a));
  EXPECT_EQ(ReadFile(c), "a");
  // Directories too.
  ASSERT_SYS_OK(::mkdir(Mnt("nr-d1").c_str(), 0755));
  ASSERT_SYS_OK(::mkdir(Mnt("nr-d2").c_str(), 0755));
  EXPECT_ERRNO(EEXIST, ::renameat2(AT_FDCWD, Mnt("nr-d1").c_str(), AT_FDCWD, Mnt("nr-d2").c_str(),
                                   RENAME_NOREPLACE));
  EXPECT_TRUE(Exists(Mnt("nr-d1")));
}

TEST_P(PosixTest, RenameExchangeSwapsFiles) {
  const std::string a = Mnt(F("ex-a")), b = Mnt(F("ex-b"));
  ASSERT_TRUE(WriteFile(a, "content of a"));
  ASSERT_TRUE(WriteFile(b, "content of b"));
  ASSERT_SYS_OK(::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE));
  EXPECT_EQ(ReadFile(a), "content of b");
  EXPECT_EQ(ReadFile(b), "content of a");
}

// ---------------------------------------------------------------------------
// links

TEST_P(PosixTest, HardLinksShareOneInode) {
  const std::string a = Mnt(F("link-a")), b = Mnt(F("link-b"));
  ASSERT_TRUE(WriteFile(a, "original"));
  ASSERT_SYS_OK(::link(a.c_str(), b.c_str()));
  struct stat sa {}, sb {};
  ASSERT_SYS_OK(::stat(a.c_str(), &sa));
  ASSERT_SYS_OK(::stat(b.c_str(), &sb));
  EXPECT_EQ(sa.st_ino, sb.st_ino);
  EXPECT_EQ(sa.st_nlink, 2u);
  EXPECT_EQ(sb.st_nlink, 2u);
  // Write through one name, read through the other (both kept open).
  Fd wa(::open(a.c_str(), O_WRONLY | O_CLOEXEC));
  Fd rb(::open(b.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(wa.valid() && rb.valid()) << ErrnoName(errno);
  ASSERT_EQ(::pwrite(wa.get(), "CHANGED", 7, 0), 7);
  char buf[32] = {};
  ASSERT_EQ(::pread(rb.get(), buf, sizeof buf, 0), 8);
  EXPECT_EQ(std::string(buf, 8), "CHANGEDl");
  wa.reset();
  rb.reset();
  EXPECT_EQ(ReadFile(b), "CHANGEDl");
  struct stat bb {};
  ASSERT_SYS_OK(::stat(B(F("link-b")).c_str(), &bb));
  EXPECT_EQ(bb.st_nlink, 2u);
  // Unlinking one name leaves the other with one link.
  ASSERT_SYS_OK(::unlink(a.c_str()));
  ASSERT_SYS_OK(::stat(b.c_str(), &sb));
  EXPECT_EQ(sb.st_nlink, 1u);
  EXPECT_EQ(ReadFile(b), "CHANGEDl");
  EXPECT_FALSE(Exists(a));
}

TEST_P(PosixTest, Symlinks) {
  const std::string link = Mnt(F("sym"));
  ASSERT_SYS_OK(::symlink("some/where/else", link.c_str()));
  char buf[256] = {};
  ASSERT_EQ(::readlink(link.c_str(), buf, sizeof buf), 15);
  EXPECT_STREQ(buf, "some/where/else");
  struct stat st {};
  ASSERT_SYS_OK(::lstat(link.c_str(), &st));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_size, 15);
  EXPECT_ERRNO(ENOENT, ::stat(link.c_str(), &st));  // dangling
  // The backing directory holds the very same link.
  char bbuf[256] = {};
  ASSERT_EQ(::readlink(B(F("sym")).c_str(), bbuf, sizeof bbuf), 15);
  EXPECT_STREQ(bbuf, "some/where/else");
  // A relative link to a file in the mount resolves (on the client side).
  ASSERT_TRUE(WriteFile(Mnt(F("target")), "via link"));
  ASSERT_SYS_OK(::symlink(F("target").c_str(), Mnt(F("sym2")).c_str()));
  EXPECT_EQ(ReadFile(Mnt(F("sym2"))), "via link");
  ASSERT_SYS_OK(::stat(Mnt(F("sym2")).c_str(), &st));
  EXPECT_TRUE(S_ISREG(st.st_mode));
  // A symlink to a directory.
  ASSERT_SYS_OK(::mkdir(Mnt("realdir").c_str(), 0755));
  ASSERT_SYS_OK(::symlink("realdir", Mnt(F("dirlink")).c_str()));
  ASSERT_TRUE(WriteFile(Mnt(F("dirlink") + "/" + F("inside")), "inside"));
  EXPECT_EQ(ReadFile(Mnt("realdir/" + F("inside"))), "inside");
}

// ---------------------------------------------------------------------------
// attributes

TEST_P(PosixTest, ChmodChownUtimens) {
  const std::string path = Mnt(F("attrs"));
  ASSERT_TRUE(WriteFile(path, "attrs"));
  ASSERT_SYS_OK(::chmod(path.c_str(), 0604));
  ASSERT_SYS_OK(::chown(path.c_str(), 1234, 5678));
  const timespec times[2] = {{1'000'000'000, 123'456'789}, {1'500'000'000, 987'654'321}};
  ASSERT_SYS_OK(::utimensat(AT_FDCWD, path.c_str(), times, 0));
  for (const std::string& p : {path, B(F("attrs"))}) {
    struct stat st {};
    ASSERT_SYS_OK(::stat(p.c_str(), &st));
    EXPECT_EQ(st.st_mode & 07777, 0604u) << p;
    EXPECT_EQ(st.st_uid, 1234u) << p;
    EXPECT_EQ(st.st_gid, 5678u) << p;
    EXPECT_EQ(st.st_atim.tv_sec, 1'000'000'000) << p;
    EXPECT_EQ(st.st_atim.tv_nsec, 123'456'789) << p;
    EXPECT_EQ(st.st_mtim.tv_sec, 1'500'000'000) << p;
    EXPECT_EQ(st.st_mtim.tv_nsec, 987'654'321) << p;
  }
  // Through an open descriptor too.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_SYS_OK(::fchmod(fd.get(), 0640));
  const timespec t2[2] = {{0, UTIME_OMIT}, {1'600'000'000, 1}};
  ASSERT_SYS_OK(::futimens(fd.get(), t2));
  struct stat st {};
  ASSERT_SYS_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1'600'000'000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 1);
  EXPECT_EQ(st.st_atim.tv_nsec, 123'456'789);
}

TEST_P(PosixTest, ChmodOfDirectoryReachesEveryBranch) {
  ASSERT_SYS_OK(::mkdir(Mnt("cd").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("cd/" + F("f")), "f"));  // routed: cd now spans b0 and b1
  ASSERT_SYS_OK(::chmod(Mnt("cd").c_str(), 0711));
  struct stat st {};
  ASSERT_SYS_OK(::stat(Mnt("cd").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0711u);
  for (int b = 0; b < 3; ++b) {
    if (::stat(InBacking(b, "cd").c_str(), &st) == 0) {
      EXPECT_EQ(st.st_mode & 07777, 0711u) << "b" << b;
    }
  }
}

TEST_P(PosixTest, TruncateGrowsAndShrinks) {
  const std::string path = Mnt(F("tr"));
  const std::string data = Pattern(100, 1);
  ASSERT_TRUE(WriteFile(path, data));
  ASSERT_SYS_OK(::truncate(path.c_str(), 1 << 20));
  struct stat st {};
  ASSERT_SYS_OK(::stat(path.c_str(), &st));
  EXPECT_EQ(st.st_size, 1 << 20);
  auto content = ReadFile(path);
  ASSERT_TRUE(content);
  ASSERT_EQ(content->size(), 1u << 20);
  EXPECT_EQ(content->substr(0, 100), data);
  EXPECT_EQ(std::count(content->begin() + 100, content->end(), '\0'), (1 << 20) - 100);
  ASSERT_SYS_OK(::truncate(path.c_str(), 10));
  EXPECT_EQ(ReadFile(path), data.substr(0, 10));
  EXPECT_EQ(ReadFile(B(F("tr"))), data.substr(0, 10));
  // ftruncate on an open descriptor, then write past the end.
  Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_SYS_OK(::ftruncate(fd.get(), 4));
  ASSERT_EQ(::pwrite(fd.get(), "Z", 1, 6), 1);
  fd.reset();
  EXPECT_EQ(ReadFile(path), data.substr(0, 4) + std::string(2, '\0') + "Z");
}

TEST_P(PosixTest, FsyncReachesTheBackingFile) {
  const std::string path = Mnt(F("sync"));
  const std::string data = Pattern(1 << 20, 2);
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(::write(fd.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_SYS_OK(::fsync(fd.get()));
  // Still open: fsync alone must have put the data in the backing file.
  EXPECT_EQ(ReadFile(B(F("sync"))), data);
  ASSERT_EQ(::pwrite(fd.get(), "SYNCED", 6, 0), 6);
  ASSERT_SYS_OK(::fdatasync(fd.get()));
  EXPECT_EQ(ReadFile(B(F("sync"))), "SYNCED" + data.substr(6));
  fd.reset();
  // fsync on a directory.
  Fd dir(::open(Mnt().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir.valid());
  EXPECT_SYS_OK(::fsync(dir.get()));
}

// ---------------------------------------------------------------------------
// mmap

TEST_P(PosixTest, MmapRead) {
  const std::string path = Mnt(F("mmap-r"));
  const std::string data = Pattern(3 * 4096 + 123, 3);
  ASSERT_TRUE(WriteFile(path, data));
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  void* p = ::mmap(nullptr, data.size(), PROT_READ, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << ErrnoName(errno);
  EXPECT_EQ(std::memcmp(p, data.data(), data.size()), 0);
  ::munmap(p, data.size());
}

TEST_P(PosixTest, MmapWriteAndMsync) {
  const std::string path = Mnt(F("mmap-w"));
  constexpr size_t kSize = 4 * 4096;
  const std::string data = Pattern(kSize, 4);
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd.valid());
  ASSERT_SYS_OK(::ftruncate(fd.get(), kSize));
  void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << ErrnoName(errno);
  std::memcpy(p, data.data(), kSize);
  EXPECT_SYS_OK(::msync(p, kSize, MS_SYNC));
  // msync(MS_SYNC) has written the pages back: the backing file has them while the
  // mapping and the descriptor are still open.
  EXPECT_EQ(ReadFile(B(F("mmap-w"))), data);
  ::munmap(p, kSize);
  fd.reset();
  EXPECT_EQ(ReadFile(path), data);
}

// ---------------------------------------------------------------------------
// sparse files

TEST_P(PosixTest, SparseFileHolesAndData) {
  const std::string path = Mnt(F("sparse"));
  constexpr off_t kDataAt = 16 << 20;
  const std::string data = Pattern(4096, 5);
  {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::pwrite(fd.get(), data.data(), data.size(), kDataAt), 4096);
  }
  struct stat st {};
  ASSERT_SYS_OK(::stat(path.c_str(), &st));
  EXPECT_EQ(st.st_size, kDataAt + 4096);
  EXPECT_LE(st.st_blocks * 512, 256 * 1024) << "st_blocks=" << st.st_blocks;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  EXPECT_EQ(::lseek(fd.get(), 0, SEEK_HOLE), 0);
  EXPECT_EQ(::lseek(fd.get(), 0, SEEK_DATA), kDataAt);
  EXPECT_EQ(::lseek(fd.get(), kDataAt, SEEK_HOLE), kDataAt + 4096);
  EXPECT_ERRNO(ENXIO, ::lseek(fd.get(), kDataAt + 4096, SEEK_DATA));
  char buf[4096];
  ASSERT_EQ(::pread(fd.get(), buf, sizeof buf, 4096), 4096);
  EXPECT_EQ(std::count(buf, buf + sizeof buf, '\0'), 4096);
  ASSERT_EQ(::pread(fd.get(), buf, sizeof buf, kDataAt), 4096);
  EXPECT_EQ(std::string(buf, 4096), data);
  struct stat bst {};
  ASSERT_SYS_OK(::stat(B(F("sparse")).c_str(), &bst));
  EXPECT_LE(bst.st_blocks * 512, 256 * 1024);
}

// ---------------------------------------------------------------------------
// xattrs

TEST_P(PosixTest, UserXattrsOnFiles) {
  const std::string path = Mnt(F("xattr"));
  ASSERT_TRUE(WriteFile(path, "x"));
  ASSERT_SYS_OK(::setxattr(path.c_str(), "user.alpha", "one", 3, 0));
  ASSERT_SYS_OK(::setxattr(path.c_str(), "user.beta", "two2", 4, 0));
  char buf[256] = {};
  ASSERT_EQ(::getxattr(path.c_str(), "user.alpha", buf, sizeof buf), 3);
  EXPECT_EQ(std::string(buf, 3), "one");
  EXPECT_EQ(::getxattr(path.c_str(), "user.beta", nullptr, 0), 4);  // size query
  const ssize_t n = ::listxattr(path.c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0);
  std::set<std::string> names;
  for (const char* p = buf; p < buf + n; p += std::strlen(p) + 1) names.insert(p);
  EXPECT_TRUE(names.count("user.alpha"));
  EXPECT_TRUE(names.count("user.beta"));
  EXPECT_ERRNO(EEXIST, ::setxattr(path.c_str(), "user.alpha", "x", 1, XATTR_CREATE));
  EXPECT_ERRNO(ENODATA, ::setxattr(path.c_str(), "user.gamma", "x", 1, XATTR_REPLACE));
  ASSERT_SYS_OK(::setxattr(path.c_str(), "user.alpha", "uno", 3, XATTR_REPLACE));
  // In the backing file.
  char bbuf[16] = {};
  ASSERT_EQ(::getxattr(B(F("xattr")).c_str(), "user.alpha", bbuf, sizeof bbuf), 3);
  EXPECT_EQ(std::string(bbuf, 3), "uno");
  ASSERT_SYS_OK(::removexattr(path.c_str(), "user.alpha"));
  EXPECT_ERRNO(ENODATA, ::getxattr(path.c_str(), "user.alpha", buf, sizeof buf));
  EXPECT_ERRNO(ENODATA, ::removexattr(path.c_str(), "user.alpha"));
  EXPECT_ERRNO(ENODATA, ::getxattr(B(F("xattr")).c_str(), "user.alpha", buf, sizeof buf));
}

TEST_P(PosixTest, UserXattrsOnDirectories) {
  ASSERT_SYS_OK(::mkdir(Mnt("xd").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("xd/" + F("f")), "f"));  // routed: xd spans two branches
  ASSERT_SYS_OK(::setxattr(Mnt("xd").c_str(), "user.dir", "value", 5, 0));
  char buf[64] = {};
  ASSERT_EQ(::getxattr(Mnt("xd").c_str(), "user.dir", buf, sizeof buf), 5);
  EXPECT_EQ(std::string(buf, 5), "value");
  ASSERT_SYS_OK(::removexattr(Mnt("xd").c_str(), "user.dir"));
  EXPECT_ERRNO(ENODATA, ::getxattr(Mnt("xd").c_str(), "user.dir", buf, sizeof buf));
  for (int b = 0; b < 3; ++b) {
    if (Exists(InBacking(b, "xd"))) {
      EXPECT_ERRNO(ENODATA, ::getxattr(InBacking(b, "xd").c_str(), "user.dir", buf, sizeof buf));
    }
  }
}

// Only regular files and directories carry xattrs through the mount; the daemon
// knows a node's type from when it made the node and never asks the inode again.
TEST_P(PosixTest, XattrsOfSymlinksAndFifosAreNotSupported) {
  const std::string link = Mnt(F("xlink"));
  const std::string fifo = Mnt(F("xfifo"));
  ASSERT_SYS_OK(::symlink("nowhere", link.c_str()));
  ASSERT_SYS_OK(::mkfifo(fifo.c_str(), 0644));
  char buf[16] = {};
  // trusted.*: user.* the kernel refuses on such inodes before asking us.
  for (const std::string& p : {link, fifo}) {
    SCOPED_TRACE(p);
    EXPECT_ERRNO(ENOTSUP, ::lsetxattr(p.c_str(), "trusted.t", "v", 1, 0));
    EXPECT_ERRNO(ENOTSUP, ::lgetxattr(p.c_str(), "trusted.t", buf, sizeof buf));
  }
  // A file being written: its xattrs, times and mode go through the open data.
  const std::string file = Mnt(F("xopen"));
  const int fd = ::open(file.c_str(), O_CREAT | O_EXCL | O_RDWR, 0644);
  ASSERT_SYS_OK(fd);
  ASSERT_EQ(::write(fd, "abc", 3), 3);
  ASSERT_SYS_OK(::fsetxattr(fd, "trusted.t", "v", 1, 0));
  EXPECT_EQ(::fgetxattr(fd, "trusted.t", buf, sizeof buf), 1);
  const timespec times[2] = {{1500000000, 0}, {1500000001, 0}};
  ASSERT_SYS_OK(::futimens(fd, times));
  ASSERT_SYS_OK(::fchmod(fd, 0600));
  ::close(fd);
  struct stat st {};
  ASSERT_SYS_OK(::stat(file.c_str(), &st));
  EXPECT_EQ(st.st_mtim.tv_sec, 1500000001);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_size, 3);
}

// ---------------------------------------------------------------------------
// statfs, readdir

TEST_P(PosixTest, StatfsReportsTheBackingFilesystem) {
  struct statvfs m {}, b {};
  ASSERT_SYS_OK(::statvfs(Mnt().c_str(), &m));
  ASSERT_SYS_OK(::statvfs(Backing(0).c_str(), &b));
  EXPECT_GT(m.f_blocks, 0u);
  EXPECT_EQ(m.f_blocks * m.f_frsize, b.f_blocks * b.f_frsize);
  EXPECT_EQ(m.f_namemax, 255u);
  EXPECT_GT(m.f_bavail, 0u);
}

TEST_P(PosixTest, ReaddirIsStableWhileFilesAreCreated) {
  ASSERT_SYS_OK(::mkdir(Mnt("rd").c_str(), 0755));
  std::set<std::string> pre;
  for (int i = 0; i < 300; ++i) {
    const std::string name = F("pre-" + std::to_string(i));
    ASSERT_TRUE(WriteFile(Mnt("rd/" + name), ""));
    pre.insert(name);
  }
  std::atomic<bool> stop{false};
  std::atomic<int> created{0};
  std::thread creator([&] {
    for (int i = 0; i < 1500 && !stop.load(); ++i) {
      if (!WriteFile(Mnt("rd/" + F("new-" + std::to_string(i))), "")) break;
      created.fetch_add(1);
    }
  });
  int listings = 0;
  while (listings < 30 && (listings < 5 || created.load() < 1500)) {
    const auto v = ListDir(Mnt("rd"));
    const std::set<std::string> s(v.begin(), v.end());
    ++listings;
    EXPECT_EQ(s.size(), v.size()) << "duplicate names in listing " << listings;
    for (const std::string& name : pre) {
      if (!s.count(name)) {
        ADD_FAILURE() << "pre-existing " << name << " missing from listing " << listings;
        break;
      }
    }
    if (::testing::Test::HasFailure()) break;
  }
  stop.store(true);
  creator.join();
  const auto v = ListDir(Mnt("rd"));
  EXPECT_EQ(v.size(), 300u + static_cast<size_t>(created.load()));
  EXPECT_EQ(std::set<std::string>(v.begin(), v.end()).size(), v.size());
}

TEST_P(PosixTest, ReaddirSeesAllEntriesOfLargeDirectory) {
  ASSERT_SYS_OK(::mkdir(Mnt("big").c_str(), 0755));
  std::set<std::string> want;
  for (int i = 0; i < 2000; ++i) {
    const std::string name = F("entry-with-a-longish-name-" + std::to_string(i));
    ASSERT_TRUE(WriteFile(Mnt("big/" + name), ""));
    want.insert(name);
  }
  const auto v = ListDir(Mnt("big"));
  EXPECT_EQ(v.size(), want.size());
  EXPECT_EQ(std::set<std::string>(v.begin(), v.end()), want);
  // Offsets survive seekdir/telldir.
  DIR* dp = ::opendir(Mnt("big").c_str());
  ASSERT_NE(dp, nullptr);
  for (int i = 0; i < 700; ++i) ASSERT_NE(::readdir(dp), nullptr);
  const long pos = ::telldir(dp);
  std::vector<std::string> tail1, tail2;
  while (dirent* de = ::readdir(dp)) tail1.push_back(de->d_name);
  ::seekdir(dp, pos);
  while (dirent* de = ::readdir(dp)) tail2.push_back(de->d_name);
  ::closedir(dp);
  EXPECT_EQ(tail1, tail2);
}

// ---------------------------------------------------------------------------
// unlink, mkdir, rmdir

TEST_P(PosixTest, UnlinkedOpenFileStaysReadable) {
  const std::string path = Mnt(F("doomed"));
  const std::string data = Pattern(20000, 6);
  ASSERT_TRUE(WriteFile(path, data));
  // Opened but never read before the unlink.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  Fd rw(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(rw.valid());
  ASSERT_SYS_OK(::unlink(path.c_str()));
  EXPECT_ERRNO(ENOENT, ::access(path.c_str(), F_OK));
  EXPECT_FALSE(Exists(B(F("doomed"))));
  EXPECT_FALSE(ListDirSet(Mnt()).count(F("doomed")));
  std::string got(data.size(), '\0');
  ASSERT_EQ(::pread(fd.get(), got.data(), got.size(), 0), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(got, data);
  struct stat st {};
  ASSERT_SYS_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(st.st_nlink, 0u);
  // Still writable through the other descriptor.
  ASSERT_EQ(::pwrite(rw.get(), "NEW", 3, 0), 3);
  char buf[3];
  ASSERT_EQ(::pread(fd.get(), buf, 3, 0), 3);
  EXPECT_EQ(std::string(buf, 3), "NEW");
  // The name is free again.
  ASSERT_TRUE(WriteFile(path, "reborn", O_WRONLY | O_CREAT | O_EXCL));
  EXPECT_EQ(ReadFile(path), "reborn");
  ASSERT_EQ(::pread(fd.get(), buf, 3, 0), 3);
  EXPECT_EQ(std::string(buf, 3), "NEW");
}

TEST_P(PosixTest, MkdirRmdir) {
  const std::string d = Mnt("dir");
  ASSERT_SYS_OK(::mkdir(d.c_str(), 0750));
  EXPECT_ERRNO(EEXIST, ::mkdir(d.c_str(), 0750));
  struct stat st {};
  ASSERT_SYS_OK(::stat(d.c_str(), &st));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  ASSERT_TRUE(WriteFile(Mnt("dir/" + F("f")), "f"));
  EXPECT_ERRNO(ENOTEMPTY, ::rmdir(d.c_str()));
  // A failed rmdir leaves the directory (and its contents) whole.
  EXPECT_EQ(ReadFile(Mnt("dir/" + F("f"))), "f");
  EXPECT_TRUE(Exists(B0("dir")));
  EXPECT_ERRNO(ENOTDIR, ::rmdir(Mnt("dir/" + F("f")).c_str()));
  EXPECT_ERRNO(EISDIR, ::unlink(d.c_str()));
  ASSERT_SYS_OK(::unlink(Mnt("dir/" + F("f")).c_str()));
  ASSERT_SYS_OK(::rmdir(d.c_str()));
  EXPECT_ERRNO(ENOENT, ::stat(d.c_str(), &st));
  for (int b = 0; b < 3; ++b) EXPECT_FALSE(Exists(InBacking(b, "dir"))) << "b" << b;
  EXPECT_ERRNO(ENOENT, ::rmdir(d.c_str()));
  // And it can be made again.
  ASSERT_SYS_OK(::mkdir(d.c_str(), 0755));
  EXPECT_TRUE(ListDir(d).empty());
}

// ---------------------------------------------------------------------------
// persistence and restart

TEST_P(PosixTest, ContentsPersistInBackingDirAfterUnmount) {
  const std::string data = Pattern(300000, 7);
  ASSERT_TRUE(WriteFile(Mnt(F("persist")), data));
  ASSERT_SYS_OK(::mkdir(Mnt("pd").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("pd/" + F("inner")), "inner"));
  ASSERT_SYS_OK(::symlink("target", Mnt(F("plink")).c_str()));
  // Written and not closed by a flush: a descriptor still open at unmount time.
  Fd open_fd(::open(Mnt(F("late")).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  ASSERT_TRUE(open_fd.valid());
  ASSERT_EQ(::write(open_fd.get(), "late data", 9), 9);
  open_fd.reset();
  ASSERT_TRUE(mount().Stop());
  EXPECT_FALSE(IsAnythingMounted(Mnt()));
  EXPECT_EQ(ReadFile(B(F("persist"))), data);
  EXPECT_EQ(ReadFile(B("pd/" + F("inner"))), "inner");
  EXPECT_EQ(ReadFile(B(F("late"))), "late data");
  char buf[32] = {};
  EXPECT_EQ(::readlink(B(F("plink")).c_str(), buf, sizeof buf), 6);
  // Nothing leaks into the (now empty) mountpoint directory.
  EXPECT_TRUE(ListDir(Mnt()).empty());
}

TEST_P(PosixTest, SurvivesDaemonRestart) {
  if (GetParam().discard) GTEST_SKIP() << "discard mode keeps nothing (test_discard.cc)";
  const std::string data = Pattern(50000, 8);
  ASSERT_SYS_OK(::mkdir(Mnt("r").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("r/" + F("kept")), data));
  ASSERT_SYS_OK(::setxattr(Mnt("r/" + F("kept")).c_str(), "user.k", "v", 1, 0));
  struct stat before {};
  ASSERT_SYS_OK(::stat(Mnt("r/" + F("kept")).c_str(), &before));
  ASSERT_TRUE(mount().Restart());
  EXPECT_EQ(ReadFile(Mnt("r/" + F("kept"))), data);
  struct stat after {};
  ASSERT_SYS_OK(::stat(Mnt("r/" + F("kept")).c_str(), &after));
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  char v[4] = {};
  EXPECT_EQ(::getxattr(Mnt("r/" + F("kept")).c_str(), "user.k", v, sizeof v), 1);
  EXPECT_EQ(ListDirSet(Mnt("r")), (std::set<std::string>{F("kept")}));
  ASSERT_TRUE(WriteFile(Mnt("r/" + F("after")), "after restart"));
  EXPECT_EQ(ReadFile(B("r/" + F("after"))), "after restart");
}

INSTANTIATE_TEST_SUITE_P(Layouts, PosixTest,
                         ::testing::Values(kSingle, kRouted, kDiscard, kDiscardRouted, kWriteback,
                                           kWritebackRouted),
                         LayoutName);

// ---------------------------------------------------------------------------
// readonly mode

class ReadonlyTest : public MountTest, public ::testing::WithParamInterface<Layout> {
 protected:
  void SetUp() override {
    const int b = GetParam().landing;
    temp_.MakeDir("backing/b0/dir");
    temp_.MakeDir("backing/b" + std::to_string(b) + "/dir");
    ASSERT_TRUE(WriteFile(InBacking(b, F("file")), "read me"));
    ASSERT_TRUE(WriteFile(InBacking(b, "dir/" + F("inner")), "inner"));
    ASSERT_SYS_OK(::setxattr(InBacking(b, F("file")).c_str(), "user.k", "v", 1, 0));
    ASSERT_SYS_OK(::symlink(F("file").c_str(), InBacking(b, F("link")).c_str()));
    std::vector<std::string> args = GetParam().routed ? RoutedArgs() : SingleArgs();
    args.insert(args.end(), {"--write-mode", "readonly"});
    ASSERT_TRUE(StartMount(args));
    for (int i = 0; i < 3; ++i) before_.push_back(SnapshotTree(Backing(i)));
  }
  std::string F(std::string_view base) const { return std::string(base) + GetParam().suffix; }

  std::vector<std::map<std::string, std::string>> before_;
};

TEST_P(ReadonlyTest, ReadsWork) {
  EXPECT_EQ(ReadFile(Mnt(F("file"))), "read me");
  EXPECT_EQ(ReadFile(Mnt("dir/" + F("inner"))), "inner");
  EXPECT_EQ(ReadFile(Mnt(F("link"))), "read me");
  EXPECT_EQ(ListDirSet(Mnt()), (std::set<std::string>{"dir", F("file"), F("link")}));
  char v[4] = {};
  EXPECT_EQ(::getxattr(Mnt(F("file")).c_str(), "user.k", v, sizeof v), 1);
  Fd fd(::open(Mnt(F("file")).c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  void* p = ::mmap(nullptr, 7, PROT_READ, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED);
  EXPECT_EQ(std::memcmp(p, "read me", 7), 0);
  ::munmap(p, 7);
}

TEST_P(ReadonlyTest, EveryChangeFailsWithErofs) {
  const std::string file = Mnt(F("file"));
  EXPECT_ERRNO(EROFS, ::open(Mnt(F("new")).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  EXPECT_ERRNO(EROFS, ::open(file.c_str(), O_WRONLY | O_CLOEXEC));
  EXPECT_ERRNO(EROFS, ::open(file.c_str(), O_RDWR | O_CLOEXEC));
  EXPECT_ERRNO(EROFS, ::open(file.c_str(), O_RDONLY | O_TRUNC | O_CLOEXEC));
  EXPECT_ERRNO(EROFS, ::mkdir(Mnt("newdir").c_str(), 0755));
  EXPECT_ERRNO(EROFS, ::unlink(file.c_str()));
  EXPECT_ERRNO(EROFS, ::rmdir(Mnt("dir").c_str()));
  EXPECT_ERRNO(EROFS, ::rename(file.c_str(), Mnt(F("renamed")).c_str()));
  EXPECT_ERRNO(EROFS, ::rename(Mnt("dir").c_str(), Mnt("dir2").c_str()));
  EXPECT_ERRNO(EROFS, ::chmod(file.c_str(), 0600));
  EXPECT_ERRNO(EROFS, ::chown(file.c_str(), 1, 1));
  EXPECT_ERRNO(EROFS, ::utimensat(AT_FDCWD, file.c_str(), nullptr, 0));
  EXPECT_ERRNO(EROFS, ::setxattr(file.c_str(), "user.x", "1", 1, 0));
  EXPECT_ERRNO(EROFS, ::removexattr(file.c_str(), "user.k"));
  EXPECT_ERRNO(EROFS, ::truncate(file.c_str(), 0));
  EXPECT_ERRNO(EROFS, ::symlink("x", Mnt(F("newlink")).c_str()));
  EXPECT_ERRNO(EROFS, ::link(file.c_str(), Mnt(F("hard")).c_str()));
  EXPECT_ERRNO(EROFS, ::mknod(Mnt(F("fifo")).c_str(), S_IFIFO | 0644, 0));
  EXPECT_ERRNO(EROFS, ::chmod(Mnt("dir").c_str(), 0700));
  // A read-only descriptor cannot be turned into a writer.
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  EXPECT_ERRNO(EBADF, ::write(fd.get(), "x", 1));
  EXPECT_ERRNO(EROFS, ::fchmod(fd.get(), 0600));
  // Nothing changed anywhere.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(SnapshotTree(Backing(i)), before_[i]) << "b" << i;
  EXPECT_EQ(ReadFile(file), "read me");
}

INSTANTIATE_TEST_SUITE_P(Layouts, ReadonlyTest, ::testing::Values(kSingle, kRouted), LayoutName);

}  // namespace
}  // namespace cachefs_test

// The prefetcher (fs/prefetch.h): when the daemon lists a directory, background
// threads read its subdirectories and, while the mount is being read, small
// files ahead of the reader. It must do that (the counters in the stats show
// it), read no data for a walk that reads none, change nothing a client sees,
// and stay off when asked. Confinement (symlinks, FIFOs) is in test_confinement.cc.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "mount_fixture.h"

namespace cachefs_test {
namespace {

using namespace std::chrono_literals;

class PrefetchTest : public MountTest {
 protected:
  // rel/d0 .. d{dirs-1}, each with `files` files and a subdirectory s holding one.
  void MakeTree(const std::string& rel, int dirs, int files) {
    for (int d = 0; d < dirs; ++d) {
      const std::string dir = rel + "/d" + std::to_string(d);
      temp_.MakeDir("backing/b0/" + dir + "/s");
      for (int f = 0; f < files; ++f) {
        const std::string name = dir + "/f" + std::to_string(f);
        ASSERT_TRUE(WriteFile(InBacking(0, name), Content(name)));
      }
      ASSERT_TRUE(WriteFile(InBacking(0, dir + "/s/deep"), Content(dir + "/s/deep")));
    }
  }
  static std::string Content(const std::string& name) {
    return name + ":" + Pattern(3000 + name.size() * 37, static_cast<unsigned>(name.size()));
  }
  uint64_t Count(const char* name) { return Counter(Stats(), name); }
  // Lists every directory below Mnt(rel), reading no data.
  void Walk(const std::string& rel) {
    for (const std::string& name : ListDir(Mnt(rel))) {
      struct stat st {};
      ASSERT_SYS_OK(::lstat(Mnt(rel + "/" + name).c_str(), &st));
      if (S_ISDIR(st.st_mode)) Walk(rel + "/" + name);
    }
  }
  // Reads every file below Mnt(rel), directory by directory, like a build.
  void ReadAll(const std::string& rel) {
    for (const std::string& name : ListDir(Mnt(rel))) {
      const std::string path = rel + "/" + name;
      struct stat st {};
      ASSERT_SYS_OK(::lstat(Mnt(path).c_str(), &st));
      if (S_ISDIR(st.st_mode)) {
        ReadAll(path);
      } else {
        EXPECT_EQ(ReadFile(Mnt(path)), Content(path.substr(1))) << path;
      }
    }
  }
};

TEST_F(PrefetchTest, ListingReadsSubdirectoriesAheadAndReadingReadsFilesAhead) {
  MakeTree("walked", 40, 2);
  MakeTree("read", 40, 6);
  ASSERT_TRUE(StartMount(SingleArgs()));
  // A walk: the subdirectories of every listed directory are read ahead, but no
  // data, because nothing is being read.
  Walk("/walked");
  EXPECT_GE(WaitForCounter("prefetch_dirs", 40), 40u) << Stats();
  EXPECT_EQ(Count("prefetch_files"), 0u) << "a walk read data ahead: " << Stats();
  // Reading: once files are being read (one for every two listed, in a window
  // that forgets the walk), the data of small files in listed directories follows.
  ReadAll("/read");
  EXPECT_GT(WaitForCounter("prefetch_files", 1), 0u) << Stats();
  // The prefetcher only warms the backing page cache: a file changed in the
  // backing tree after its directory was read ahead (and before any client
  // opened it) reads back as changed. Same size, as the walk cached the size.
  std::string changed = Content("walked/d7/f1");
  std::reverse(changed.begin(), changed.end());
  ASSERT_TRUE(WriteFile(InBacking(0, "walked/d7/f1"), changed));
  EXPECT_EQ(ReadFile(Mnt("walked/d7/f1")), changed);
}

TEST_F(PrefetchTest, ZeroThreadsReadsNothingAhead) {
  MakeTree("t", 30, 2);
  std::vector<std::string> args = SingleArgs();
  args.insert(args.end(), {"--prefetch-threads", "0"});
  ASSERT_TRUE(StartMount(args));
  ReadAll("/t");
  Walk("/t");
  std::this_thread::sleep_for(200ms);
  const std::string stats = Stats();
  EXPECT_EQ(Counter(stats, "prefetch_dirs"), 0u) << stats;
  EXPECT_EQ(Counter(stats, "prefetch_files"), 0u) << stats;
  EXPECT_EQ(Counter(stats, "files_read"), 90u) << stats;  // 30 x (2 + s/deep)
}

// Directories removed or replaced behind the mount while their read-ahead is
// queued: the jobs fail quietly or read the new ones, and the mount keeps
// answering.
TEST_F(PrefetchTest, TreeChangingUnderTheReadAheadIsHarmless) {
  MakeTree("t", 60, 2);
  ASSERT_TRUE(StartMount(SingleArgs()));
  ASSERT_TRUE(WriteFile(Mnt("first"), "x"));
  EXPECT_EQ(ReadFile(Mnt("first")), "x");  // data wanted from here on
  for (int round = 0; round < 3; ++round) {
    const std::string top = "t" + std::to_string(round);
    ASSERT_SYS_OK(::rename(InBacking(0, round == 0 ? "t" : "t" + std::to_string(round - 1)).c_str(),
                           InBacking(0, top).c_str()));
    EXPECT_EQ(ListDirSet(Mnt(top)).size(), 60u);
    for (int d = 0; d < 60; d += 2) {
      const std::string dir = top + "/d" + std::to_string(d);
      EXPECT_EQ(RunCommand({"rm", "-rf", InBacking(0, dir)}).status, 0);
      if (d % 4 == 0) {
        ASSERT_SYS_OK(::symlink(Outside().c_str(), InBacking(0, dir).c_str()));
      } else {
        ASSERT_SYS_OK(::mkfifo(InBacking(0, dir).c_str(), 0644));
      }
    }
  }
  EXPECT_EQ(ListDirSet(Mnt("t2")).size(), 60u);
  EXPECT_EQ(ReadFile(Mnt("t2/d1/f0")), Content("t/d1/f0"));
  EXPECT_FALSE(mount().EndedUnexpectedly().has_value());
  EXPECT_TRUE(mount().Stop());  // no worker is stuck on a FIFO
}

}  // namespace
}  // namespace cachefs_test

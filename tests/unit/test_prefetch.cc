// The prefetcher's policy and its jobs, without a mount: when data is read
// ahead (Prefetcher::want_data), and what a job reads from a real directory.
// The mount-level behaviour is in tests/mount/test_prefetch.cc.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "fs/prefetch.h"

namespace cachefs {
namespace {

TEST(Prefetcher, AWalkReadsNoDataAndReadingTurnsDataOn) {
  Prefetcher p(1, 1 << 20);
  EXPECT_FALSE(p.want_data());                    // nothing read yet
  for (int d = 0; d < 50; ++d) p.note_listed(4);  // find over 200 files
  EXPECT_FALSE(p.want_data());
  // A build starts reading, directory by directory: within a window the walk is
  // forgotten enough for data to follow.
  bool on = false;
  for (int d = 0; d < 100 && !on; ++d) {
    p.note_listed(4);
    for (int f = 0; f < 4; ++f) p.note_first_read();
    on = p.want_data();
  }
  EXPECT_TRUE(on);
  // And a walk after it turns data off again.
  for (int d = 0; d < 200; ++d) p.note_listed(4);
  EXPECT_FALSE(p.want_data());
}

TEST(Prefetcher, ReadingOneFileInThreeIsNotEnough) {
  Prefetcher p(1, 1 << 20);
  for (int d = 0; d < 500; ++d) {
    p.note_listed(3);
    p.note_first_read();
  }
  EXPECT_FALSE(p.want_data());
  for (int d = 0; d < 500; ++d) {
    p.note_listed(2);
    p.note_first_read();
  }
  EXPECT_TRUE(p.want_data());
}

TEST(Prefetcher, AJobKeepsAtMostKMaxNamesOfEachKind) {
  Prefetcher::Job job;
  for (size_t i = 0; i < Prefetcher::kMaxNames + 100; ++i) {
    job.add(false, "f" + std::to_string(i));
    job.add(true, "d" + std::to_string(i));
  }
  EXPECT_EQ(job.files.size(), Prefetcher::kMaxNames);
  EXPECT_EQ(job.dirs.size(), Prefetcher::kMaxNames);
  EXPECT_EQ(job.files.front(), "f0");  // the first ones: a reader starts there
}

class PrefetcherJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cachefs-prefetch.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void Write(const std::string& rel, size_t bytes) {
    std::filesystem::create_directories(std::filesystem::path(root_ + "/" + rel).parent_path());
    std::ofstream(root_ + "/" + rel) << std::string(bytes, 'x');
  }
  // The job of a listing of `rel`, as ops::readdir makes it (with the
  // directory's inode).
  Prefetcher::Job JobFor(const std::string& rel) {
    Prefetcher::Job job;
    job.dir = UniqueFd(::open((root_ + "/" + rel).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat st {};
    EXPECT_EQ(::fstat(job.dir.get(), &st), 0);
    job.dev = st.st_dev;
    job.ino = st.st_ino;
    for (const auto& e : std::filesystem::directory_iterator(root_ + "/" + rel)) {
      if (e.is_symlink()) continue;
      (e.is_directory() ? job.dirs : job.files).push_back(e.path().filename());
    }
    return job;
  }
  static void WaitFor(const std::function<bool()>& done) {
    for (int i = 0; i < 400 && !done(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  static size_t OpenFds() {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
  }
  std::string root_;
};

TEST_F(PrefetcherJobTest, ReadsSubdirectoriesAndOnlySmallRegularFiles) {
  Write("top/a/small1", 100);
  Write("top/a/small2", 100);
  Write("top/a/big", 2 << 20);  // over the limit: left to the kernel
  Write("top/a/empty", 0);
  Write("top/b/x", 10);
  Write("top/here", 10);
  ASSERT_EQ(::mkfifo((root_ + "/top/a/fifo").c_str(), 0644), 0);
  ASSERT_EQ(::symlink((root_ + "/top/b").c_str(), (root_ + "/top/a/link").c_str()), 0);
  Prefetcher p(2, 1 << 20);
  p.start();
  p.note_listed(1);
  p.note_first_read();  // data wanted
  p.submit(JobFor("top"));
  WaitFor([&] { return p.dirs_read() >= 2 && p.files_read() >= 4; });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(p.dirs_read(), 2u);   // a and b; the symlink in a is not a directory
  EXPECT_EQ(p.files_read(), 4u);  // here, a/small1, a/small2, b/x
  p.stop();                       // nothing blocked on the FIFO
}

// The reader lists a directory whose files a worker read ahead when it read the
// directory as a subdirectory: its job does not read them a second time, nor
// the other way round. Once only; a directory never read ahead has its files
// read.
TEST_F(PrefetcherJobTest, FilesReadAheadWithTheirDirectoryAreNotReadAgain) {
  Write("top/a/f1", 100);
  Write("top/a/f2", 100);
  Write("other/g", 100);
  Prefetcher p(1, 1 << 20);
  p.start();
  p.note_listed(1);
  p.note_first_read();
  p.submit(JobFor("top"));
  WaitFor([&] { return p.files_read() >= 2; });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(p.files_read(), 2u);
  p.submit(JobFor("top/a"));  // the reader got to a
  p.submit(JobFor("other"));  // never read ahead
  WaitFor([&] { return p.files_read() >= 3; });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(p.files_read(), 3u) << "a's files read again, or other's not read";
  p.submit(JobFor("top/a"));  // a second listing of a
  WaitFor([&] { return p.files_read() >= 5; });
  EXPECT_EQ(p.files_read(), 5u);
  // The other way round: the reader lists c before a worker reads it ahead.
  Write("up/c/h1", 100);
  Write("up/c/h2", 100);
  p.submit(JobFor("up/c"));
  WaitFor([&] { return p.files_read() >= 7; });
  p.submit(JobFor("up"));
  WaitFor([&] { return p.dirs_read() >= 2; });  // a, and now c
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(p.dirs_read(), 2u);
  EXPECT_EQ(p.files_read(), 7u) << "c's files read again";
  p.stop();
}

// A subdirectory with more entries than a worker looks at: it reads ahead the
// first kMaxNames and leaves the rest to the client.
TEST_F(PrefetcherJobTest, AHugeSubdirectoryIsReadAheadOnlyInPart) {
  const size_t n = Prefetcher::kMaxNames + 500;
  for (size_t i = 0; i < n; ++i) Write("top/big/f" + std::to_string(i), 1);
  Prefetcher p(1, 1 << 20);
  p.start();
  p.note_listed(1);
  p.note_first_read();
  p.submit(JobFor("top"));
  WaitFor([&] { return p.files_read() >= Prefetcher::kMaxNames; });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  p.stop();
  EXPECT_EQ(p.dirs_read(), 1u);
  EXPECT_EQ(p.files_read(), Prefetcher::kMaxNames);
}

// stop() at unmount meets workers in the middle of a job: they leave it
// between subdirectories (the TSan build checks the flag they read there).
TEST_F(PrefetcherJobTest, StopInTheMiddleOfAJobEndsIt) {
  for (int d = 0; d < 2000; ++d) Write("top/d" + std::to_string(d) + "/f", 10);
  Prefetcher p(2, 1 << 20);
  p.start();
  p.submit(JobFor("top"));
  p.submit(JobFor("top"));
  WaitFor([&] { return p.dirs_read() > 0; });
  p.stop();
  const uint64_t at_stop = p.dirs_read();
  EXPECT_GT(at_stop, 0u);
  EXPECT_LT(at_stop, 4000u);  // it did not run both jobs to the end
}

TEST_F(PrefetcherJobTest, ZeroThreadsTakesNoJobsAndStopDropsTheQueue) {
  Write("top/a/f", 10);
  Prefetcher off(0, 1 << 20);
  EXPECT_FALSE(off.enabled());
  off.start();
  off.submit(JobFor("top"));
  off.stop();
  EXPECT_EQ(off.dirs_read(), 0u);
  // Never started: jobs wait in the queue, at most 64 of them (each holds a
  // descriptor, counted against the daemon's budget), and stop() drops them
  // with their descriptors.
  const size_t before = OpenFds();
  Prefetcher idle(1, 1 << 20);
  for (int i = 0; i < 200; ++i) idle.submit(JobFor("top"));
  EXPECT_EQ(OpenFds(), before + 64);
  idle.stop();
  EXPECT_EQ(OpenFds(), before);
  EXPECT_EQ(idle.dirs_read(), 0u);
}

}  // namespace
}  // namespace cachefs

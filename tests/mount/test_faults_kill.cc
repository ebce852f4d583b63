// Faults, for real: kill -9 of the daemon in the middle of an untar and of
// dedup, and kill -9 of `cachectl import`, at random points. After each: the
// dead mount goes with `fusermount3 -u`, the next start works, `cachectl verify`
// is clean, and every file whose writer saw fsync and close succeed before the
// kill has its content. (Full disks and vanishing backing directories:
// test_faults.cc.)
//
// CACHEFS_FAULT_TRIALS (default 5) sets the number of kills per kind;
// scripts/long-tests.sh runs 50.
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

// A source tree with duplicates (so dedup has work during the untar), tarred.
struct TarSource {
  std::map<std::string, std::string> files;  // relative path -> content
  std::string archive;
};

TarSource MakeTarSource(const TempArea& temp) {
  TarSource s;
  const std::string src = temp.MakeDir("src");
  for (int d = 0; d < 8; ++d) {
    const std::string dir = "pkg" + std::to_string(d);
    temp.MakeDir("src/" + dir);
    for (int f = 0; f < 40; ++f) {
      const size_t size = static_cast<size_t>((f * 7919 + d * 104729) % 150'000);
      const uint64_t seed = f % 3 == 0 ? 1000 + static_cast<uint64_t>(f % 5)  // shared
                                       : static_cast<uint64_t>(d * 100 + f);
      const std::string rel = dir + "/f" + std::to_string(f);
      s.files[rel] = Bytes(size, seed);
      WriteFile(src + "/" + rel, s.files[rel]);
    }
  }
  s.archive = temp.Path("tree.tar");
  RunCommand({"tar", "cf", s.archive, "-C", src, "."});
  return s;
}

// kill -9 during `tar xf` into the mount (dedup at work on what lands) while
// another writer records each file it saw fsync'ed and closed.
TEST_F(FaultTest, KillDuringUntarLosesNothingSyncedAndMixesNothing) {
  const TarSource src = MakeTarSource(temp_);
  ASSERT_TRUE(Exists(src.archive));
  size_t complete_tar_files = 0, partial_tar_files = 0, synced_files = 0;
  for (int trial = 0; trial < Trials(); ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    ASSERT_TRUE(mounts_.empty() ? StartMount(DedupArgs()) : mount().Start());
    const std::string t = "t" + std::to_string(trial);
    ASSERT_SYS_OK(::mkdir(Mnt(t).c_str(), 0755));
    ASSERT_SYS_OK(::mkdir(Mnt(t + "/tar").c_str(), 0755));
    ASSERT_SYS_OK(::mkdir(Mnt(t + "/own").c_str(), 0755));
    const pid_t tar = Spawn({"tar", "xf", src.archive, "-C", Mnt(t + "/tar")},
                            temp_.Path("logs/tar.log"));
    std::atomic<int> done{0};
    std::thread writer([&] {
      for (int i = 0; i < 100'000; ++i) {
        if (!WriteSynced(Mnt(t + "/own/f" + std::to_string(i)), Bytes(1000 + (i % 50) * 997, i % 7)))
          return;
        done.store(i + 1);
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(RandomMs(30, 600)));
    mount().Kill();
    writer.join();
    Reap(tar, 20'000);
    Unmount(Mnt());
    // Each file fsync'ed and closed before the kill is whole.
    for (int i = 0; i < done.load(); ++i) {
      const std::string p = InBacking(0, t + "/own/f" + std::to_string(i));
      ASSERT_TRUE(ReadFile(p) == Bytes(1000 + (i % 50) * 997, i % 7)) << p;
    }
    synced_files += static_cast<size_t>(done.load());
    // What tar left holds only its own bytes (or holes not yet written): never
    // another file's content, never past its size.
    Walk(InBacking(0, t + "/tar"), "", [&](const std::string& rel) {
      const auto it = src.files.find(rel.starts_with("./") ? rel.substr(2) : rel);
      ASSERT_NE(it, src.files.end()) << "tar left a file it never had: " << rel;
      const auto got = ReadFile(InBacking(0, t + "/tar/" + rel));
      ASSERT_TRUE(got.has_value()) << rel;
      ASSERT_LE(got->size(), it->second.size()) << rel;
      for (size_t i = 0; i < got->size(); ++i) {
        if ((*got)[i] != it->second[i] && (*got)[i] != '\0') {
          FAIL() << rel << ": byte " << i << " is not this file's";
        }
      }
      (got->size() == it->second.size() ? complete_tar_files : partial_tar_files)++;
    });
    ExpectVerifyClean("after kill -9 during untar");
  }
  // The next start works, and the files read back through it.
  ASSERT_TRUE(mount().Start());
  EXPECT_EQ(ReadFile(Mnt("t0/own/f0")), Bytes(1000, 0));
  ASSERT_TRUE(mount().Stop());
  EXPECT_TRUE(ListDir(InBacking(0, ".cachefs/tmp")).empty());
  ExpectVerifyClean("at the end");
  std::printf("[ figures ] untar kills: %d; synced files checked: %zu; tar files complete: %zu, partial: %zu\n",
              Trials(), synced_files, complete_tar_files, partial_tar_files);
}

// kill -9 while the dedup worker hashes, compares and swaps large, mostly
// identical files that were all fsync'ed and closed: nothing is lost, no object
// is damaged, and the next start clears what the dead daemon left in tmp/.
TEST_F(FaultTest, KillDuringDedupLosesNothing) {
  std::vector<std::string> contents;
  for (int i = 0; i < 4; ++i) contents.push_back(Bytes(1'500'000 + static_cast<size_t>(i) * 100'000, 50 + i));
  size_t files_checked = 0;
  int written_in_t0 = 0;
  for (int trial = 0; trial < Trials(); ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    ASSERT_TRUE(mounts_.empty() ? StartMount(DedupArgs()) : mount().Start());
    const std::string t = "t" + std::to_string(trial);
    ASSERT_SYS_OK(::mkdir(Mnt(t).c_str(), 0755));
    std::atomic<int> done{0};
    std::atomic<bool> stop{false};
    std::thread writer([&] {
      for (int i = 0; i < 10'000 && !stop.load(); ++i) {
        if (!WriteSynced(Mnt(t + "/f" + std::to_string(i)), contents[i % contents.size()])) return;
        done.store(i + 1);
      }
    });
    // Let some files land and dedup begin, then kill it mid-work.
    std::this_thread::sleep_for(std::chrono::milliseconds(RandomMs(100, 800)));
    mount().Kill();
    stop = true;
    writer.join();
    Unmount(Mnt());
    for (int i = 0; i < done.load(); ++i) {
      const std::string p = InBacking(0, t + "/f" + std::to_string(i));
      ASSERT_TRUE(ReadFile(p) == contents[i % contents.size()])
          << p << " (" << done.load() << " written), st_nlink " << Lstat(p).st_nlink;
    }
    files_checked += static_cast<size_t>(done.load());
    if (trial == 0) written_in_t0 = done.load();
    ExpectVerifyClean("after kill -9 during dedup");
  }
  ASSERT_TRUE(mount().Start());
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(ListDir(InBacking(0, ".cachefs/tmp")).empty());
  // Sharing is still invisible: a change through one path reaches no other
  // (when the first trial got as far as a second copy of f0 before its kill).
  if (written_in_t0 > 4) {
    ASSERT_TRUE(WriteFile(Mnt("t0/f0"), "changed"));
    EXPECT_EQ(ReadFile(Mnt("t0/f4")), contents[0]);
  }
  ASSERT_TRUE(mount().Stop());
  ExpectVerifyClean("at the end");
  std::printf("[ figures ] dedup kills: %d; files checked: %zu\n", Trials(), files_checked);
}

// kill -9 of `cachectl import` at random points: every file keeps its content,
// the store verifies, a mount works, and a second import finishes the job.
TEST_F(FaultTest, KillDuringImportLosesNothing) {
  std::map<std::string, std::string> files;
  for (int d = 0; d < 10; ++d) {
    ASSERT_SYS_OK(::mkdir(InBacking(0, "d" + std::to_string(d)).c_str(), 0755));
    for (int f = 0; f < 60; ++f) {
      const std::string rel = "d" + std::to_string(d) + "/f" + std::to_string(f);
      files[rel] = Bytes(2000 + static_cast<size_t>(f % 6) * 40'000, f % 6);  // 6 contents, 100 copies each
      ASSERT_TRUE(WriteFile(InBacking(0, rel), files[rel]));
    }
  }
  int killed_mid_run = 0;
  for (int trial = 0; trial < Trials(); ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    // A fresh copy of some files each round, so every import has work to do.
    for (int f = 0; f < 60; f += 7) {
      const std::string rel = "d" + std::to_string(trial % 10) + "/f" + std::to_string(f);
      ::unlink(InBacking(0, rel).c_str());
      ASSERT_TRUE(WriteFile(InBacking(0, rel), files[rel]));
    }
    const pid_t pid = Spawn({CACHECTL_BINARY, "--cache-dir=" + Backing(0), "import"},
                            temp_.Path("logs/import.log"));
    std::this_thread::sleep_for(std::chrono::milliseconds(RandomMs(2, 80)));
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == 0) {  // still running: kill it mid-run
      ++killed_mid_run;
      ::kill(pid, SIGKILL);
      Reap(pid, 10'000);
    }
    for (const auto& [rel, want] : files) {
      ASSERT_TRUE(ReadFile(InBacking(0, rel)) == want) << rel;
    }
    // Killed before it made the store, there is nothing to verify (the mount
    // below makes it; a layout without its marker is finished then).
    if (Exists(InBacking(0, ".cachefs/cachefs-store"))) ExpectVerifyClean("after kill -9 of import");
    ASSERT_TRUE(mounts_.empty() ? StartMount(DedupArgs()) : mount().Start());
    EXPECT_EQ(ReadFile(Mnt("d3/f5")), files["d3/f5"]);
    ASSERT_TRUE(mount().Stop());
  }
  const CommandResult r = Cachectl(Backing(0), {"import"});
  ASSERT_TRUE(r.Exited0()) << r.Describe();
  for (const auto& [rel, want] : files) ASSERT_TRUE(ReadFile(InBacking(0, rel)) == want) << rel;
  EXPECT_EQ(Lstat(InBacking(0, "d0/f1")).st_ino, Lstat(InBacking(0, "d9/f1")).st_ino)
      << "the finishing import shares identical files";
  ExpectVerifyClean("after the finishing import");
  std::printf("[ figures ] import kills: %d (%d while running)\n", Trials(), killed_mid_run);
}

}  // namespace
}  // namespace cachefs_test

// Load, checked against models: many writers and readers for a bounded time on
// one mount and on two mounts over one store, every path's last content known;
// an fsx-style run of random operations (write, truncate, mmap write, hole
// punching, rename) on one file, compared with an in-memory copy after each;
// and the daemon's memory while a large tree is looked up.
//
// CACHEFS_LOAD_SECONDS (default 4), CACHEFS_FSX_OPS (default 1500) and
// CACHEFS_RSS_FILES (default 200000) size them; scripts/long-tests.sh runs more.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include "reliability_util.h"

namespace cachefs_test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A version of a path's content: self-describing, so a reader can tell a whole
// version from a torn or foreign one.
std::string Version(int writer, int slot, uint64_t gen) {
  const std::string head = "w" + std::to_string(writer) + "/s" + std::to_string(slot) + "/g" +
                           std::to_string(gen) + "\n";
  return head + Bytes(100 + (gen * 7919) % 60'000, gen * 131 + static_cast<uint64_t>(writer * 17 + slot));
}

// True if `content` is a whole version of (writer, slot).
bool IsWholeVersion(const std::string& content, int writer, int slot) {
  const std::string prefix = "w" + std::to_string(writer) + "/s" + std::to_string(slot) + "/g";
  if (!content.starts_with(prefix)) return false;
  const uint64_t gen = std::strtoull(content.c_str() + prefix.size(), nullptr, 10);
  return content == Version(writer, slot, gen);
}

class LoadTest : public MountTest {
 protected:
  // Stops every daemon started (each must exit cleanly), then demands a store
  // in which every object holds what its name says.
  void StopAllAndVerifyTheStore() {
    for (size_t i = 0; i < mounts_.size(); ++i) {
      ASSERT_FALSE(mount(i).EndedUnexpectedly().has_value()) << mount(i).Log();
      ASSERT_TRUE(mount(i).Stop());
    }
    const CommandResult v = Cachectl(Backing(0), {"verify"});
    EXPECT_TRUE(v.Exited0()) << v.Describe();
  }
  // Writers own paths w<W>/s<S>; each writes versions by temp-and-rename (the
  // way pip, npm and Go do: readers see whole versions only) or in place, and
  // records the last it wrote. Readers read random paths and check that whatever
  // they see under an atomically written name is a whole version.
  // `in_place`: odd slots are rewritten in place (O_TRUNC) rather than renamed
  // over; `in_place` false renames every write into place, the way Go, pip and
  // npm write their caches.
  void RunWritersAndReaders(const std::vector<std::string>& mounts, const char* what,
                            bool in_place = true) {
    constexpr int kWriters = 6, kSlots = 12, kReaders = 3;
    const auto seconds = EnvLong("CACHEFS_LOAD_SECONDS", 4);
    for (int w = 0; w < kWriters; ++w)
      ASSERT_SYS_OK(::mkdir((mounts[0] + "/w" + std::to_string(w)).c_str(), 0755));
    std::vector<std::vector<uint64_t>> last(kWriters, std::vector<uint64_t>(kSlots, 0));
    std::atomic<bool> stop{false};
    std::atomic<long> writes{0}, reads{0}, failures{0}, torn{0}, stale{0};
    std::mutex fail_mu;
    std::string first_failure;
    auto fail = [&](const std::string& what_failed) {
      failures.fetch_add(1);
      std::lock_guard lock(fail_mu);
      if (first_failure.empty()) first_failure = what_failed;
    };
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
      threads.emplace_back([&, w] {
        std::mt19937 rng(static_cast<unsigned>(w * 7 + 1));
        const std::string base = mounts[static_cast<size_t>(w) % mounts.size()] + "/w" + std::to_string(w);
        for (uint64_t gen = 1; !stop.load(); ++gen) {
          const int slot = static_cast<int>(rng() % kSlots);
          const std::string path = base + "/s" + std::to_string(slot);
          const std::string data = Version(w, slot, gen);
          // Odd slots are rewritten in place (O_TRUNC); even ones renamed over.
          bool ok;
          if (in_place && slot % 2 == 1) {
            ok = WriteFile(path, data);
          } else {
            const std::string tmp = base + "/.tmp" + std::to_string(slot);
            ok = WriteFile(tmp, data) && ::rename(tmp.c_str(), path.c_str()) == 0;
          }
          if (!ok) {
            fail(path + ": " + ErrnoName(errno));
            continue;
          }
          last[static_cast<size_t>(w)][static_cast<size_t>(slot)] = gen;
          writes.fetch_add(1);
        }
      });
    }
    for (int r = 0; r < kReaders; ++r) {
      threads.emplace_back([&, r] {
        std::mt19937 rng(static_cast<unsigned>(100 + r));
        while (!stop.load()) {
          const int w = static_cast<int>(rng() % kWriters), slot = static_cast<int>(rng() % kSlots);
          const std::string path = mounts[static_cast<size_t>(r + 1) % mounts.size()] + "/w" +
                                   std::to_string(w) + "/s" + std::to_string(slot);
          errno = 0;
          const auto got = ReadFile(path);
          if (!got) {
            // ESTALE: across two daemons, the name was renamed over by the other
            // one between this mount's lookup and its read (the kernel sends no
            // open, so it cannot look again); the next read finds the new file.
            if (errno == ESTALE && mounts.size() > 1) {
              stale.fetch_add(1);
            } else if (errno != ENOENT) {
              fail(path + " unreadable: " + ErrnoName(errno));
            }
            continue;
          }
          reads.fetch_add(1);
          if (!IsWholeVersion(*got, w, slot)) {
            if (!in_place || slot % 2 == 0) {
              fail(path + ": a renamed-in file read torn (" + std::to_string(got->size()) + " bytes)");
            } else {
              torn.fetch_add(1);  // in place: a reader may meet a write half done
            }
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    stop = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0) << first_failure;
    // The model: every path holds the last version its writer wrote, through
    // every mount and in the backing directory.
    std::this_thread::sleep_for(100ms);
    long checked = 0;
    for (int w = 0; w < kWriters; ++w) {
      for (int s = 0; s < kSlots; ++s) {
        const uint64_t gen = last[static_cast<size_t>(w)][static_cast<size_t>(s)];
        if (gen == 0) continue;
        const std::string rel = "w" + std::to_string(w) + "/s" + std::to_string(s);
        const std::string want = Version(w, s, gen);
        for (const auto& m : mounts) EXPECT_TRUE(ReadFile(m + "/" + rel) == want) << m << "/" << rel;
        EXPECT_TRUE(ReadFile(InBacking(0, rel)) == want) << "backing " << rel;
        ++checked;
      }
    }
    std::printf("[ figures ] %s: %ld s, %ld writes, %ld reads (%ld in-place reads met a write, %ld ESTALE), %ld paths checked\n",
                what, static_cast<long>(seconds), writes.load(), reads.load(), torn.load(), stale.load(), checked);
  }
};

TEST_F(LoadTest, ParallelWritersAndReadersOnOneMountMatchTheModel) {
  ASSERT_TRUE(StartMount({"--cache-directory", Backing(0), "--dedup-delay", "0"}));
  RunWritersAndReaders({Mnt()}, "one mount");
  StopAllAndVerifyTheStore();
}

// The same with nothing cached by the kernel (timeouts 0, no write-back cache):
// every open looks the name up again, and a lookup racing a copy-on-write can
// leave a second node for the file the name holds; the other node's dedup once
// adopted it while this one wrote into it (seen: "damaged" in cachectl verify,
// about one run in three). The file's write lock (flock, per open file
// description) holds between two nodes of one daemon as between two daemons.
TEST_F(LoadTest, ParallelWritersAndReadersWithoutKernelCachesMatchTheModel) {
  ASSERT_TRUE(StartMount({"--cache-directory", Backing(0), "--dedup-delay", "0", "--entry-timeout",
                          "0", "--attr-timeout", "0", "--no-writeback-cache"}));
  RunWritersAndReaders({Mnt()}, "one mount, no kernel caches");
  StopAllAndVerifyTheStore();
}

// Two daemons over one backing directory and store. Lookups and attributes are
// not cached (timeouts 0) so each mount sees the other's renames at once.
TEST_F(LoadTest, ParallelWritersAndReadersOnTwoMountsOverOneStoreMatchTheModel) {
  const std::vector<std::string> args = {"--cache-directory", Backing(0), "--dedup-delay", "0",
                                         "--entry-timeout", "0", "--attr-timeout", "0"};
  ASSERT_TRUE(StartMount(args, Mnt()));
  ASSERT_TRUE(StartMount(args, Mnt2()));
  RunWritersAndReaders({Mnt(), Mnt2()}, "two mounts", /*in_place=*/false);
  StopAllAndVerifyTheStore();
}

// Two daemons over one store, files rewritten in place through both. One
// daemon's dedup may adopt a quiet file as a store object (or link its path to
// one) while the other, which looked the file up before and still holds it,
// writes into it; it used to write into the object ("damaged" in cachectl
// verify) or into a file no name showed any more. The daemons settle it on the
// file with flock(2) (store/object_store.h): a writer holds it shared for a
// burst of writes and looks again at what the file has become when it starts
// one; dedup takes it exclusively, without waiting, for its last check and the
// link. (--no-writeback-cache, so that each mount also shows the other's
// in-place rewrites at once.)
TEST_F(LoadTest, TwoMountsRewritingInPlaceNeverDamageAnObject) {
  const std::vector<std::string> args = {"--cache-directory", Backing(0), "--dedup-delay", "0",
                                         "--entry-timeout", "0", "--attr-timeout", "0",
                                         "--no-writeback-cache"};
  ASSERT_TRUE(StartMount(args, Mnt()));
  ASSERT_TRUE(StartMount(args, Mnt2()));
  RunWritersAndReaders({Mnt(), Mnt2()}, "two mounts, in place", /*in_place=*/true);
  StopAllAndVerifyTheStore();
}

// fsx: random operations on one file through the mount, each checked against
// an in-memory model right after. Dedup runs with no delay, so the file is
// taken into the store whenever it is quiet and the next change must break
// the sharing (copy-on-write) without losing a byte.
TEST_F(LoadTest, FsxRandomOperationsMatchTheModel) {
  ASSERT_TRUE(StartMount({"--cache-directory", Backing(0), "--dedup-delay", "0"}));
  const long ops = EnvLong("CACHEFS_FSX_OPS", 1500);
  const std::string names[2] = {Mnt("fsx.a"), Mnt("fsx.b")};
  int cur = 0;
  std::string model;
  ASSERT_TRUE(WriteFile(names[cur], ""));
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  auto rnd = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  constexpr size_t kMax = 300'000;
  long counts[6] = {};
  const char* op_names[6] = {"write", "truncate", "mmap-write", "punch-hole", "rename", "reopen"};
  Fd fd(::open(names[cur].c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  for (long i = 0; i < ops; ++i) {
    const int op = static_cast<int>(rnd(6));
    std::string desc;
    switch (op) {
      case 0: {  // write at a random offset (may extend, leaving a hole)
        const size_t off = rnd(kMax), len = 1 + rnd(20'000);
        const std::string data = Bytes(len, static_cast<uint64_t>(i));
        ASSERT_EQ(::pwrite(fd.get(), data.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len))
            << "op " << i << ": " << ErrnoName(errno);
        if (model.size() < off + len) model.resize(off + len, '\0');
        model.replace(off, len, data);
        desc = "write " + std::to_string(off) + "+" + std::to_string(len);
        break;
      }
      case 1: {  // truncate, down or up
        const size_t size = rnd(kMax);
        ASSERT_SYS_OK(::ftruncate(fd.get(), static_cast<off_t>(size)));
        model.resize(size, '\0');
        desc = "truncate " + std::to_string(size);
        break;
      }
      case 2: {  // write through a shared mapping of the existing size
        if (model.empty()) continue;
        const size_t off = rnd(model.size()), len = 1 + rnd(std::min<size_t>(model.size() - off, 10'000));
        const size_t map_len = model.size();
        void* p = ::mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
        ASSERT_NE(p, MAP_FAILED) << "op " << i << ": " << ErrnoName(errno);
        const std::string data = Bytes(len, static_cast<uint64_t>(i) + 7);
        std::memcpy(static_cast<char*>(p) + off, data.data(), len);
        ASSERT_SYS_OK(::msync(p, map_len, MS_SYNC));
        ::munmap(p, map_len);
        model.replace(off, len, data);
        desc = "mmap write " + std::to_string(off) + "+" + std::to_string(len);
        break;
      }
      case 3: {  // punch a hole, size kept
        if (model.empty()) continue;
        const size_t off = rnd(model.size()), len = 1 + rnd(model.size() - off);
        ASSERT_SYS_OK(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                  static_cast<off_t>(off), static_cast<off_t>(len)));
        std::fill(model.begin() + static_cast<long>(off), model.begin() + static_cast<long>(off + len), '\0');
        desc = "punch " + std::to_string(off) + "+" + std::to_string(len);
        break;
      }
      case 4: {  // rename to the other name (the open descriptor follows the file)
        ASSERT_SYS_OK(::rename(names[cur].c_str(), names[1 - cur].c_str()));
        cur = 1 - cur;
        desc = "rename";
        break;
      }
      case 5: {  // close, let dedup take it, reopen
        fd.reset();
        if (rnd(4) == 0) std::this_thread::sleep_for(20ms);
        fd.reset(::open(names[cur].c_str(), O_RDWR | O_CLOEXEC));
        ASSERT_TRUE(fd.valid()) << "op " << i << ": " << ErrnoName(errno);
        desc = "reopen";
        break;
      }
    }
    ++counts[op];
    // Check: size always, content of the whole file every few ops and after
    // anything but a plain write (cheap enough at these sizes).
    struct stat st {};
    ASSERT_SYS_OK(::fstat(fd.get(), &st));
    ASSERT_EQ(static_cast<size_t>(st.st_size), model.size()) << "op " << i << " " << desc;
    if (op != 0 || i % 8 == 0) {
      std::string got(model.size(), '\0');
      size_t done = 0;
      while (done < got.size()) {
        const ssize_t n = ::pread(fd.get(), got.data() + done, got.size() - done, static_cast<off_t>(done));
        ASSERT_GT(n, 0) << "op " << i << " " << desc << ": short read at " << done;
        done += static_cast<size_t>(n);
      }
      if (got != model) {
        size_t at = 0;
        while (at < got.size() && got[at] == model[at]) ++at;
        FAIL() << "op " << i << " (" << desc << "): content differs from the model at byte " << at;
      }
    }
  }
  fd.reset();
  EXPECT_EQ(ReadFile(names[cur]), model);
  EXPECT_FALSE(Exists(names[1 - cur]));
  ASSERT_TRUE(mount().Stop());
  EXPECT_EQ(ReadFile(InBacking(0, names[cur].substr(Mnt().size() + 1))), model);
  std::printf("[ figures ] fsx: %ld ops (", ops);
  for (int k = 0; k < 6; ++k) std::printf("%s%s %ld", k ? ", " : "", op_names[k], counts[k]);
  std::printf("), final size %zu\n", model.size());
}

// 200k files looked up through the mount (find, printing each one's inode and
// size, so every file is looked up and stat'ed): the daemon's memory, before and
// after, within a generous bound.
TEST_F(LoadTest, LookingUpManyFilesKeepsMemoryBounded) {
  const long n = EnvLong("CACHEFS_RSS_FILES", 200'000);
  constexpr long kPerDir = 1000;
  const auto t0 = Clock::now();
  for (long d = 0; d * kPerDir < n; ++d) {
    const std::string dir = InBacking(0, "d" + std::to_string(d));
    ASSERT_SYS_OK(::mkdir(dir.c_str(), 0755));
    for (long f = 0; f < kPerDir && d * kPerDir + f < n; ++f) {
      Fd fd(::open((dir + "/f" + std::to_string(f)).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
      ASSERT_TRUE(fd.valid());
    }
  }
  const auto t1 = Clock::now();
  ASSERT_TRUE(StartMount(SingleArgs()));
  const long before = VmRssKiB(mount().pid());
  const CommandResult r = RunCommand({"sh", "-c", "find '" + Mnt() + "' -type f -printf '%i %s\\n' | wc -l"}, {}, 600'000);
  const auto t2 = Clock::now();
  ASSERT_TRUE(r.Exited0()) << r.Describe();
  EXPECT_EQ(std::strtol(r.output.c_str(), nullptr, 10), n);
  const long after = VmRssKiB(mount().pid());
  // And once more: the kernel may have forgotten some; nothing grows without bound.
  RunCommand({"sh", "-c", "find '" + Mnt() + "' -type f -printf '%i %s\\n' | wc -l"}, {}, 600'000);
  const long again = VmRssKiB(mount().pid());
  std::printf("[ figures ] %ld files: generated in %.1f s, find through the mount %.1f s; "
              "daemon VmRSS %ld KiB before, %ld KiB after, %ld KiB after a second find "
              "(%.0f bytes per file)\n",
              n, std::chrono::duration<double>(t1 - t0).count(),
              std::chrono::duration<double>(t2 - t1).count(), before, after, again,
              static_cast<double>(after - before) * 1024.0 / static_cast<double>(n));
  // Generous: 2 KiB per file looked up, over a 64 MiB base.
  EXPECT_LT(after, 64 * 1024 + n * 2) << "KiB";
  EXPECT_LT(again, 64 * 1024 + n * 2) << "KiB";
  ASSERT_TRUE(mount().Stop());
}

}  // namespace
}  // namespace cachefs_test

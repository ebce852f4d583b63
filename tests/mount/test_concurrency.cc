// Many clients at once: parallel writers and readers on one mount, and two mounts
// over the same backing directories.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "mount_fixture.h"

namespace cachefs_test {
namespace {

std::string Content(int thread, int i, size_t size) {
  std::string s = "t" + std::to_string(thread) + "-f" + std::to_string(i) + ":";
  s.reserve(size);
  uint32_t x = static_cast<uint32_t>(thread * 7919 + i * 104729 + 1);
  while (s.size() < size) {
    x = x * 1664525u + 1013904223u;
    s.push_back(static_cast<char>('0' + (x >> 24) % 75));
  }
  s.resize(size);
  return s;
}

class ConcurrencyTest : public MountTest {};

TEST_F(ConcurrencyTest, ParallelWritersAndReadersOnOneMount) {
  ASSERT_TRUE(StartMount(RoutedArgs()));
  ASSERT_SYS_OK(::mkdir(Mnt("shared").c_str(), 0755));
  constexpr int kThreads = 8;
  constexpr int kFiles = 60;
  std::mutex mu;
  std::vector<std::string> errors;
  auto fail = [&](std::string e) {
    std::lock_guard lock(mu);
    if (errors.size() < 20) errors.push_back(std::move(e));
  };
  std::atomic<int> go{0};
  // done[t]: how many of thread t's shared files are completely written.
  std::array<std::atomic<int>, kThreads> done{};
  auto worker = [&](int t) {
    go.fetch_add(1);
    while (go.load() < kThreads) std::this_thread::yield();
    const std::string own = Mnt("own" + std::to_string(t));
    // Several threads race to make the same directories.
    if (::mkdir(Mnt("common").c_str(), 0755) != 0 && errno != EEXIST) fail("mkdir common: " + ErrnoName(errno));
    if (::mkdir(own.c_str(), 0755) != 0) return fail("mkdir " + own + ": " + ErrnoName(errno));
    const char* suffixes[] = {"", ".one", ".two"};
    for (int i = 0; i < kFiles; ++i) {
      const std::string name = "f" + std::to_string(i) + suffixes[i % 3];
      const std::string data = Content(t, i, 1000 + static_cast<size_t>((i * 7 + t * 131) % 70000));
      if (!WriteFile(own + "/" + name, data)) return fail("write " + name + ": " + ErrnoName(errno));
      const std::string shared = Mnt("shared/t" + std::to_string(t) + "-" + name);
      if (!WriteFile(shared, data, O_WRONLY | O_CREAT | O_EXCL)) {
        return fail("write " + shared + ": " + ErrnoName(errno));
      }
      done[t].store(i + 1);
      // Read back something written a little earlier, by us and by a neighbour.
      const int j = i / 2;
      const std::string back = "f" + std::to_string(j) + suffixes[j % 3];
      const auto got = ReadFile(own + "/" + back);
      const std::string want = Content(t, j, 1000 + static_cast<size_t>((j * 7 + t * 131) % 70000));
      if (got != want) fail("read back " + own + "/" + back + " differs");
      const int n = (t + 1) % kThreads;
      if (j < done[n].load()) {
        const auto theirs = ReadFile(Mnt("shared/t" + std::to_string(n) + "-" + back));
        if (theirs != Content(n, j, 1000 + static_cast<size_t>((j * 7 + n * 131) % 70000))) {
          fail("neighbour's " + back + (theirs ? " differs" : " unreadable: " + ErrnoName(errno)));
        }
      }
      if (i % 10 == 0) {
        const auto names = ListDir(Mnt("shared"));
        if (std::set<std::string>(names.begin(), names.end()).size() != names.size()) {
          fail("duplicate names in shared/");
        }
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& th : threads) th.join();
  for (const auto& e : errors) ADD_FAILURE() << e;
  ASSERT_TRUE(errors.empty());

  // Everything is there, exactly once, with the right content, in the right place.
  const auto shared = ListDir(Mnt("shared"));
  EXPECT_EQ(shared.size(), static_cast<size_t>(kThreads * kFiles));
  EXPECT_EQ(std::set<std::string>(shared.begin(), shared.end()).size(), shared.size());
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(ListDir(Mnt("own" + std::to_string(t))).size(), static_cast<size_t>(kFiles));
    for (int i = 0; i < kFiles; ++i) {
      const char* sfx = i % 3 == 0 ? "" : i % 3 == 1 ? ".one" : ".two";
      const std::string rel = "own" + std::to_string(t) + "/f" + std::to_string(i) + sfx;
      const std::string want = Content(t, i, 1000 + static_cast<size_t>((i * 7 + t * 131) % 70000));
      EXPECT_EQ(ReadFile(Mnt(rel)), want) << rel;
      EXPECT_EQ(ReadFile(InBacking(i % 3, rel)), want) << rel;
    }
  }
}

// Several processes listing one directory while it grows (make -j, a build cache
// scan): each listing must be a consistent view.
TEST_F(ConcurrencyTest, ConcurrentListingsWhileCreatingShowNoDuplicates) {
  ASSERT_TRUE(StartMount(SingleArgs()));
  ASSERT_SYS_OK(::mkdir(Mnt("grow").c_str(), 0755));
  std::set<std::string> pre;
  for (int i = 0; i < 200; ++i) {
    pre.insert("pre-" + std::to_string(i));
    ASSERT_TRUE(WriteFile(Mnt("grow/pre-" + std::to_string(i)), ""));
  }
  std::atomic<bool> creating{true};
  std::atomic<int> duplicates{0}, missing{0}, listings{0}, created{0};
  std::mutex mu;
  std::string example;
  std::thread creator([&] {
    for (int i = 0; i < 800; ++i) {
      if (!WriteFile(Mnt("grow/new-" + std::to_string(i)), "")) break;
      created.fetch_add(1);
    }
    creating.store(false);
  });
  auto lister = [&] {
    while (creating.load()) {
      const auto v = ListDir(Mnt("grow"));
      listings.fetch_add(1);
      std::set<std::string> s;
      for (const std::string& name : v) {
        if (!s.insert(name).second) {
          duplicates.fetch_add(1);
          std::lock_guard lock(mu);
          if (example.empty()) example = "duplicate '" + name + "' in a listing of " + std::to_string(v.size());
        }
      }
      for (const std::string& name : pre) {
        if (!s.count(name)) {
          missing.fetch_add(1);
          std::lock_guard lock(mu);
          if (example.empty()) example = "pre-existing '" + name + "' missing from a listing of " + std::to_string(v.size());
        }
      }
    }
  };
  std::vector<std::thread> listers;
  for (int t = 0; t < 3; ++t) listers.emplace_back(lister);
  creator.join();
  for (auto& th : listers) th.join();
  EXPECT_EQ(created.load(), 800);
  EXPECT_EQ(duplicates.load(), 0) << example << " (" << listings.load() << " listings)";
  EXPECT_EQ(missing.load(), 0) << example << " (" << listings.load() << " listings)";
  EXPECT_EQ(ListDir(Mnt("grow")).size(), 1000u);
}

// Short-lived directory handles (opendir, readdir, closedir) from several threads
// while the directory changes, so that every listing reaches the daemon. The
// daemon must stay up and still stop cleanly afterwards.
TEST_F(ConcurrencyTest, ListingsDuringCreatesKeepTheDaemonAlive) {
  ASSERT_TRUE(StartMount(SingleArgs()));
  ASSERT_SYS_OK(::mkdir(Mnt("d").c_str(), 0755));
  std::atomic<bool> creating{true};
  std::atomic<int> failed_listings{0}, failed_creates{0};
  std::thread creator([&] {
    for (int i = 0; i < 1500; ++i) {
      if (!WriteFile(Mnt("d/f" + std::to_string(i)), "")) failed_creates.fetch_add(1);
    }
    creating.store(false);
  });
  std::vector<std::thread> listers;
  for (int t = 0; t < 3; ++t) {
    listers.emplace_back([&] {
      while (creating.load()) {
        DIR* dp = ::opendir(Mnt("d").c_str());
        if (dp == nullptr) {
          failed_listings.fetch_add(1);
          continue;
        }
        errno = 0;
        while (::readdir(dp) != nullptr) {
        }
        if (errno != 0) failed_listings.fetch_add(1);
        ::closedir(dp);
      }
    });
  }
  creator.join();
  for (auto& th : listers) th.join();
  EXPECT_EQ(failed_creates.load(), 0);
  EXPECT_EQ(failed_listings.load(), 0);
  EXPECT_TRUE(IsCachefsMounted(Mnt()));
  EXPECT_TRUE(mount().Stop()) << "the daemon must survive and exit 0";
}

TEST_F(ConcurrencyTest, ParallelRenamesAndUnlinksKeepTheTreeConsistent) {
  ASSERT_TRUE(StartMount(RoutedArgs()));
  constexpr int kThreads = 6;
  std::atomic<int> failures{0};
  auto worker = [&](int t) {
    const std::string d = Mnt("w" + std::to_string(t));
    if (::mkdir(d.c_str(), 0755) != 0) {
      failures.fetch_add(1);
      return;
    }
    for (int i = 0; i < 80; ++i) {
      const std::string a = d + "/a" + std::to_string(i) + ".one";
      const std::string b = d + "/b" + std::to_string(i) + ".one";
      if (!WriteFile(a, "x" + std::to_string(i))) failures.fetch_add(1);
      if (::rename(a.c_str(), b.c_str()) != 0) failures.fetch_add(1);
      if (i % 2 == 0 && ::unlink(b.c_str()) != 0) failures.fetch_add(1);
    }
    // The directory itself is renamed while its siblings are busy.
    if (::rename(d.c_str(), (d + "-done").c_str()) != 0) failures.fetch_add(1);
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    const std::string d = "w" + std::to_string(t) + "-done";
    const auto names = ListDirSet(Mnt(d));
    EXPECT_EQ(names.size(), 40u) << d;
    for (int i = 1; i < 80; i += 2) {
      EXPECT_EQ(ReadFile(Mnt(d + "/b" + std::to_string(i) + ".one")), "x" + std::to_string(i));
    }
    EXPECT_FALSE(Exists(Mnt("w" + std::to_string(t))));
  }
}

TEST_F(ConcurrencyTest, TwoMountsOverTheSameBackingDirectories) {
  ASSERT_TRUE(StartMount(RoutedArgs(), Mnt()));
  ASSERT_TRUE(StartMount(RoutedArgs(), Mnt2()));
  struct stat st {};
  // Negative lookups are not cached (negative timeout 0): a name made through one
  // mount is found at once through the other, even right after a failed lookup.
  for (int i = 0; i < 20; ++i) {
    const char* sfx = i % 3 == 0 ? "" : i % 3 == 1 ? ".one" : ".two";
    const std::string name = "n" + std::to_string(i) + sfx;
    const bool from_first = i % 2 == 0;
    const std::string writer = from_first ? Mnt(name) : Mnt2(name);
    const std::string reader = from_first ? Mnt2(name) : Mnt(name);
    EXPECT_ERRNO(ENOENT, ::stat(reader.c_str(), &st));
    const std::string data = Content(i, i, 5000 + static_cast<size_t>(i) * 3000);
    ASSERT_TRUE(WriteFile(writer, data));
    ASSERT_SYS_OK(::stat(reader.c_str(), &st)) ;
    EXPECT_EQ(st.st_size, static_cast<off_t>(data.size()));
    EXPECT_EQ(ReadFile(reader), data) << name;
  }
  // Directories and files below them, too.
  EXPECT_ERRNO(ENOENT, ::stat(Mnt2("made-in-1").c_str(), &st));
  ASSERT_SYS_OK(::mkdir(Mnt("made-in-1").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("made-in-1/deep.two"), "deep"));
  EXPECT_EQ(ReadFile(Mnt2("made-in-1/deep.two")), "deep");
  struct stat s1 {}, s2 {};
  ASSERT_SYS_OK(::stat(Mnt("made-in-1/deep.two").c_str(), &s1));
  ASSERT_SYS_OK(::stat(Mnt2("made-in-1/deep.two").c_str(), &s2));
  EXPECT_EQ(s1.st_ino, s2.st_ino);
  EXPECT_EQ(s1.st_size, s2.st_size);
  // The writing mount's kernel keeps the mtime it set (write-back cache) until it
  // flushes attributes; the backing file's can be a few microseconds later.
  EXPECT_LE(std::abs(s1.st_mtim.tv_sec - s2.st_mtim.tv_sec), 1);
}

TEST_F(ConcurrencyTest, TwoMountsWritingInParallel) {
  ASSERT_TRUE(StartMount(RoutedArgs(), Mnt()));
  ASSERT_TRUE(StartMount(RoutedArgs(), Mnt2()));
  ASSERT_SYS_OK(::mkdir(Mnt("both").c_str(), 0755));
  std::atomic<int> failures{0};
  auto worker = [&](int t) {
    const std::string base = t % 2 == 0 ? Mnt("both") : Mnt2("both");
    for (int i = 0; i < 50; ++i) {
      const std::string name = "t" + std::to_string(t) + "-" + std::to_string(i) + (i % 2 ? ".one" : ".two");
      if (!WriteFile(base + "/" + name, Content(t, i, 3000), O_WRONLY | O_CREAT | O_EXCL)) {
        failures.fetch_add(1);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(worker, t);
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  // Every file is readable through the other mount with identical content.
  for (int t = 0; t < 4; ++t) {
    const std::string base = t % 2 == 0 ? Mnt2("both") : Mnt("both");
    for (int i = 0; i < 50; ++i) {
      const std::string name = "t" + std::to_string(t) + "-" + std::to_string(i) + (i % 2 ? ".one" : ".two");
      EXPECT_EQ(ReadFile(base + "/" + name), Content(t, i, 3000)) << name;
    }
  }
  // A fresh listing through either mount shows them all.
  EXPECT_EQ(ListDir(Mnt("both")).size(), 200u);
}

}  // namespace
}  // namespace cachefs_test

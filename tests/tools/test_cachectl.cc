// The real cachectl binary on real trees: import deduplicates without changing a
// byte, converges after being killed, never merges a hash collision; stats,
// verify, gc and evict report and remove exactly what they should; every
// mistake is one line on stderr and exit status 2.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "common/json.h"
#include "tests/cachectl_child.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using cachefs::Json;

// Reads without touching atime: what evict goes by must not move when a test looks.
std::string slurp(const std::string& p) {
  std::string data;
  const int fd = ::open(p.c_str(), O_RDONLY | O_NOATIME | O_CLOEXEC);
  if (fd < 0) return data;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) data.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return data;
}

using Result = cachefs_test::CachectlResult;
using Child = cachefs_test::CachectlChild;

Result run(std::vector<std::string> args, std::vector<std::string> env = {}) {
  return cachefs_test::RunCachectl(std::move(args), env);
}

uint64_t num(const Json& j, std::string_view key) {
  const Json* v = j.find(key);
  EXPECT_TRUE(v && v->is_number()) << key << " in " << j.dump();
  return v && v->is_number() ? static_cast<uint64_t>(v->number()) : ~0ull;
}

struct stat stat_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st;
}

class Cachectl : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/var/tmp/cachectl-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    fs::create_directories(cache());
  }
  void TearDown() override {
    fs::remove_all(root_);
    if (!shm_.empty()) fs::remove_all(shm_);
  }

  fs::path cache() const { return root_ / "cache"; }
  fs::path store() const { return cache() / ".cachefs"; }
  std::vector<std::string> with_cache(std::vector<std::string> args) const {
    args.insert(args.begin(), {"--cache-dir", cache().string()});
    return args;
  }

  static void write(const fs::path& p, const std::string& data, mode_t mode = 0644) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
    ::chmod(p.c_str(), mode);
  }
  // Every regular file under `dir` (the store excluded): relative path -> bytes.
  static std::map<std::string, std::string> contents(const fs::path& dir) {
    std::map<std::string, std::string> m;
    for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
         ++it) {
      if (it->path().filename() == ".cachefs") {
        it.disable_recursion_pending();
        continue;
      }
      if (fs::is_regular_file(fs::symlink_status(it->path()))) {
        const struct stat st = stat_of(it->path());
        m[fs::relative(it->path(), dir).string()] =
            slurp(it->path()) + "|" + std::to_string(st.st_mode & 07777);
      }
    }
    return m;
  }
  size_t count_objects() const {
    size_t n = 0;
    for (auto& e : fs::recursive_directory_iterator(store() / "objects"))
      if (e.is_regular_file()) ++n;
    return n;
  }
  // A directory on another filesystem than /var/tmp (tmpfs), or "" if there is none.
  fs::path other_fs_dir() {
    char tmpl[] = "/dev/shm/cachectl-test-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return {};
    shm_ = tmpl;
    if (stat_of(shm_).st_dev == stat_of(root_).st_dev) return {};
    return shm_;
  }

  void expect_usage_error(const std::vector<std::string>& args, const std::string& fragment,
                          std::vector<std::string> env = {}) {
    const Result r = run(args, std::move(env));
    EXPECT_EQ(r.code(), 2) << r.err;
    EXPECT_EQ(r.err.rfind("cachectl: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << "stderr: " << r.err;
    EXPECT_EQ(r.out, "");
  }

  fs::path root_, shm_;
};

// --- import -----------------------------------------------------------------

TEST_F(Cachectl, ImportDedupsAcrossDirectoriesWithoutChangingAByte) {
  const fs::path a = root_ / "a", b = root_ / "b";
  write(a / "gomodcache/m/v1.zip", "module zip bytes");
  write(b / "gomodcache/m/v1.zip", "module zip bytes");
  write(b / "pip/wheel.whl", "module zip bytes");
  write(a / "pip/other.whl", "other wheel");
  write(a / "npm/exec.sh", "#!/bin/sh\necho same\n", 0755);
  write(b / "npm/exec.sh", "#!/bin/sh\necho same\n", 0644);  // same bytes, other mode
  write(a / "empty", "");
  fs::create_symlink("gomodcache", a / "link");
  const auto before_a = contents(a), before_b = contents(b);

  Result r = run(with_cache({"import", a.string(), b.string(), "--json"}));
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(r.err, "");  // no progress line: stderr is not a terminal
  Json j = r.json();
  EXPECT_EQ(num(j, "files"), 8u);
  EXPECT_EQ(num(j, "adopted"), 4u);       // zip, other.whl, exec.sh 0755, exec.sh 0644
  EXPECT_EQ(num(j, "deduplicated"), 2u);  // b's zip and wheel.whl
  EXPECT_EQ(num(j, "skipped"), 2u);       // the empty file, the symlink
  EXPECT_EQ(num(*j.find("skipped_by_reason"), "empty"), 1u);
  EXPECT_EQ(num(*j.find("skipped_by_reason"), "not a regular file"), 1u);
  EXPECT_GT(num(j, "bytes_saved"), 0u);
  EXPECT_EQ(count_objects(), 4u);

  const auto zip = stat_of(a / "gomodcache/m/v1.zip");
  EXPECT_EQ(zip.st_ino, stat_of(b / "gomodcache/m/v1.zip").st_ino);
  EXPECT_EQ(zip.st_ino, stat_of(b / "pip/wheel.whl").st_ino);
  EXPECT_EQ(zip.st_nlink, 4u);
  EXPECT_NE(stat_of(a / "npm/exec.sh").st_ino, stat_of(b / "npm/exec.sh").st_ino);
  EXPECT_EQ(contents(a), before_a);
  EXPECT_EQ(contents(b), before_b);

  // A second run finds everything done.
  r = run(with_cache({"import", a.string(), b.string(), "--json"}));
  ASSERT_EQ(r.code(), 0) << r.err;
  j = r.json();
  EXPECT_EQ(num(j, "adopted"), 0u);
  EXPECT_EQ(num(j, "deduplicated"), 0u);
  EXPECT_EQ(num(j, "already"), 6u);
  EXPECT_EQ(count_objects(), 4u);
  EXPECT_EQ(contents(a), before_a);
}

TEST_F(Cachectl, ImportWithoutDirTakesEveryRoute) {
  const fs::path npm = root_ / "npm-branch";
  write(cache() / "pip/x.whl", "shared across routes");
  write(npm / "npm/_cacache/x", "shared across routes");
  const auto args =
      std::vector<std::string>{"--cache-dir", cache().string(), "--define-cache-directories",
                               npm.string() + "=^/npm/", "import"};
  Result r = run(args);
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_NE(r.out.find("deduplicated   1"), std::string::npos) << r.out;
  EXPECT_EQ(stat_of(cache() / "pip/x.whl").st_ino, stat_of(npm / "npm/_cacache/x").st_ino);
  // The environment names the routes as well as the flags do.
  r = run({"import", "--json"}, {"CACHEFS_CACHE_DIRECTORY=" + cache().string(),
                                 "CACHEFS_DEFINE_CACHE_DIRECTORIES=" + npm.string() + "=^/npm/"});
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(num(r.json(), "already"), 2u);
}

TEST_F(Cachectl, ImportReportsAnotherFilesystemAndSkipsIt) {
  const fs::path other = other_fs_dir();
  if (other.empty()) GTEST_SKIP() << "no tmpfs at /dev/shm";
  write(other / "pip/a", "same");
  write(other / "pip/b", "same");
  write(cache() / "pip/c", "same");
  Result r = run(with_cache({"import", other.string(), cache().string(), "--json"}));
  ASSERT_EQ(r.code(), 0) << r.err;
  const Json j = r.json();
  const Json& dirs = *j.find("dirs");
  ASSERT_EQ(dirs.items().size(), 2u);
  EXPECT_EQ(dirs.items()[0].find("dedup")->str(), "off: other filesystem");
  EXPECT_EQ(dirs.items()[1].find("dedup")->str(), "on");
  EXPECT_EQ(stat_of(other / "pip/a").st_nlink, 1u);
  EXPECT_NE(stat_of(other / "pip/a").st_ino, stat_of(other / "pip/b").st_ino);
  r = run(with_cache({"import", other.string(), cache().string()}));
  EXPECT_NE(r.out.find(other.string() + ": dedup off: other filesystem"), std::string::npos)
      << r.out;
  // Only DIRs on another filesystem: nothing to do is a mistake.
  expect_usage_error(with_cache({"import", other.string()}), "on another filesystem");
  // stats says so per route.
  r = run({"--cache-dir", cache().string(), "--define-cache-directories",
           other.string() + "=^/pip/", "stats", "--json"});
  ASSERT_EQ(r.code(), 0) << r.err;
  const Json sj = r.json();
  const Json& routes = *sj.find("routes");
  EXPECT_EQ(routes.items()[0].find("dedup")->str(), "off: other filesystem");
  EXPECT_EQ(routes.items()[1].find("dedup")->str(), "on");
}

TEST_F(Cachectl, ImportLeavesFilesOpenForWritingAlone) {
  write(cache() / "a", "identical");
  write(cache() / "b", "identical");
  const int fd = ::open((cache() / "b").c_str(), O_WRONLY);  // a build still writing it
  ASSERT_GE(fd, 0);
  Result r = run(with_cache({"import", "--json"}));
  ::close(fd);
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(num(*r.json().find("skipped_by_reason"), "open for writing"), 1u);
  EXPECT_EQ(stat_of(cache() / "b").st_nlink, 1u);
  r = run(with_cache({"import", "--json"}));
  EXPECT_EQ(num(r.json(), "deduplicated"), 1u);
}

TEST_F(Cachectl, HashCollisionNeverMergesDifferentFiles) {
  // With the test hook every same-size content hashes alike.
  write(cache() / "go/one", "AAAAAAAA");
  write(cache() / "go/two", "BBBBBBBB");
  write(cache() / "go/three", "AAAAAAAA");
  const std::vector<std::string> env = {"CACHEFS_TEST_HASH_COLLIDE=1"};
  Result r = run(with_cache({"import", "--json", "-j", "1"}), env);
  ASSERT_EQ(r.code(), 0) << r.err;
  const Json j = r.json();
  EXPECT_EQ(num(j, "adopted"), 1u);
  EXPECT_EQ(num(j, "deduplicated"), 1u);
  EXPECT_EQ(num(*j.find("skipped_by_reason"), "hash collision"), 1u);
  ASSERT_EQ(j.find("collisions")->items().size(), 1u);
  EXPECT_EQ(slurp(cache() / "go/one"), "AAAAAAAA");
  EXPECT_EQ(slurp(cache() / "go/two"), "BBBBBBBB");
  EXPECT_EQ(slurp(cache() / "go/three"), "AAAAAAAA");
  EXPECT_EQ(stat_of(cache() / "go/one").st_ino, stat_of(cache() / "go/three").st_ino);
  EXPECT_NE(stat_of(cache() / "go/one").st_ino, stat_of(cache() / "go/two").st_ino);
  // verify rehashes with the same function: the store is consistent.
  r = run(with_cache({"verify"}), env);
  EXPECT_EQ(r.code(), 0) << r.out << r.err;
}

TEST_F(Cachectl, KilledImportConvergesOnRerun) {
  // Enough work that a kill lands in the middle: 1200 files of 64 KiB in 300
  // groups of identical ones.
  std::string block(64 << 10, 'x');
  for (int i = 0; i < 1200; ++i) {
    std::snprintf(block.data(), 16, "group %06d", i % 300);
    write(cache() / ("d" + std::to_string(i % 7)) / ("f" + std::to_string(i)), block);
  }
  const auto before = contents(cache());
  for (int delay_ms : {30, 80, 150}) {
    Child c(with_cache({"import", "-j", "2"}), {});
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(c.pid(), SIGKILL);
    c.finish();
  }
  Result r = run(with_cache({"import", "--json"}));
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(count_objects(), 300u);
  EXPECT_EQ(contents(cache()), before);
  std::map<std::string, std::set<ino_t>> inodes;
  for (int i = 0; i < 1200; ++i) {
    const fs::path p = cache() / ("d" + std::to_string(i % 7)) / ("f" + std::to_string(i));
    inodes[slurp(p).substr(0, 12)].insert(stat_of(p).st_ino);
  }
  EXPECT_EQ(inodes.size(), 300u);
  for (const auto& [group, set] : inodes) EXPECT_EQ(set.size(), 1u) << group;
  EXPECT_TRUE(fs::is_empty(store() / "tmp"));
  r = run(with_cache({"verify", "--json"}));
  EXPECT_EQ(r.code(), 0) << r.out;
  EXPECT_EQ(num(r.json(), "damaged"), 0u);
  r = run(with_cache({"import", "--json"}));
  EXPECT_EQ(num(r.json(), "adopted") + num(r.json(), "deduplicated"), 0u);
}

// --- stats ------------------------------------------------------------------

TEST_F(Cachectl, StatsCountsPathsInodesAndObjects) {
  const std::string k16(16384, 'k');
  write(cache() / "gomodcache/a", k16);
  write(cache() / "gomodcache/b", k16);
  write(cache() / "pip/c", k16);
  write(cache() / "pip/d", "tiny");
  write(cache() / "pip/gone", std::string(8192, 'g'));
  ASSERT_EQ(run(with_cache({"import"})).code(), 0);
  fs::remove(cache() / "pip/gone");  // its object is now unreferenced
  Result r = run(with_cache({"stats", "--json"}));
  ASSERT_EQ(r.code(), 0) << r.err;
  const Json j = r.json();
  const uint64_t blocks16 = static_cast<uint64_t>(stat_of(cache() / "pip/c").st_blocks) * 512;
  const uint64_t blocks4 = static_cast<uint64_t>(stat_of(cache() / "pip/d").st_blocks) * 512;
  uint64_t blocks8 = 0;
  for (auto& e : fs::recursive_directory_iterator(store() / "objects")) {
    if (e.is_regular_file() && stat_of(e.path()).st_nlink == 1)
      blocks8 = static_cast<uint64_t>(stat_of(e.path()).st_blocks) * 512;
  }
  ASSERT_GT(blocks8, 0u);
  EXPECT_EQ(num(j, "files"), 4u);
  EXPECT_EQ(num(j, "logical_bytes"), 3u * 16384 + 4);
  EXPECT_EQ(num(j, "physical_bytes"), blocks16 + blocks4 + blocks8);
  EXPECT_NEAR(j.find("dedup_ratio")->number(),
              (3.0 * 16384 + 4) / static_cast<double>(blocks16 + blocks4 + blocks8), 0.001);
  EXPECT_EQ(num(j, "objects"), 3u);
  EXPECT_EQ(num(j, "unreferenced_objects"), 1u);
  EXPECT_EQ(num(j, "unreferenced_bytes"), blocks8);
  const Json& top = *j.find("top_level");
  EXPECT_EQ(num(*top.find("gomodcache"), "files"), 2u);
  EXPECT_EQ(num(*top.find("gomodcache"), "physical_bytes"), blocks16);
  EXPECT_EQ(num(*top.find("pip"), "logical_bytes"), 16384u + 4);
  ASSERT_EQ(j.find("routes")->items().size(), 1u);
  EXPECT_EQ(j.find("routes")->items()[0].find("directory")->str(), cache().string());
  EXPECT_EQ(j.find("routes")->items()[0].find("dedup")->str(), "on");
  // The human form says the same.
  r = run(with_cache({"stats"}));
  EXPECT_NE(r.out.find("files         4\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("unreferenced  1 objects"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  gomodcache: 2 files"), std::string::npos) << r.out;
}

// --- verify -----------------------------------------------------------------

TEST_F(Cachectl, VerifyFindsACorruptedObjectAndRepairQuarantinesIt) {
  write(cache() / "a", "precious bytes");
  write(cache() / "b", "other bytes");
  ASSERT_EQ(run(with_cache({"import"})).code(), 0);
  Result r = run(with_cache({"verify"}));
  EXPECT_EQ(r.code(), 0) << r.out;
  EXPECT_NE(r.out.find("result    ok"), std::string::npos) << r.out;

  fs::path object;
  for (auto& e : fs::recursive_directory_iterator(store() / "objects"))
    if (e.is_regular_file() && slurp(e.path()) == "precious bytes") object = e.path();
  ASSERT_FALSE(object.empty());
  {
    std::fstream f(object, std::ios::in | std::ios::out | std::ios::binary);
    f.write("P", 1);  // bit rot, or someone writing in place
  }
  write(store() / "objects" / "stray-file", "not an object");
  r = run(with_cache({"verify"}));
  EXPECT_EQ(r.code(), 1) << r.out;
  EXPECT_NE(r.out.find("damaged   objects/" + object.parent_path().filename().string() + "/" +
                       object.filename().string() + ": content hash"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("stray     objects/stray-file"), std::string::npos) << r.out;

  r = run(with_cache({"verify", "--repair", "--json"}));
  EXPECT_EQ(r.code(), 0) << r.out;
  EXPECT_EQ(num(r.json(), "damaged"), 2u);
  EXPECT_EQ(num(r.json(), "repaired"), 2u);
  EXPECT_FALSE(fs::exists(object));
  EXPECT_TRUE(fs::exists(store() / "quarantine" / object.filename()));
  EXPECT_TRUE(fs::exists(store() / "quarantine" / "stray-file"));
  EXPECT_EQ(run(with_cache({"verify"})).code(), 0);
}

TEST_F(Cachectl, VerifyChecksModeOwnerAndMark) {
  write(cache() / "a", "bytes a");
  write(cache() / "b", "bytes bb");
  ASSERT_EQ(run(with_cache({"import"})).code(), 0);
  ::chmod((cache() / "a").c_str(), 0600);  // through a path: the object's mode changes
  ASSERT_EQ(::removexattr((cache() / "b").c_str(), "trusted.cachefs.object"), 0);
  Result r = run(with_cache({"verify", "--json"}));
  EXPECT_EQ(r.code(), 1);
  const Json j = r.json();
  ASSERT_EQ(j.find("problems")->items().size(), 2u) << r.out;
  std::string all;
  for (const Json& p : j.find("problems")->items()) all += p.find("problem")->str() + "\n";
  EXPECT_NE(all.find("mode 0600 but its name says 0644"), std::string::npos) << all;
  EXPECT_NE(all.find("no trusted.cachefs.object mark"), std::string::npos) << all;
}

// --- gc ---------------------------------------------------------------------

TEST_F(Cachectl, GcRemovesOnlyUnreferencedObjects) {
  write(cache() / "keep1", "kept content");
  write(cache() / "keep2", "kept content");
  write(cache() / "drop1", "dropped content");
  write(cache() / "drop2", "dropped content");
  write(cache() / "solo", "solo content");
  ASSERT_EQ(run(with_cache({"import"})).code(), 0);
  ASSERT_EQ(count_objects(), 3u);
  fs::remove(cache() / "drop1");
  fs::remove(cache() / "drop2");
  Result r = run(with_cache({"gc", "--dry-run", "--json"}));
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(num(r.json(), "removed"), 1u);
  EXPECT_EQ(count_objects(), 3u);
  r = run(with_cache({"gc", "--json"}));
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(num(r.json(), "removed"), 1u);
  EXPECT_GT(num(r.json(), "removed_bytes"), 0u);
  EXPECT_EQ(count_objects(), 2u);
  EXPECT_EQ(slurp(cache() / "keep1"), "kept content");
  EXPECT_EQ(stat_of(cache() / "keep1").st_nlink, 3u);
  EXPECT_EQ(stat_of(cache() / "solo").st_nlink, 2u);
  r = run(with_cache({"gc"}));
  EXPECT_NE(r.out.find("removed 0 unreferenced objects"), std::string::npos) << r.out;
}

// --- evict ------------------------------------------------------------------

class Evict : public Cachectl {
 protected:
  // Sets a file's last use (atime) `age` seconds ago; mtime older still.
  void used(const fs::path& p, long age) {
    const time_t now = ::time(nullptr);
    const timespec t[2] = {{now - age, 0}, {now - 100 * 86400, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), t, AT_SYMLINK_NOFOLLOW), 0);
  }
  void SetUp() override {
    Cachectl::SetUp();
    const std::string k8(8192, 'e');
    write(cache() / "go/old", k8 + "1");
    write(cache() / "go/older", k8 + "2");
    write(cache() / "pip/shared", k8 + "3");
    write(cache() / "npm/shared", k8 + "3");
    write(cache() / "npm/new", k8 + "4");
    ASSERT_EQ(run(with_cache({"import"})).code(), 0);
    used(cache() / "go/older", 9 * 86400);
    used(cache() / "pip/shared", 8 * 86400);  // the object's atime: both paths
    used(cache() / "go/old", 5 * 86400);
    used(cache() / "npm/new", 60);
    block_ = static_cast<uint64_t>(stat_of(cache() / "go/old").st_blocks) * 512;
  }
  uint64_t block_ = 0;
};

TEST_F(Evict, MaxSizeRemovesLeastRecentlyUsedInodesFirst) {
  // Four inodes; room for two.
  Result r = run(with_cache({"evict", "--max-size", std::to_string(2 * block_), "--json"}));
  ASSERT_EQ(r.code(), 0) << r.err;
  const Json j = r.json();
  EXPECT_EQ(num(j, "removed_inodes"), 2u);
  EXPECT_EQ(num(j, "removed_files"), 3u);
  EXPECT_EQ(num(j, "removed_objects"), 2u);
  EXPECT_EQ(num(j, "physical_bytes_after"), 2 * block_);
  EXPECT_FALSE(fs::exists(cache() / "go/older"));
  EXPECT_FALSE(fs::exists(cache() / "pip/shared"));
  EXPECT_FALSE(fs::exists(cache() / "npm/shared"));
  EXPECT_TRUE(fs::exists(cache() / "go/old"));
  EXPECT_TRUE(fs::exists(cache() / "npm/new"));
  EXPECT_TRUE(fs::is_directory(cache() / "pip"));  // cache roots stay
  EXPECT_EQ(count_objects(), 2u);
  EXPECT_EQ(run(with_cache({"verify"})).code(), 0);
  r = run(with_cache({"stats", "--json"}));
  EXPECT_EQ(num(r.json(), "physical_bytes"), 2 * block_);
  // Already small enough: nothing more goes.
  r = run(with_cache({"evict", "--max-size", "1G", "--json"}));
  EXPECT_EQ(num(r.json(), "removed_files"), 0u);
}

TEST_F(Evict, OlderThanRemovesWhatWasNotUsedSince) {
  Result r = run(with_cache({"evict", "--older-than", "7d"}));
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_NE(r.out.find("removed 3 files (2 inodes, 2 objects)"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(cache() / "go/older"));
  EXPECT_FALSE(fs::exists(cache() / "npm/shared"));
  EXPECT_TRUE(fs::exists(cache() / "go/old"));
  EXPECT_TRUE(fs::exists(cache() / "npm/new"));
}

TEST_F(Evict, MtimeCountsAsUseWhenLater) {
  // A noatime mount never moves atime: a file written recently is still in use.
  const time_t now = ::time(nullptr);
  const timespec t[2] = {{now - 50 * 86400, 0}, {now - 60, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (cache() / "go/older").c_str(), t, 0), 0);
  ASSERT_EQ(run(with_cache({"evict", "--older-than", "7d"})).code(), 0);
  EXPECT_TRUE(fs::exists(cache() / "go/older"));
  EXPECT_FALSE(fs::exists(cache() / "pip/shared"));
}

TEST_F(Evict, DryRunRemovesNothing) {
  const auto before = contents(cache());
  const size_t objects = count_objects();
  Result r = run(with_cache({"evict", "--older-than", "1d", "--dry-run"}));
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_NE(r.out.find("would remove"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find((cache() / "go/older").string()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find((cache() / "npm/shared").string()), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find((cache() / "npm/new").string()), std::string::npos) << r.out;
  r = run(with_cache({"evict", "--max-size", "0", "--dry-run", "--json"}));
  EXPECT_EQ(num(r.json(), "removed_inodes"), 4u);
  EXPECT_EQ(contents(cache()), before);
  EXPECT_EQ(count_objects(), objects);
}

// --- progress ---------------------------------------------------------------

TEST_F(Cachectl, ProgressOnlyOnATerminal) {
  write(cache() / "a", "x");
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
  ASSERT_GE(slave, 0);
  Child c(with_cache({"import"}), {}, slave);
  ::close(slave);
  const Result r = c.finish();
  std::string tty;
  char buf[4096];
  ::fcntl(master, F_SETFL, O_NONBLOCK);
  for (ssize_t n; (n = ::read(master, buf, sizeof buf)) > 0;)
    tty.append(buf, static_cast<size_t>(n));
  ::close(master);
  EXPECT_EQ(r.code(), 0);
  EXPECT_NE(tty.find("\033[K"), std::string::npos);  // drew (and cleared) its line
  EXPECT_NE(r.out.find("adopted        1"), std::string::npos) << r.out;
}

// --- bad input --------------------------------------------------------------

TEST_F(Cachectl, BadInputIsOneLineAndExitTwo) {
  const std::string c = cache().string();
  expect_usage_error({}, "missing subcommand");
  expect_usage_error({"frobnicate"}, "unknown subcommand 'frobnicate'");
  expect_usage_error({"--cache-dir", c, "frobnicate"}, "unknown subcommand 'frobnicate'");
  expect_usage_error(with_cache({"evict", "--max-size", "10Q"}), "--max-size '10Q': not a size");
  expect_usage_error(with_cache({"evict", "--max-size", "1.5"}), "--max-size '1.5'");
  expect_usage_error(with_cache({"evict", "--older-than", "3x"}), "--older-than '3x': not an age");
  expect_usage_error(with_cache({"evict", "--older-than", "30"}), "--older-than '30'");
  expect_usage_error(with_cache({"evict"}), "give one of --max-size SIZE or --older-than AGE");
  expect_usage_error(with_cache({"evict", "--max-size", "1G", "--older-than", "1d"}), "not both");
  expect_usage_error(with_cache({"import", (root_ / "nope").string()}),
                     "import: DIR '" + (root_ / "nope").string() + "': No such file or directory");
  write(root_ / "file", "x");
  expect_usage_error(with_cache({"import", (root_ / "file").string()}), "not a directory");
  // No store yet: only import creates one.
  for (const char* cmd : {"stats", "verify", "gc"}) {
    expect_usage_error(with_cache({cmd}), "store '" + store().string() + "'");
  }
  expect_usage_error(with_cache({"evict", "--older-than", "1d"}), "store '" + store().string());
  // A directory that is not a store is refused, never initialised.
  write(root_ / "notstore/precious", "data");
  for (const char* cmd : {"import", "stats", "verify", "gc"}) {
    expect_usage_error(with_cache({"--store", (root_ / "notstore").string(), cmd}),
                       "is not a cachefs store");
  }
  EXPECT_FALSE(fs::exists(root_ / "notstore/objects"));
  expect_usage_error({"stats", "--mount", root_.string()},
                     "--mount '" + root_.string() + "' is not a cachefs mount");
  expect_usage_error({"stats", "--mount", (root_ / "nope").string()}, "No such file or directory");
  expect_usage_error({"--cache-dir", (root_ / "nope").string(), "stats"},
                     "cache directory '" + (root_ / "nope").string() + "'");
  expect_usage_error({"--cache-dir", c, "--define-cache-directories", c + "=[z-a]", "stats"},
                     "invalid regex");
  expect_usage_error({"--cache-dir", c, "--resolution-policy", "lax", "stats"}, "lax");
  expect_usage_error({"gc"}, "no store");
  expect_usage_error({"stats", "--store", store().string()}, "stats needs the cache directories");
  expect_usage_error(with_cache({"gc", "--bogus"}), "--bogus");
  expect_usage_error(with_cache({"import", "-j", "0"}), "-j");
}

TEST_F(Cachectl, StoreComesFromFlagConfigOrEnvironment) {
  write(cache() / "a", "x");
  const fs::path elsewhere = root_ / "store2";
  ASSERT_EQ(run(with_cache({"import", "--store", elsewhere.string()})).code(), 0);
  EXPECT_TRUE(fs::exists(elsewhere / "cachefs-store"));
  EXPECT_FALSE(fs::exists(store()));
  Result r = run({"gc"}, {"CACHEFS_STORE=" + elsewhere.string()});
  EXPECT_EQ(r.code(), 0) << r.err;
  write(root_ / "c.yaml",
        "cache-directory: " + cache().string() + "\nstore: " + elsewhere.string() + "\n");
  r = run({"--config", (root_ / "c.yaml").string(), "stats", "--json"},
          {"CACHEFS_STORE=/nonexistent"});
  EXPECT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(r.json().find("store")->str(), elsewhere.string());
}

TEST_F(Cachectl, HelpAndVersion) {
  Result r = run({"--help"});
  EXPECT_EQ(r.code(), 0);
  EXPECT_NE(r.out.find("--cache-dir"), std::string::npos);
  EXPECT_NE(r.out.find("evict"), std::string::npos);
  r = run({"evict", "--help"});
  EXPECT_EQ(r.code(), 0);
  EXPECT_NE(r.out.find("--max-size"), std::string::npos);
  r = run({"--version"});
  EXPECT_EQ(r.out.rfind("cachectl ", 0), 0u);
}

}  // namespace

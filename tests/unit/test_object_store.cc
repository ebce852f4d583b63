// The object store on a real directory: naming, layout checks, adopting,
// sharing and replacing, private copies.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.h"
#include "store/object_store.h"

namespace fs = std::filesystem;
using cachefs::UniqueFd;
using cachefs::store::Hash128;
using cachefs::store::ObjectKey;
using cachefs::store::Skip;
using cachefs::store::Store;

namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/var/tmp/cachefs-store-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    fs::create_directories(root_ / "tree");
  }
  void TearDown() override { fs::remove_all(root_); }

  void write(const fs::path& p, const std::string& data, mode_t mode = 0644) {
    std::ofstream(p, std::ios::binary) << data;
    ::chmod(p.c_str(), mode);
  }
  static std::string read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // Dedups one file the way import does; returns the plan's outcome.
  std::string dedup(Store& s, const fs::path& p) {
    UniqueFd dir(::open(p.parent_path().c_str(), O_RDONLY | O_DIRECTORY));
    UniqueFd fd(::openat(dir.get(), p.filename().c_str(), O_RDONLY));
    struct stat st {};
    ::fstat(fd.get(), &st);
    if (s.skip_reason(fd.get(), st) != Skip::kNone) return "skip";
    Store::Plan plan;
    if (int err = s.plan(fd.get(), st, plan)) return "err " + std::to_string(err);
    if (plan.collision) return "collision";
    if (!plan.object) return s.adopt(fd.get(), plan.key) == 0 ? "adopted" : "adopt failed";
    return s.replace(dir.get(), p.filename().c_str(), st.st_dev, st.st_ino, plan.object.get()) == 0
               ? "linked"
               : "replace failed";
  }

  fs::path root_;
};

TEST(ObjectKeyTest, NameRoundTrips) {
  ObjectKey k{Hash128{0x0123456789abcdefULL, 0xfedcba9876543210ULL}, 0755, 1000, 50};
  EXPECT_EQ(k.name(), "0123456789abcdeffedcba9876543210.0755.1000.50");
  EXPECT_EQ(k.fanout(), "01");
  auto back = ObjectKey::parse(k.name());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, k);
}

TEST(ObjectKeyTest, RejectsNonCanonicalNames) {
  for (const char* bad : {"", "x", "0123456789abcdeffedcba9876543210",
                          "0123456789abcdeffedcba9876543210.0755.1000",
                          "0123456789ABCDEFFEDCBA9876543210.0755.1000.50",
                          "0123456789abcdeffedcba9876543210.0855.1000.50",
                          "0123456789abcdeffedcba9876543210.0755.01000.50",
                          "0123456789abcdeffedcba9876543210.0755.1000.50.1",
                          "0123456789abcdeffedcba987654321.0755.1000.50"}) {
    EXPECT_FALSE(ObjectKey::parse(bad)) << bad;
  }
}

TEST(HashTest, FileAndBufferAgree) {
  const std::string data(3 << 20, 'q');
  char tmpl[] = "/var/tmp/cachefs-hash-XXXXXX";
  UniqueFd fd(::mkstemp(tmpl));
  ASSERT_EQ(::write(fd.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ::unlink(tmpl);
  Hash128 h;
  ASSERT_EQ(cachefs::store::hash_fd(fd.get(), data.size(), h), 0);
  EXPECT_EQ(h, cachefs::store::hash_bytes(data.data(), data.size()));
  EXPECT_NE(h, cachefs::store::hash_bytes(data.data(), data.size() - 1));
  // Asked for more than there is: the file changed under us.
  EXPECT_EQ(cachefs::store::hash_fd(fd.get(), data.size() + 1, h), EAGAIN);
}

TEST_F(StoreTest, InitialisesAnEmptyDirectory) {
  auto s = Store::open((root_ / "store").string(), true);
  EXPECT_TRUE(fs::is_regular_file(root_ / "store" / "cachefs-store"));
  EXPECT_TRUE(fs::is_directory(root_ / "store" / "objects"));
  // And opens it again, created or not.
  EXPECT_NO_THROW(Store::open((root_ / "store").string(), false));
}

// Two daemons starting on one fresh cache create its store at the same time:
// the second sees the first's objects/ before its marker and must not take the
// half-made store for somebody's data.
TEST_F(StoreTest, FinishesAStoreAnotherProcessIsCreating) {
  fs::create_directories(root_ / "store" / "objects");
  fs::create_directories(root_ / "store" / "tmp");
  EXPECT_NO_THROW(Store::open((root_ / "store").string(), true));
  EXPECT_TRUE(fs::is_regular_file(root_ / "store" / "cachefs-store"));
  // Not without `create`, and not when something else is there.
  fs::create_directories(root_ / "half" / "objects");
  EXPECT_THROW(Store::open((root_ / "half").string(), false), cachefs::UsageError);
  write(root_ / "half" / "precious", "data");
  EXPECT_THROW(Store::open((root_ / "half").string(), true), cachefs::UsageError);
}

TEST_F(StoreTest, RefusesADirectoryThatIsNotAStore) {
  fs::create_directories(root_ / "notstore");
  write(root_ / "notstore" / "precious", "data");
  try {
    Store::open((root_ / "notstore").string(), true);
    FAIL() << "opened a directory that is not a store";
  } catch (const cachefs::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("is not a cachefs store"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read(root_ / "notstore" / "precious"), "data");
  EXPECT_FALSE(fs::exists(root_ / "notstore" / "objects"));
  // Without `create`, even an empty directory is not a store.
  fs::create_directories(root_ / "empty");
  EXPECT_THROW(Store::open((root_ / "empty").string(), false), cachefs::UsageError);
}

TEST_F(StoreTest, RefusesAnotherFormat) {
  Store::open((root_ / "store").string(), true);
  write(root_ / "store" / "cachefs-store", "cachefs object store\nformat 99\n");
  try {
    Store::open((root_ / "store").string(), true);
    FAIL();
  } catch (const cachefs::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("format 99"), std::string::npos) << e.what();
  }
}

TEST_F(StoreTest, IdenticalFilesShareOneObject) {
  auto s = Store::open((root_ / "store").string(), true);
  write(root_ / "tree" / "a", "same bytes");
  write(root_ / "tree" / "b", "same bytes");
  write(root_ / "tree" / "c", "other bytes");
  EXPECT_EQ(dedup(*s, root_ / "tree" / "a"), "adopted");
  EXPECT_EQ(dedup(*s, root_ / "tree" / "b"), "linked");
  EXPECT_EQ(dedup(*s, root_ / "tree" / "c"), "adopted");
  struct stat a {}, b {}, c {};
  ::stat((root_ / "tree" / "a").c_str(), &a);
  ::stat((root_ / "tree" / "b").c_str(), &b);
  ::stat((root_ / "tree" / "c").c_str(), &c);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 3u);  // a, b and the object
  EXPECT_NE(a.st_ino, c.st_ino);
  EXPECT_EQ(read(root_ / "tree" / "b"), "same bytes");
  // The shared inode knows it is an object; a second pass leaves it alone.
  UniqueFd fd(::open((root_ / "tree" / "a").c_str(), O_PATH));
  EXPECT_TRUE(cachefs::store::object_name(fd.get(), a, a.st_dev));
  EXPECT_EQ(dedup(*s, root_ / "tree" / "a"), "skip");
}

TEST_F(StoreTest, ModeAndOwnerKeepFilesApart) {
  auto s = Store::open((root_ / "store").string(), true);
  write(root_ / "tree" / "a", "same bytes", 0644);
  write(root_ / "tree" / "x", "same bytes", 0755);
  EXPECT_EQ(dedup(*s, root_ / "tree" / "a"), "adopted");
  EXPECT_EQ(dedup(*s, root_ / "tree" / "x"), "adopted");
  struct stat a {}, x {};
  ::stat((root_ / "tree" / "a").c_str(), &a);
  ::stat((root_ / "tree" / "x").c_str(), &x);
  EXPECT_NE(a.st_ino, x.st_ino);
  EXPECT_EQ(x.st_mode & 07777, 0755u);
}

TEST_F(StoreTest, SkipsWhatCannotBeShared) {
  auto s = Store::open((root_ / "store").string(), true);
  write(root_ / "tree" / "empty", "");
  write(root_ / "tree" / "suid", "x", 04755);
  write(root_ / "tree" / "linked", "y");
  fs::create_hard_link(root_ / "tree" / "linked", root_ / "tree" / "linked2");
  write(root_ / "tree" / "attrs", "z");
  ASSERT_EQ(::setxattr((root_ / "tree" / "attrs").c_str(), "user.k", "v", 1, 0), 0);
  for (const char* n : {"empty", "suid", "linked", "attrs"}) {
    EXPECT_EQ(dedup(*s, root_ / "tree" / n), "skip") << n;
  }
}

TEST_F(StoreTest, ReplaceRefusesANameThatMovedOn) {
  auto s = Store::open((root_ / "store").string(), true);
  write(root_ / "tree" / "a", "bytes");
  write(root_ / "tree" / "b", "bytes");
  EXPECT_EQ(dedup(*s, root_ / "tree" / "a"), "adopted");
  UniqueFd dir(::open((root_ / "tree").c_str(), O_RDONLY | O_DIRECTORY));
  UniqueFd obj(::open((root_ / "tree" / "a").c_str(), O_RDONLY));
  // Expecting an inode that is not the one at "b": nothing changes.
  EXPECT_EQ(s->replace(dir.get(), "b", 0, 12345, obj.get()), ESTALE);
  struct stat a {}, b {};
  ::stat((root_ / "tree" / "a").c_str(), &a);
  ::stat((root_ / "tree" / "b").c_str(), &b);
  EXPECT_NE(a.st_ino, b.st_ino);
  EXPECT_EQ(read(root_ / "tree" / "b"), "bytes");
  EXPECT_TRUE(fs::is_empty(root_ / "store" / "tmp"));
}

TEST_F(StoreTest, PrivateCopyKeepsMetadataAndTruncates) {
  write(root_ / "tree" / "a", "0123456789", 0640);
  struct timespec t[2] = {{1000, 0}, {2000, 0}};
  ::utimensat(AT_FDCWD, (root_ / "tree" / "a").c_str(), t, 0);
  UniqueFd dir(::open((root_ / "tree").c_str(), O_RDONLY | O_DIRECTORY));
  UniqueFd src(::open((root_ / "tree" / "a").c_str(), O_RDONLY));
  struct stat st {};
  ::fstat(src.get(), &st);
  int err = 0;
  UniqueFd copy = Store::private_copy(dir.get(), src.get(), st, 4, err);
  ASSERT_TRUE(copy) << err;
  struct stat cs {};
  ::fstat(copy.get(), &cs);
  EXPECT_EQ(cs.st_size, 4);
  EXPECT_EQ(cs.st_mode & 07777, 0640u);
  EXPECT_EQ(cs.st_mtim.tv_sec, 2000);
  EXPECT_EQ(cs.st_nlink, 0u);
}

TEST_F(StoreTest, ForEachEntryNamesFanOutsAndStrays) {
  auto s = Store::open((root_ / "store").string(), true);
  write(root_ / "tree" / "a", "object bytes");
  ASSERT_EQ(dedup(*s, root_ / "tree" / "a"), "adopted");
  write(root_ / "store" / "objects" / "README", "not a fan-out directory");
  fs::create_directories(root_ / "store" / "objects" / "zz");
  write(root_ / "store" / "objects" / "zz" / "junk", "a stray name");
  std::vector<std::string> strays;
  int objects = 0;
  s->for_each_entry([&](int dirfd, const std::string& fan, const char* name,
                        const std::optional<ObjectKey>& key) {
    struct stat st {};
    EXPECT_EQ(::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW), 0) << fan << "/" << name;
    if (key) {
      EXPECT_EQ(fan, key->fanout());
      ++objects;
    } else {
      strays.push_back(fan + "/" + name);
    }
  });
  EXPECT_EQ(objects, 1);
  EXPECT_EQ(strays, (std::vector<std::string>{"/README", "zz/junk"}));
  // for_each_object sees what is inside fan-out directories only, as before.
  std::vector<std::string> names;
  s->for_each_object([&](int, const char* name, const std::optional<ObjectKey>& key) {
    names.push_back(key ? "object" : name);
  });
  EXPECT_EQ(names, (std::vector<std::string>{"object", "junk"}));
}

TEST_F(StoreTest, CleanTmpRemovesLeftoversOfDeadProcesses) {
  auto s = Store::open((root_ / "store").string(), true);
  write(root_ / "store" / "tmp" / "999999999-0", "left by a dead process");
  write(root_ / "store" / "tmp" / (std::to_string(::getpid()) + "-7"), "ours, in progress");
  s->clean_tmp(std::chrono::hours(1));
  EXPECT_FALSE(fs::exists(root_ / "store" / "tmp" / "999999999-0"));
  EXPECT_TRUE(fs::exists(root_ / "store" / "tmp" / (std::to_string(::getpid()) + "-7")));
}

}  // namespace

// Routing on a real mount: which backing directory a name lands in, strict and
// weak lookup, the union listing, parent chains, EXDEV, directory renames across
// branches, and the hidden store.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "mount_fixture.h"

namespace cachefs_test {
namespace {

class RoutesTest : public MountTest {
 protected:
  // b1: object files, b2: everything under /gen/, b0: the rest.
  std::vector<std::string> Routes(const char* policy = "strict") const {
    return {"--define-cache-directories",
            Backing(1) + "=\\.o$|" + Backing(2) + "=^/gen/|" + Backing(0) + "=",
            "--resolution-policy", policy};
  }
  // Which backing directories hold `rel` (lstat).
  std::vector<int> Holders(const std::string& rel) const {
    std::vector<int> out;
    for (int b = 0; b < 3; ++b) {
      if (Exists(InBacking(b, rel))) out.push_back(b);
    }
    return out;
  }
};

using Ints = std::vector<int>;

TEST_F(RoutesTest, FilesLandInTheDirectoryTheirRouteNames) {
  ASSERT_TRUE(StartMount(Routes()));
  ASSERT_TRUE(WriteFile(Mnt("main.o"), "obj"));
  ASSERT_TRUE(WriteFile(Mnt("main.c"), "src"));
  ASSERT_SYS_OK(::mkdir(Mnt("gen").c_str(), 0755));
  EXPECT_EQ(Holders("gen"), Ints{2});  // "/gen/" matches ^/gen/
  ASSERT_TRUE(WriteFile(Mnt("gen/out.txt"), "generated"));
  ASSERT_TRUE(WriteFile(Mnt("gen/first.o"), "first route wins"));
  ASSERT_SYS_OK(::mkdir(Mnt("src").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("src/lib.o"), "lib"));
  ASSERT_TRUE(WriteFile(Mnt("src/lib.o.d"), "dep"));  // \.o$ is searched, so not this
  ASSERT_SYS_OK(::symlink("main.o", Mnt("alias.o").c_str()));

  EXPECT_EQ(Holders("main.o"), Ints{1});
  EXPECT_EQ(Holders("main.c"), Ints{0});
  EXPECT_EQ(Holders("gen"), (Ints{1, 2}));  // b1 got the parent of gen/first.o
  EXPECT_EQ(Holders("gen/out.txt"), Ints{2});
  EXPECT_EQ(Holders("gen/first.o"), Ints{1});
  EXPECT_EQ(Holders("src/lib.o"), Ints{1});
  EXPECT_EQ(Holders("src/lib.o.d"), Ints{0});
  EXPECT_EQ(Holders("alias.o"), Ints{1});
  EXPECT_EQ(ReadFile(InBacking(1, "gen/first.o")), "first route wins");
  EXPECT_EQ(ReadFile(Mnt("gen/first.o")), "first route wins");
  EXPECT_EQ(ListDirSet(Mnt("gen")), (std::set<std::string>{"out.txt", "first.o"}));
  // mkdir of a name matching a file route: directories are matched with a trailing '/'.
  ASSERT_SYS_OK(::mkdir(Mnt("dir.o").c_str(), 0755));
  EXPECT_EQ(Holders("dir.o"), Ints{0});
}

TEST_F(RoutesTest, StrictHidesAFileInASecondCandidate) {
  ASSERT_TRUE(WriteFile(InBacking(0, "misplaced.o"), "in the catch-all"));
  temp_.MakeDir("backing/b0/sub");
  ASSERT_TRUE(WriteFile(InBacking(0, "sub/deep.o"), "deep"));
  ASSERT_TRUE(StartMount(Routes("strict")));
  struct stat st {};
  EXPECT_ERRNO(ENOENT, ::stat(Mnt("misplaced.o").c_str(), &st));
  EXPECT_ERRNO(ENOENT, ::stat(Mnt("sub/deep.o").c_str(), &st));
  EXPECT_FALSE(ListDirSet(Mnt()).count("misplaced.o"));
  EXPECT_TRUE(ListDir(Mnt("sub")).empty());
  // Creating the name makes a new file in the first candidate; the hidden one stays.
  ASSERT_TRUE(WriteFile(Mnt("misplaced.o"), "new", O_WRONLY | O_CREAT | O_EXCL));
  EXPECT_EQ(ReadFile(Mnt("misplaced.o")), "new");
  EXPECT_EQ(ReadFile(InBacking(1, "misplaced.o")), "new");
  EXPECT_EQ(ReadFile(InBacking(0, "misplaced.o")), "in the catch-all");
  // Unlinking the visible one does not uncover the hidden one.
  ASSERT_SYS_OK(::unlink(Mnt("misplaced.o").c_str()));
  EXPECT_ERRNO(ENOENT, ::stat(Mnt("misplaced.o").c_str(), &st));
}

TEST_F(RoutesTest, WeakFindsAFileInASecondCandidate) {
  ASSERT_TRUE(WriteFile(InBacking(0, "misplaced.o"), "in the catch-all"));
  temp_.MakeDir("backing/b0/sub");
  ASSERT_TRUE(WriteFile(InBacking(0, "sub/deep.o"), "deep"));
  ASSERT_TRUE(StartMount(Routes("weak")));
  EXPECT_EQ(ReadFile(Mnt("misplaced.o")), "in the catch-all");
  EXPECT_EQ(ReadFile(Mnt("sub/deep.o")), "deep");
  EXPECT_TRUE(ListDirSet(Mnt()).count("misplaced.o"));
  EXPECT_EQ(ListDirSet(Mnt("sub")), (std::set<std::string>{"deep.o"}));
  // Writes go to the file where it was found.
  ASSERT_TRUE(WriteFile(Mnt("misplaced.o"), "rewritten", O_WRONLY | O_TRUNC));
  EXPECT_EQ(ReadFile(InBacking(0, "misplaced.o")), "rewritten");
  EXPECT_FALSE(Exists(InBacking(1, "misplaced.o")));
  // New files still go to the first candidate.
  ASSERT_TRUE(WriteFile(Mnt("fresh.o"), "fresh"));
  EXPECT_EQ(Holders("fresh.o"), Ints{1});
  // A copy in the first candidate shadows the one further down.
  ASSERT_TRUE(WriteFile(InBacking(1, "both.o"), "first"));
  ASSERT_TRUE(WriteFile(InBacking(0, "both.o"), "second"));
  EXPECT_EQ(ReadFile(Mnt("both.o")), "first");
  // Unlink removes every copy the name could resolve to.
  ASSERT_SYS_OK(::unlink(Mnt("both.o").c_str()));
  struct stat st {};
  EXPECT_ERRNO(ENOENT, ::stat(Mnt("both.o").c_str(), &st));
  EXPECT_TRUE(Holders("both.o").empty());
}

TEST_F(RoutesTest, FirstCandidateShadowsInStrictToo) {
  ASSERT_TRUE(WriteFile(InBacking(1, "both.o"), "first"));
  ASSERT_TRUE(WriteFile(InBacking(0, "both.o"), "second"));
  ASSERT_TRUE(StartMount(Routes("strict")));
  EXPECT_EQ(ReadFile(Mnt("both.o")), "first");
  const auto v = ListDir(Mnt());
  EXPECT_EQ(std::count(v.begin(), v.end(), "both.o"), 1);
}

TEST_F(RoutesTest, UnionListingHasNoDuplicatesAndNoInvisibleChildren) {
  // "d" exists in all three branches with overlapping children.
  for (int b = 0; b < 3; ++b) temp_.MakeDir("backing/b" + std::to_string(b) + "/d/common");
  ASSERT_TRUE(WriteFile(InBacking(0, "d/only0.txt"), "0"));
  ASSERT_TRUE(WriteFile(InBacking(1, "d/only1.o"), "1"));
  ASSERT_TRUE(WriteFile(InBacking(1, "d/misrouted.txt"), "invisible: .txt routes to b0"));
  ASSERT_TRUE(WriteFile(InBacking(2, "d/stray.o"), "invisible: .o routes to b1"));
  ASSERT_TRUE(WriteFile(InBacking(0, "d/dup.o"), "hidden copy"));
  ASSERT_TRUE(WriteFile(InBacking(1, "d/dup.o"), "visible copy"));
  temp_.MakeDir("backing/b2/d/subdir_in_2");
  ASSERT_TRUE(StartMount(Routes("strict")));

  const auto v = ListDir(Mnt("d"));
  const std::set<std::string> s(v.begin(), v.end());
  EXPECT_EQ(s.size(), v.size()) << "duplicates in the union listing";
  EXPECT_EQ(s, (std::set<std::string>{"common", "only0.txt", "only1.o", "dup.o", "subdir_in_2"}));
  // Every listed name can be looked up, with the type the listing gave.
  for (const std::string& name : s) {
    struct stat st {};
    EXPECT_EQ(::lstat(Mnt("d/" + name).c_str(), &st), 0) << name << ": " << ErrnoName(errno);
  }
  EXPECT_EQ(ReadFile(Mnt("d/dup.o")), "visible copy");
  struct stat st {};
  EXPECT_ERRNO(ENOENT, ::stat(Mnt("d/misrouted.txt").c_str(), &st));
  EXPECT_ERRNO(ENOENT, ::stat(Mnt("d/stray.o").c_str(), &st));
  // Directories are one entry however many branches hold them.
  EXPECT_TRUE(ListDir(Mnt("d/common")).empty());
  // The listing changes with creations made through the mount.
  ASSERT_TRUE(WriteFile(Mnt("d/added.o"), "added"));
  ASSERT_TRUE(WriteFile(Mnt("d/added.txt"), "added"));
  const auto v2 = ListDir(Mnt("d"));
  EXPECT_EQ(std::set<std::string>(v2.begin(), v2.end()).size(), v2.size());
  EXPECT_EQ(v2.size(), 7u);
}

TEST_F(RoutesTest, WeakListingShowsEveryCandidateOnce) {
  temp_.MakeDir("backing/b0/w");
  temp_.MakeDir("backing/b1/w");
  ASSERT_TRUE(WriteFile(InBacking(0, "w/a.o"), "a0"));
  ASSERT_TRUE(WriteFile(InBacking(1, "w/a.o"), "a1"));
  ASSERT_TRUE(WriteFile(InBacking(0, "w/b.o"), "b0"));
  ASSERT_TRUE(WriteFile(InBacking(1, "w/c.txt"), "invisible: not a candidate"));
  ASSERT_TRUE(StartMount(Routes("weak")));
  const auto v = ListDir(Mnt("w"));
  EXPECT_EQ(v.size(), 2u);
  EXPECT_EQ(std::set<std::string>(v.begin(), v.end()), (std::set<std::string>{"a.o", "b.o"}));
  EXPECT_EQ(ReadFile(Mnt("w/a.o")), "a1");
  EXPECT_EQ(ReadFile(Mnt("w/b.o")), "b0");
}

TEST_F(RoutesTest, ParentChainIsCreatedInTheTargetDirectory) {
  ASSERT_TRUE(StartMount(Routes()));
  ASSERT_SYS_OK(::mkdir(Mnt("a").c_str(), 0750));
  ASSERT_SYS_OK(::mkdir(Mnt("a/b").c_str(), 0705));
  ASSERT_SYS_OK(::mkdir(Mnt("a/b/c").c_str(), 0755));
  ASSERT_SYS_OK(::chown(Mnt("a/b").c_str(), 4321, 8765));
  EXPECT_EQ(Holders("a/b/c"), Ints{0});
  ASSERT_TRUE(WriteFile(Mnt("a/b/c/leaf.o"), "leaf"));
  EXPECT_EQ(Holders("a/b/c/leaf.o"), Ints{1});
  EXPECT_EQ(ReadFile(InBacking(1, "a/b/c/leaf.o")), "leaf");
  // The chain copies the modes and owners the mount shows.
  struct stat st {};
  ASSERT_SYS_OK(::stat(InBacking(1, "a").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  ASSERT_SYS_OK(::stat(InBacking(1, "a/b").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0705u);
  EXPECT_EQ(st.st_uid, 4321u);
  EXPECT_EQ(st.st_gid, 8765u);
  // The union directory still lists both kinds of children.
  ASSERT_TRUE(WriteFile(Mnt("a/b/c/leaf.c"), "c"));
  EXPECT_EQ(ListDirSet(Mnt("a/b/c")), (std::set<std::string>{"leaf.o", "leaf.c"}));
  // Hard links and symlinks follow the same rule.
  ASSERT_SYS_OK(::mkdir(Mnt("x").c_str(), 0755));
  ASSERT_SYS_OK(::symlink("../a", Mnt("x/sym.o").c_str()));
  EXPECT_EQ(Holders("x/sym.o"), Ints{1});
}

TEST_F(RoutesTest, RenameAcrossRoutesIsExdev) {
  ASSERT_TRUE(StartMount(Routes()));
  ASSERT_TRUE(WriteFile(Mnt("x.c"), "c"));
  ASSERT_TRUE(WriteFile(Mnt("y.o"), "o"));
  EXPECT_ERRNO(EXDEV, ::rename(Mnt("x.c").c_str(), Mnt("x.o").c_str()));
  EXPECT_ERRNO(EXDEV, ::rename(Mnt("y.o").c_str(), Mnt("y.c").c_str()));
  EXPECT_EQ(ReadFile(Mnt("x.c")), "c");
  EXPECT_EQ(ReadFile(Mnt("y.o")), "o");
  EXPECT_FALSE(Exists(Mnt("x.o")));
  // Over an existing file of the other route, too.
  ASSERT_TRUE(WriteFile(Mnt("z.o"), "z"));
  EXPECT_ERRNO(EXDEV, ::rename(Mnt("x.c").c_str(), Mnt("z.o").c_str()));
  EXPECT_EQ(ReadFile(Mnt("z.o")), "z");
  // Within a route, a rename works, into other directories as well.
  ASSERT_SYS_OK(::mkdir(Mnt("objs").c_str(), 0755));
  ASSERT_SYS_OK(::rename(Mnt("y.o").c_str(), Mnt("objs/y2.o").c_str()));
  EXPECT_EQ(Holders("objs/y2.o"), Ints{1});
  EXPECT_EQ(ReadFile(Mnt("objs/y2.o")), "o");
  // A hard link across routes is EXDEV as well.
  EXPECT_ERRNO(EXDEV, ::link(Mnt("x.c").c_str(), Mnt("x-link.o").c_str()));
  // mv's fallback (copy, then unlink) works.
  ASSERT_TRUE(WriteFile(Mnt("x.o"), *ReadFile(Mnt("x.c"))));
  ASSERT_SYS_OK(::unlink(Mnt("x.c").c_str()));
  EXPECT_EQ(Holders("x.o"), Ints{1});
}

TEST_F(RoutesTest, DirectoryRenameCoversEveryBranch) {
  ASSERT_TRUE(StartMount(Routes()));
  ASSERT_SYS_OK(::mkdir(Mnt("proj").c_str(), 0755));
  ASSERT_SYS_OK(::mkdir(Mnt("proj/sub").c_str(), 0755));
  ASSERT_TRUE(WriteFile(Mnt("proj/a.o"), "a.o"));
  ASSERT_TRUE(WriteFile(Mnt("proj/a.c"), "a.c"));
  ASSERT_TRUE(WriteFile(Mnt("proj/sub/b.o"), "b.o"));
  EXPECT_EQ(Holders("proj"), (Ints{0, 1}));
  ASSERT_SYS_OK(::rename(Mnt("proj").c_str(), Mnt("renamed").c_str()));
  EXPECT_TRUE(Holders("proj").empty());
  EXPECT_EQ(Holders("renamed"), (Ints{0, 1}));
  EXPECT_EQ(ReadFile(Mnt("renamed/a.o")), "a.o");
  EXPECT_EQ(ReadFile(Mnt("renamed/a.c")), "a.c");
  EXPECT_EQ(ReadFile(Mnt("renamed/sub/b.o")), "b.o");
  EXPECT_EQ(ListDirSet(Mnt("renamed")), (std::set<std::string>{"a.o", "a.c", "sub"}));
  struct stat st {};
  EXPECT_ERRNO(ENOENT, ::stat(Mnt("proj").c_str(), &st));
  // Into a directory that routes elsewhere (/gen/ -> b2): the tree keeps its files
  // where they are, under the new name.
  ASSERT_SYS_OK(::mkdir(Mnt("gen").c_str(), 0755));
  ASSERT_SYS_OK(::rename(Mnt("renamed").c_str(), Mnt("gen/moved").c_str()));
  EXPECT_EQ(ReadFile(Mnt("gen/moved/a.o")), "a.o");
  EXPECT_EQ(ReadFile(Mnt("gen/moved/sub/b.o")), "b.o");
  EXPECT_EQ(Holders("gen/moved/a.o"), Ints{1});
}

TEST_F(RoutesTest, StoreIsHiddenFromListingAndLookup) {
  ASSERT_TRUE(StartMount(Routes()));
  ASSERT_TRUE(Exists(InBacking(0, ".cachefs")));
  EXPECT_FALSE(ListDirSet(Mnt()).count(".cachefs"));
  struct stat st {};
  EXPECT_ERRNO(ENOENT, ::stat(Mnt(".cachefs").c_str(), &st));
  EXPECT_ERRNO(ENOENT, ::open(Mnt(".cachefs/x").c_str(), O_RDONLY | O_CLOEXEC));
  // It cannot be created over, nor written into.
  EXPECT_NE(::mkdir(Mnt(".cachefs").c_str(), 0755), 0);
  const int fd = ::open(Mnt(".cachefs").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  EXPECT_LT(fd, 0);
  if (fd >= 0) ::close(fd);
  EXPECT_NE(::symlink("x", Mnt(".cachefs").c_str()), 0);
  ASSERT_TRUE(WriteFile(Mnt("f.c"), "f"));
  EXPECT_NE(::rename(Mnt("f.c").c_str(), Mnt(".cachefs").c_str()), 0);
  ASSERT_SYS_OK(::lstat(InBacking(0, ".cachefs").c_str(), &st));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  // Only at the top level: a .cachefs elsewhere is an ordinary name.
  ASSERT_SYS_OK(::mkdir(Mnt("sub").c_str(), 0755));
  ASSERT_SYS_OK(::mkdir(Mnt("sub/.cachefs").c_str(), 0755));
  EXPECT_TRUE(ListDirSet(Mnt("sub")).count(".cachefs"));
}

TEST_F(RoutesTest, StoreElsewhereIsNotPartOfTheView) {
  temp_.MakeDir("store");
  std::vector<std::string> args = Routes();
  args.insert(args.end(), {"--store", temp_.Path("store")});
  ASSERT_TRUE(StartMount(args));
  EXPECT_FALSE(Exists(InBacking(0, ".cachefs")));
  ASSERT_TRUE(WriteFile(Mnt(".cachefs"), "an ordinary name now"));
  EXPECT_EQ(ReadFile(InBacking(0, ".cachefs")), "an ordinary name now");
}

}  // namespace
}  // namespace cachefs_test

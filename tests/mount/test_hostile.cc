// Hostile input: a backing tree changed under the daemon to race it out of its
// confinement, and names no tool should have to handle but builds produce —
// newlines, invalid UTF-8, 255-byte names, 4095-byte paths.
//
// CACHEFS_RACE_SECONDS (default 3) sets how long the race runs.
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "reliability_util.h"

namespace cachefs_test {
namespace {

using namespace std::chrono_literals;

class HostileTest : public MountTest {};

// One thread swaps a directory in the backing tree with a symlink to a
// directory outside (renameat2 RENAME_EXCHANGE, in a loop) while others
// create, write, read, list, mkdir and rename below it through the mount. The
// daemon resolves beneath its directory descriptors without following links, so
// whatever the interleaving, nothing outside is created or changed.
TEST_F(HostileTest, RenameExchangeRaceNeverEscapesTheBackingTree) {
  // The victim is a sibling of the backing directories, the link relative: seen
  // from the backing tree it leads there, seen from the mount (one level less
  // deep) it leads to a name that does not exist, so a client following it
  // through the mount (which the kernel does, as it should) reaches nothing.
  const std::string victim = temp_.MakeDir("backing/escape");
  ASSERT_TRUE(WriteFile(victim + "/victim", "precious"));
  ASSERT_TRUE(WriteFile(victim + "/f0", "outside f0"));
  ASSERT_SYS_OK(::mkdir((victim + "/sub").c_str(), 0755));
  ASSERT_SYS_OK(::mkdir(InBacking(0, "x").c_str(), 0755));
  ASSERT_SYS_OK(::mkdir(InBacking(0, "x/d").c_str(), 0755));
  ASSERT_TRUE(WriteFile(InBacking(0, "x/d/victim"), "inside"));
  ASSERT_TRUE(WriteFile(InBacking(0, "x/d/f0"), "inside f0"));
  ASSERT_SYS_OK(::symlink("../../escape", InBacking(0, "x/link").c_str()));
  ASSERT_EQ(ReadFile(InBacking(0, "x/link/victim")), "precious");  // the trap is armed
  ASSERT_TRUE(StartMount({"--cache-directory", Backing(0), "--entry-timeout", "0",
                          "--attr-timeout", "0", "--dedup-delay", "0"}));
  const auto outside_before = SnapshotTree(victim);
  const auto top_before = ListDirSet(temp_.root());
  const auto seconds = EnvLong("CACHEFS_RACE_SECONDS", 3);
  std::atomic<bool> stop{false};
  std::atomic<long> swaps{0}, ops{0}, succeeded{0};
  std::thread swapper([&] {
    const std::string a = InBacking(0, "x/d"), b = InBacking(0, "x/link");
    while (!stop.load()) {
      if (::syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0)
        swaps.fetch_add(1);
    }
  });
  std::vector<std::thread> clients;
  for (int c = 0; c < 3; ++c) {
    clients.emplace_back([&, c] {
      for (long i = 0; !stop.load(); ++i) {
        const std::string n = std::to_string(c) + "-" + std::to_string(i % 50);
        int ok = 0;
        ok += WriteFile(Mnt("x/d/new" + n), "x");
        ok += WriteFile(Mnt("x/d/victim"), "overwritten", O_WRONLY | O_TRUNC);
        ok += WriteFile(Mnt("x/d/f0"), "appended", O_WRONLY | O_APPEND);
        ok += ReadFile(Mnt("x/d/victim")).has_value();
        ok += ::mkdir(Mnt("x/d/dir" + n).c_str(), 0755) == 0;
        ok += ::symlink("x", Mnt("x/d/sym" + n).c_str()) == 0;
        ok += ::rename(Mnt("x/d/new" + n).c_str(), Mnt("x/d/moved" + n).c_str()) == 0;
        ok += ::truncate(Mnt("x/d/f0").c_str(), 1) == 0;
        ok += ::chmod(Mnt("x/d/victim").c_str(), 0600) == 0;
        ok += ::unlink(Mnt("x/d/moved" + n).c_str()) == 0;
        ok += ListDir(Mnt("x/d")).size() > 0;
        ops.fetch_add(11);
        succeeded.fetch_add(ok);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  swapper.join();
  for (auto& t : clients) t.join();
  ASSERT_FALSE(mount().EndedUnexpectedly().has_value()) << mount().Log();
  EXPECT_EQ(SnapshotTree(victim), outside_before) << "the directory outside changed";
  EXPECT_EQ(ReadFile(victim + "/victim"), "precious");
  EXPECT_EQ(ListDirSet(temp_.root()), top_before) << "something appeared beside the mount";
  EXPECT_GT(swaps.load(), 100) << "the race did not run";
  EXPECT_GT(succeeded.load(), 0) << "nothing went through the mount at all";
  ASSERT_TRUE(mount().Stop());
  EXPECT_EQ(SnapshotTree(victim), outside_before);
  std::printf("[ figures ] race: %ld s, %ld exchanges, %ld operations (%ld succeeded)\n",
              static_cast<long>(seconds), swaps.load(), ops.load(), succeeded.load());
}

// Names are bytes: a newline, invalid UTF-8, a 255-byte name all work like any
// other name (create, stat, list, read, rename, unlink), and land in the
// backing directory byte for byte; a 256-byte name is ENAMETOOLONG.
TEST_F(HostileTest, StrangeNamesAreJustBytes) {
  ASSERT_TRUE(StartMount({"--cache-directory", Backing(0), "--dedup-delay", "0"}));
  const std::vector<std::string> names = {
      "new\nline",        "tab\there",          std::string("\xff\xfe\x80invalid", 10),
      "\xc3\x28 bad utf8", std::string(255, 'n'), "-rf",
      " lead space",      "trail space ",       std::string("\x01\x02\x7f", 3),
      "back\\slash",      "*?[glob]",           "..." ,
  };
  for (const std::string& name : names) {
    SCOPED_TRACE(::testing::PrintToString(name));
    ASSERT_TRUE(WriteFile(Mnt(name), "content of " + name)) << ErrnoName(errno);
    EXPECT_EQ(ReadFile(InBacking(0, name)), "content of " + name);
    EXPECT_EQ(ReadFile(Mnt(name)), "content of " + name);
    ASSERT_SYS_OK(::mkdir(Mnt("dir." + name.substr(0, 200)).c_str(), 0755));
    ASSERT_TRUE(WriteFile(Mnt("dir." + name.substr(0, 200) + "/" + name), "inner"));
  }
  const auto listed = ListDirSet(Mnt());
  for (const std::string& name : names) EXPECT_EQ(listed.count(name), 1u) << ::testing::PrintToString(name);
  EXPECT_EQ(listed.size(), names.size() * 2);
  for (const std::string& name : names) {
    SCOPED_TRACE(::testing::PrintToString(name));
    const std::string renamed = name.substr(0, 250) + ".r";
    ASSERT_SYS_OK(::rename(Mnt(name).c_str(), Mnt(renamed).c_str()));
    EXPECT_EQ(ReadFile(Mnt(renamed)), "content of " + name);
    EXPECT_EQ(ReadFile(Mnt("dir." + name.substr(0, 200) + "/" + name)), "inner");
    ASSERT_SYS_OK(::unlink(Mnt(renamed).c_str()));
    EXPECT_FALSE(Exists(InBacking(0, renamed)));
  }
  EXPECT_ERRNO(ENAMETOOLONG, ::open(Mnt(std::string(256, 'x')).c_str(), O_WRONLY | O_CREAT, 0644));
  EXPECT_ERRNO(ENAMETOOLONG, ::mkdir(Mnt(std::string(256, 'x')).c_str(), 0755));
  ASSERT_FALSE(mount().EndedUnexpectedly().has_value()) << mount().Log();
  ASSERT_TRUE(mount().Stop());
}

// A path of 4095 bytes (PATH_MAX with its NUL) through the mount: directories of
// 200-byte names down to the limit, a file at the bottom; created, read, listed,
// renamed and removed through the mount, present in the backing tree. One byte
// more is ENAMETOOLONG (from the kernel, before the daemon).
TEST_F(HostileTest, PathsOfPathMaxBytes) {
  ASSERT_TRUE(StartMount({"--cache-directory", Backing(0), "--dedup-delay", "0"}));
  std::string path = Mnt();
  std::vector<std::string> dirs;
  const std::string component(200, 'p');
  while (path.size() + 1 + component.size() + 1 + 50 < 4095) {
    path += "/" + component;
    ASSERT_SYS_OK(::mkdir(path.c_str(), 0755));
    dirs.push_back(path);
  }
  // The last name fills the path to exactly 4095 bytes.
  const size_t last_len = 4095 - path.size() - 1;
  ASSERT_LE(last_len, 255u);
  const std::string file = path + "/" + std::string(last_len, 'f');
  ASSERT_EQ(file.size(), 4095u);
  ASSERT_TRUE(WriteFile(file, "deep")) << ErrnoName(errno);
  EXPECT_EQ(ReadFile(file), "deep");
  struct stat st {};
  EXPECT_SYS_OK(::stat(file.c_str(), &st));
  EXPECT_EQ(ListDirSet(path).count(std::string(last_len, 'f')), 1u);
  const std::string other = path + "/" + std::string(last_len, 'g');
  ASSERT_SYS_OK(::rename(file.c_str(), other.c_str()));
  EXPECT_EQ(ReadFile(other), "deep");
  EXPECT_ERRNO(ENAMETOOLONG, ::open((other + "x").c_str(), O_WRONLY | O_CREAT, 0644));
  // In the backing tree (by relative steps: its absolute path is as long).
  {
    Fd dir(::open(Backing(0).c_str(), O_RDONLY | O_DIRECTORY));
    for (size_t i = 0; i < dirs.size(); ++i) {
      Fd sub(::openat(dir.get(), component.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
      ASSERT_TRUE(sub.valid()) << "level " << i;
      dir = std::move(sub);
    }
    Fd f(::openat(dir.get(), std::string(last_len, 'g').c_str(), O_RDONLY));
    ASSERT_TRUE(f.valid());
    char buf[8];
    EXPECT_EQ(::read(f.get(), buf, sizeof buf), 4);
  }
  // And it all goes again, deepest first.
  ASSERT_SYS_OK(::unlink(other.c_str()));
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) ASSERT_SYS_OK(::rmdir(it->c_str()));
  EXPECT_TRUE(ListDir(Mnt()).empty());
  ASSERT_FALSE(mount().EndedUnexpectedly().has_value()) << mount().Log();
  ASSERT_TRUE(mount().Stop());
}

}  // namespace
}  // namespace cachefs_test

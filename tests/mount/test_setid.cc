// Set-user-id and set-group-id bits through the mount. The daemon writes as
// root, and root's writes keep those bits; a local filesystem clears them when
// someone without CAP_FSETID writes or truncates the file (and on chown). The
// kernel leaves that to the daemon (FUSE_HANDLE_KILLPRIV_V2, fs/kernel_io.h):
// these tests write as an ordinary user, in a child process.
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "mount_fixture.h"

namespace cachefs_test {
namespace {

constexpr uid_t kUser = 4321;

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : 0177777;
}

class SetIdTest : public MountTest {
 protected:
  void SetUp() override {
    // The user must be able to reach the mount (the temporary area is 0700).
    ASSERT_SYS_OK(::chmod(temp_.root().c_str(), 0755));
    std::vector<std::string> args = SingleArgs();
    args.insert(args.end(), {"-o", "allow_other"});
    ASSERT_TRUE(StartMount(args));
  }
  // A file through the mount owned by kUser, with `mode`.
  void MakeFile(const std::string& name, mode_t mode) {
    ASSERT_TRUE(WriteFile(Mnt(name), "0123456789"));
    ASSERT_SYS_OK(::chown(Mnt(name).c_str(), kUser, kUser));
    ASSERT_SYS_OK(::chmod(Mnt(name).c_str(), mode));
    ASSERT_EQ(ModeOf(Mnt(name)), mode);
  }
  // Runs `fn` in a child as kUser (no supplementary groups, no capabilities);
  // its return value is the child's exit status.
  static int AsUser(const std::function<int()>& fn) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(kUser) != 0 || ::setuid(kUser) != 0) _exit(100);
      _exit(fn());
    }
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return 200;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 201;
  }
  static int Append(const std::string& path) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return 1;
    const bool ok = ::write(fd, "more", 4) == 4;
    return (::close(fd) == 0 && ok) ? 0 : 2;
  }
  mode_t ModeInBacking(const std::string& name) const {
    return ModeOf(InBacking(0, name));
  }
};

TEST_F(SetIdTest, AWriteByAnotherUserClearsBothBits) {
  MakeFile("tool", 06775);
  ASSERT_EQ(AsUser([&] { return Append(Mnt("tool")); }), 0);
  EXPECT_EQ(ModeInBacking("tool"), 0775u);
  EXPECT_EQ(ModeOf(Mnt("tool")), 0775u);
  EXPECT_EQ(ReadFile(Mnt("tool")), "0123456789more");
}

TEST_F(SetIdTest, SetGroupIdWithoutGroupExecuteIsKept) {
  // Without group execute, set-group-id marks mandatory locking, not a privilege.
  MakeFile("locked", 06764);
  ASSERT_EQ(AsUser([&] { return Append(Mnt("locked")); }), 0);
  EXPECT_EQ(ModeInBacking("locked"), 02764u);
}

TEST_F(SetIdTest, ATruncationByAnotherUserClearsThem) {
  MakeFile("cut", 06775);
  ASSERT_EQ(AsUser([&] { return ::truncate(Mnt("cut").c_str(), 3) == 0 ? 0 : 1; }), 0);
  EXPECT_EQ(ModeInBacking("cut"), 0775u);
  EXPECT_EQ(ReadFile(Mnt("cut")), "012");
}

TEST_F(SetIdTest, RootsWritesKeepThem) {
  MakeFile("rootwrites", 06775);
  ASSERT_EQ(Append(Mnt("rootwrites")), 0);
  ASSERT_SYS_OK(::truncate(Mnt("rootwrites").c_str(), 5));
  EXPECT_EQ(ModeInBacking("rootwrites"), 06775u);
}

TEST_F(SetIdTest, AChownClearsThem) {
  MakeFile("given", 06775);
  ASSERT_SYS_OK(::chown(Mnt("given").c_str(), kUser + 1, kUser + 1));
  EXPECT_EQ(ModeInBacking("given") & 06000, 0u);
  EXPECT_EQ(ModeOf(Mnt("given")) & 06000, 0u);
}

}  // namespace
}  // namespace cachefs_test

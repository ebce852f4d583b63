// The qemu runner end to end: the real launch booting real guests under TCG
// (one boot per test). Checked from the outside: exit status, output, what
// reached the cache directory, and that no VM, virtiofsd, cachefs daemon,
// mount or work directory outlives launch, however it ends.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "tests/launch/launch_fixture.h"

namespace {

using launch_test::LaunchRun;
using launch_test::slurp;

// The kernel the fixture test fetched: <KERNEL_DIR>/<version>/boot/vmlinuz-<version>.
std::string test_kernel() {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(KERNEL_DIR, ec)) {
    const std::string v = e.path().filename();
    const fs::path img = e.path() / "boot" / ("vmlinuz-" + v);
    if (fs::is_regular_file(img, ec)) return img;
  }
  return "";
}

// Live (not zombie) processes other than us whose command line mentions `s`.
std::vector<std::string> processes_mentioning(const std::string& s) {
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string pid = e.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos ||
        pid == std::to_string(::getpid()))
      continue;
    std::string cmd = slurp("/proc/" + pid + "/cmdline");
    if (cmd.find(s) == std::string::npos) continue;
    const std::string stat = slurp("/proc/" + pid + "/stat");
    if (stat.empty() || stat.find(") Z ") != std::string::npos) continue;
    for (char& c : cmd) {
      if (c == '\0') c = ' ';
    }
    found.push_back(pid + ": " + cmd.substr(0, 160));
  }
  return found;
}

bool mounted_under(const std::string& prefix) {
  return slurp("/proc/self/mountinfo").find(prefix) != std::string::npos;
}

class QemuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernel_ = test_kernel();
    ASSERT_FALSE(kernel_.empty()) << "no guest kernel in " << KERNEL_DIR
                                  << " (the qemu_fetch_kernel test fetches it)";
    char tmpl[] = "/var/tmp/cachefs-qemu-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    fs::create_directories(root_ + "/cache");
    fs::create_directories(root_ + "/tmp");
    std::ofstream(root_ + "/cache/pre") << "was in the cache\n";
    ::setenv("TMPDIR", (root_ + "/tmp").c_str(), 1);
    ::setenv("QEMU_KERNEL_IMAGE", kernel_.c_str(), 1);
    ::unsetenv("QEMU_KERNEL_MODULES");
    ::unsetenv("QEMU_USE_VIRTIOFS");
    ::unsetenv("QEMU_VIRTIOFS_PATH");
  }
  void TearDown() override {
    // Nothing left: no VM, virtiofsd or cachefs (their command lines name the
    // work directory), no mount, no work directory.
    const std::string work = root_ + "/tmp/";
    std::vector<std::string> procs;
    for (int i = 0; i < 100; ++i) {
      procs = processes_mentioning(work);
      if (procs.empty() && !mounted_under(work) && fs::is_empty(root_ + "/tmp")) break;
      std::this_thread::sleep_for(50ms);
    }
    for (const auto& p : procs) ADD_FAILURE() << "left running: " << p;
    EXPECT_FALSE(mounted_under(work)) << "a mount was left under " << work;
    EXPECT_TRUE(fs::is_empty(root_ + "/tmp")) << "launch's work directory was left";
    for (const char* v : {"TMPDIR", "QEMU_KERNEL_IMAGE", "QEMU_USE_VIRTIOFS", "QEMU_VIRTIOFS_PATH"})
      ::unsetenv(v);
    fs::remove_all(root_);
  }
  std::string write(const std::string& name, const std::string& text) {
    const std::string p = root_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  std::vector<std::string> base(const std::string& file, const std::string& accel = "tcg") {
    return {"build",
            file,
            "--runner",
            "qemu",
            "--qemu-accel",
            accel,
            "--cache-dir",
            root_ + "/cache",
            "--out-dir",
            root_ + "/out",
            "--skip-package-check"};
  }
  LaunchRun launch(std::vector<std::string> args,
                   const std::function<void(pid_t)>& on_start = nullptr) {
    return launch_test::run_launch(std::move(args), root_, root_ + "/launch.out", on_start);
  }
  std::string root_, kernel_;
};

// Reads a file that was in the cache, writes a new one and changes the old.
constexpr const char* kCacheBuild = R"Y(package:
  name: cacher
  version: 1
  epoch: 0
  resources:
    cpu: 1
    memory: 1Gi
pipeline:
  - name: use the cache
    runs: |
      echo "read: $(cat /var/cache/melange/pre)"
      mkdir -p /var/cache/melange/pip
      echo fresh > /var/cache/melange/pip/new.whl
      echo changed >> /var/cache/melange/pre
      echo "cpus=$(nproc) host=$(hostname)"
      if ip -4 addr show dev eth0 | grep -q 10.0.2.15; then echo "network up"; fi
      awk '/MemTotal/ { print "memory-mib=" int($2 / 1024) }' /proc/meminfo
      echo on-stderr >&2
      mkdir -p ${{targets.destdir}}/usr/share/cacher
      echo out > ${{targets.destdir}}/usr/share/cacher/file
      printf 'last words'
  - name: after
    runs: echo "second step sees $(cat /var/cache/melange/pip/new.whl)"
)Y";

TEST_F(QemuTest, VirtiofsKeepsWhatTheBuildWrites) {
  ::setenv("QEMU_USE_VIRTIOFS", "1", 1);
  // auto: KVM if it boots the guest, TCG where it does not (here: it hangs).
  const LaunchRun r = launch(base(write("pkg.yaml", kCacheBuild), "auto"));
  ASSERT_EQ(r.code(), 0) << r.out;
  for (const char* want :
       {"[cacher/use the cache] read: was in the cache", "cpus=1 host=launch",
        "[cacher/use the cache] on-stderr", "network up", "[cacher/use the cache] last words",
        "[cacher/after] second step sees fresh"}) {
    EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
  }
  // package.resources.memory: 1Gi (the kernel keeps some for itself).
  const size_t m = r.out.find("memory-mib=");
  ASSERT_NE(m, std::string::npos) << r.out;
  const int mib = std::stoi(r.out.substr(m + 11));
  EXPECT_GT(mib, 700) << r.out;
  EXPECT_LE(mib, 1024) << r.out;
  EXPECT_EQ(slurp(root_ + "/cache/pip/new.whl"), "fresh\n");
  EXPECT_EQ(slurp(root_ + "/cache/pre"), "was in the cache\nchanged\n");
  EXPECT_EQ(slurp(root_ + "/out/cacher/usr/share/cacher/file"), "out\n");
  EXPECT_EQ(r.out.find("discarded"), std::string::npos) << r.out;
}

TEST_F(QemuTest, NinePDiscardsWhatTheBuildWritesAndSaysSo) {
  const LaunchRun r = launch(base(write("pkg.yaml", kCacheBuild)));
  ASSERT_EQ(r.code(), 0) << r.out;
  EXPECT_NE(r.out.find("read: was in the cache"), std::string::npos) << r.out;
  // Within the build, the writes are there...
  EXPECT_NE(r.out.find("[cacher/after] second step sees fresh"), std::string::npos) << r.out;
  // ...after it, gone, and launch says so and how to keep them.
  EXPECT_FALSE(fs::exists(root_ + "/cache/pip")) << r.out;
  EXPECT_EQ(slurp(root_ + "/cache/pre"), "was in the cache\n");
  EXPECT_NE(r.out.find("cache: discarded"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("QEMU_USE_VIRTIOFS=1"), std::string::npos) << r.out;
  // The workspace is not the cache: the package still comes out.
  EXPECT_EQ(slurp(root_ + "/out/cacher/usr/share/cacher/file"), "out\n");
}

TEST_F(QemuTest, AFailingStepIsNamedAndNothingIsLeftRunning) {
  ::setenv("QEMU_USE_VIRTIOFS", "1", 1);
  const LaunchRun r = launch(base(write("pkg.yaml", R"Y(package:
  name: broken
  version: 1
  epoch: 0
pipeline:
  - name: fine
    runs: echo fine
  - name: breaks
    runs: |
      echo about to fail
      exit 3
  - name: after
    runs: echo after
)Y")));
  EXPECT_EQ(r.code(), 1) << r.out;
  EXPECT_NE(r.out.find("[broken/breaks] about to fail"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step 'breaks' of broken failed (exited with status 3"), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("[broken/after]"), std::string::npos) << r.out;
  // TearDown: no qemu, virtiofsd or cachefs left, no mount, no work dir.
}

TEST_F(QemuTest, SigintStopsTheVmVirtiofsdAndTheMount) {
  ::setenv("QEMU_USE_VIRTIOFS", "1", 1);
  const std::string f = write("pkg.yaml", R"Y(package:
  name: slow
  version: 1
  epoch: 0
pipeline:
  - runs: |
      touch /var/cache/melange/started
      sleep 1000
)Y");
  const LaunchRun r = launch(base(f), [&](pid_t pid) {
    for (int i = 0; i < 1200 && !fs::exists(root_ + "/cache/started"); ++i)
      std::this_thread::sleep_for(50ms);
    ::kill(pid, SIGINT);
  });
  EXPECT_TRUE(fs::exists(root_ + "/cache/started")) << r.out;
  EXPECT_EQ(r.code(), 130) << r.out;
  EXPECT_NE(r.out.find("interrupted"), std::string::npos) << r.out;
}

// Mistakes found before any VM starts: one line, exit 2.
TEST_F(QemuTest, MissingKernelOrVirtiofsdIsOneClearError) {
  const std::string f = write(
      "pkg.yaml", "package:\n  name: x\n  version: 1\n  epoch: 0\npipeline:\n  - runs: true\n");
  auto one_line = [](const std::string& out) {
    return std::count(out.begin(), out.end(), '\n') == 1;
  };

  ::unsetenv("QEMU_KERNEL_IMAGE");
  LaunchRun r = launch(base(f));
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_TRUE(one_line(r.out)) << r.out;
  EXPECT_NE(r.out.find("set QEMU_KERNEL_IMAGE and QEMU_KERNEL_MODULES"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("launch fetch-kernel"), std::string::npos) << r.out;

  ::setenv("QEMU_KERNEL_IMAGE", (root_ + "/no-such-vmlinuz").c_str(), 1);
  r = launch(base(f));
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_NE(r.out.find("no-such-vmlinuz': no such file"), std::string::npos) << r.out;

  ::setenv("QEMU_KERNEL_IMAGE", kernel_.c_str(), 1);
  ::setenv("QEMU_USE_VIRTIOFS", "1", 1);
  ::setenv("QEMU_VIRTIOFS_PATH", (root_ + "/no-such-virtiofsd").c_str(), 1);
  const std::string path = ::getenv("PATH");
  ::setenv("PATH", "/usr/bin:/bin", 1);
  r = launch(base(f));
  ::setenv("PATH", path.c_str(), 1);
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_TRUE(one_line(r.out)) << r.out;
  EXPECT_NE(r.out.find("QEMU_VIRTIOFS_PATH '" + root_ + "/no-such-virtiofsd': no such executable"),
            std::string::npos)
      << r.out;

  ::unsetenv("QEMU_USE_VIRTIOFS");
  ::unsetenv("QEMU_VIRTIOFS_PATH");
  std::vector<std::string> args = base(f);
  args.insert(args.end(), {"--memory", "lots"});
  r = launch(args);
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_NE(r.out.find("memory 'lots'"), std::string::npos) << r.out;
  args = base(f, "fast");
  r = launch(args);
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_NE(r.out.find("--qemu-accel fast"), std::string::npos) << r.out;
}

}  // namespace

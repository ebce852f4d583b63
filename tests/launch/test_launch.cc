// launch end to end: the real binary, real bubblewrap, a real cachefs mount per
// build. Build files are written by each test; the process is checked from the
// outside: exit status, output, what landed in the cache and the out dir, and
// that nothing (mount, daemon, temp dir) is left behind whatever happens.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

struct LaunchRun {
  int status = -1;
  std::string out;  // stdout and stderr
  int code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }
};

std::set<std::string> launch_temp_dirs() {
  std::set<std::string> s;
  for (const auto& e : fs::directory_iterator("/var/tmp")) {
    if (e.path().filename().string().rfind("launch.", 0) == 0) s.insert(e.path());
  }
  return s;
}

bool cachefs_mounted_under(const std::string& prefix) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("fuse.cachefs") != std::string::npos && line.find(prefix) != std::string::npos) return true;
  }
  return false;
}

class LaunchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/var/tmp/cachefs-launch-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    fs::create_directories(root_ + "/cache");
    before_ = launch_temp_dirs();
  }
  void TearDown() override {
    // Nothing left behind: no mount, no launch.* work directory.
    for (int i = 0; i < 100 && cachefs_mounted_under("/var/tmp/launch."); ++i) std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(cachefs_mounted_under("/var/tmp/launch.")) << "a build's cache mount was left";
    std::set<std::string> left;
    for (int i = 0; i < 100; ++i) {
      left.clear();
      for (const auto& d : launch_temp_dirs()) {
        if (!before_.count(d)) left.insert(d);
      }
      if (left.empty()) break;
      std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(left.empty()) << "work directory left: " << *left.begin();
    fs::remove_all(root_);
  }
  std::string write(const std::string& name, const std::string& text) {
    const std::string p = root_ + "/" + name;
    fs::create_directories(fs::path(p).parent_path());
    std::ofstream(p) << text;
    return p;
  }
  static std::string slurp(const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Runs launch with `args`; output captured. With `on_start`, called with the pid
  // once started (for signals).
  LaunchRun launch(std::vector<std::string> args, const std::function<void(pid_t)>& on_start = nullptr) {
    const std::string out = root_ + "/launch.out";
    args.insert(args.begin(), LAUNCH_BINARY);
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::chdir(root_.c_str());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (on_start) on_start(pid);
    LaunchRun r;
    ::waitpid(pid, &r.status, 0);
    r.out = slurp(out);
    return r;
  }
  std::vector<std::string> base(const std::string& file) {
    return {"build", file, "--cache-dir", root_ + "/cache", "--out-dir", root_ + "/out",
            "--skip-package-check"};
  }
  std::string root_;
  std::set<std::string> before_;
};

TEST_F(LaunchTest, RunsStepsWithSubstitutionsAndWritesOutputs) {
  const std::string f = write("pkg.yaml", R"Y(package:
  name: demo
  version: 1.0.0
  epoch: 2
  description: demo package
vars:
  who: world
pipeline:
  - name: greet
    runs: |
      echo "hello ${{vars.who}} from ${{package.name}}-${{package.version}}"
      mkdir -p ${{targets.destdir}}/usr/share/demo
      echo data > ${{targets.destdir}}/usr/share/demo/file
  - name: in a subdirectory
    working-directory: sub/dir
    runs: pwd
  - name: never
    if: ${{build.arch}} == 'no-such-arch'
    runs: exit 1
subpackages:
  - name: demo-extra
    pipeline:
      - runs: |
          mkdir -p ${{targets.subpkgdir}}/extra
          echo extra > ${{targets.subpkgdir}}/extra/x
)Y");
  const LaunchRun r = launch(base(f));
  ASSERT_EQ(r.code(), 0) << r.out;
  EXPECT_NE(r.out.find("hello world from demo-1.0.0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/home/build/sub/dir"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("skipped never"), std::string::npos) << r.out;
  EXPECT_EQ(slurp(root_ + "/out/demo/usr/share/demo/file"), "data\n");
  EXPECT_EQ(slurp(root_ + "/out/demo-extra/extra/x"), "extra\n");
  EXPECT_TRUE(fs::exists(root_ + "/out/demo-1.0.0-r2.tar.gz"));
  EXPECT_TRUE(fs::exists(root_ + "/out/demo-extra-1.0.0-r2.tar.gz"));
  EXPECT_NE(r.out.find("cache: "), std::string::npos) << r.out;
}

TEST_F(LaunchTest, CacheEnvironmentIsSetAndTheUsersValueWins) {
  const std::string f = write("pkg.yaml", R"Y(package:
  name: envs
  version: 1
  epoch: 0
environment:
  environment:
    PIP_CACHE_DIR: /home/build/my-pip
pipeline:
  - runs: |
      echo "GOMODCACHE=$GOMODCACHE"
      echo "PIP_CACHE_DIR=$PIP_CACHE_DIR"
      echo "npm=$npm_config_cache"
      echo "UV=$UV_CACHE_DIR"
      echo "HOME=$HOME"
      echo "FROMFLAG=$FROMFLAG"
)Y");
  std::vector<std::string> args = base(f);
  args.insert(args.end(), {"--env", "FROMFLAG=yes", "--env", "UV_CACHE_DIR=/tmp/uv"});
  const LaunchRun r = launch(args);
  ASSERT_EQ(r.code(), 0) << r.out;
  for (const char* want : {"GOMODCACHE=/var/cache/melange/gomodcache", "PIP_CACHE_DIR=/home/build/my-pip",
                           "npm=/var/cache/melange/npm", "UV=/tmp/uv", "HOME=/home/build",
                           "FROMFLAG=yes"}) {
    EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
  }
}

TEST_F(LaunchTest, WritesToTheCachePersistAndTheSecondBuildSeesThem) {
  const std::string f = write("pkg.yaml", R"Y(package:
  name: cacher
  version: 1
  epoch: 0
pipeline:
  - runs: |
      if [ -f /var/cache/melange/pip/wheel.whl ]; then
        echo "cache hit: $(cat /var/cache/melange/pip/wheel.whl)"
      else
        mkdir -p /var/cache/melange/pip
        echo built-once > /var/cache/melange/pip/wheel.whl
        echo "cache miss"
      fi
)Y");
  LaunchRun r = launch(base(f));
  ASSERT_EQ(r.code(), 0) << r.out;
  EXPECT_NE(r.out.find("cache miss"), std::string::npos) << r.out;
  EXPECT_EQ(slurp(root_ + "/cache/pip/wheel.whl"), "built-once\n");
  r = launch(base(f));
  ASSERT_EQ(r.code(), 0) << r.out;
  EXPECT_NE(r.out.find("cache hit: built-once"), std::string::npos) << r.out;
}

TEST_F(LaunchTest, AFailingStepStopsTheBuildAndIsNamed) {
  const std::string f = write("pkg.yaml", R"Y(package:
  name: broken
  version: 1
  epoch: 0
pipeline:
  - name: fine
    runs: echo fine
  - name: breaks
    runs: |
      echo about to fail
      false
      echo not reached
  - name: after
    runs: echo after
)Y");
  const LaunchRun r = launch(base(f));
  EXPECT_EQ(r.code(), 1) << r.out;
  EXPECT_NE(r.out.find("step 'breaks' of broken failed (exited with status 1"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("not reached"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("[broken/after]"), std::string::npos) << r.out;
}

TEST_F(LaunchTest, BadBuildFilesAreRefusedBeforeAnythingStarts) {
  const std::string f = write("bad.yaml", "package:\n  name: x\n  version: 1\n  epoch: 0\npipeline:\n  - runs: true\n    bogus: 1\n");
  const LaunchRun r = launch(base(f));
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_NE(r.out.find("bad.yaml:7:5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bogus"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(root_ + "/out"));
  EXPECT_EQ(launch(base(root_ + "/missing.yaml")).code(), 2);
  LaunchRun u = launch({"build"});
  EXPECT_EQ(u.code(), 2) << u.out;
  u = launch({"build", f, "--runner", "chroot"});
  EXPECT_EQ(u.code(), 2) << u.out;
  EXPECT_NE(u.out.find("--runner"), std::string::npos) << u.out;
  u = launch({"build", f, "--env", "NOEQUALS"});
  EXPECT_EQ(u.code(), 2) << u.out;
}

TEST_F(LaunchTest, MissingPackagesAreOneClearError) {
  const std::string f = write("pkg.yaml", R"Y(package:
  name: needs
  version: 1
  epoch: 0
environment:
  contents:
    packages: [busybox, no-such-package-abc, another-missing-xyz]
pipeline:
  - runs: true
)Y");
  const LaunchRun r = launch({"build", f, "--cache-dir", root_ + "/cache"});
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_NE(r.out.find("no-such-package-abc, another-missing-xyz"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--rootfs"), std::string::npos) << r.out;
}

// Signals mid-step: launch stops the step, unmounts, removes its work dir.
class LaunchSignalTest : public LaunchTest, public ::testing::WithParamInterface<int> {};

TEST_P(LaunchSignalTest, NothingIsLeftBehind) {
  const std::string marker = root_ + "/started";
  const std::string f = write("pkg.yaml", "package:\n  name: slow\n  version: 1\n  epoch: 0\npipeline:\n"
                                          "  - runs: |\n      touch /var/cache/melange/started\n      sleep 600\n");
  const int sig = GetParam();
  const LaunchRun r = launch(base(f), [&](pid_t pid) {
    for (int i = 0; i < 400 && !fs::exists(root_ + "/cache/started"); ++i) std::this_thread::sleep_for(25ms);
    ::kill(pid, sig);
  });
  EXPECT_TRUE(fs::exists(root_ + "/cache/started")) << r.out;
  if (sig == SIGKILL) {
    EXPECT_TRUE(WIFSIGNALED(r.status));
  } else {
    EXPECT_EQ(r.code(), 128 + sig) << r.out;
  }
  // No sandbox left: nothing still sleeps in it.
  std::this_thread::sleep_for(300ms);
  const int pgrep = std::system("pgrep -f 'sleep 60[0]' >/dev/null");
  EXPECT_NE(WEXITSTATUS(pgrep), 0) << "the step's process survived";
}

INSTANTIATE_TEST_SUITE_P(Signals, LaunchSignalTest, ::testing::Values(SIGINT, SIGTERM, SIGKILL));

TEST_F(LaunchTest, TwoBuildsAtOnceShareOneCache) {
  auto file = [&](const std::string& name) {
    return write(name + ".yaml", "package:\n  name: " + name + "\n  version: 1\n  epoch: 0\npipeline:\n"
                 "  - runs: |\n      mkdir -p /var/cache/melange/shared\n"
                 "      for i in 1 2 3 4 5; do echo " + name + " > /var/cache/melange/shared/" + name + ".$i; done\n"
                 "      sleep 1\n");
  };
  const std::string a = file("one"), b = file("two");
  LaunchRun ra, rb;
  std::thread t([&] {
    std::vector<std::string> args = {"build", a, "--cache-dir", root_ + "/cache", "--out-dir",
                                     root_ + "/out-a", "--skip-package-check"};
    // A separate output file: launch() writes root_/launch.out.
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int fd = ::open((root_ + "/a.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> argv = {const_cast<char*>(LAUNCH_BINARY)};
      for (auto& x : args) argv.push_back(x.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::waitpid(pid, &ra.status, 0);
  });
  rb = launch({"build", b, "--cache-dir", root_ + "/cache", "--out-dir", root_ + "/out-b",
               "--skip-package-check"});
  t.join();
  EXPECT_EQ(ra.code(), 0) << slurp(root_ + "/a.out");
  EXPECT_EQ(rb.code(), 0) << rb.out;
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(slurp(root_ + "/cache/shared/one." + std::to_string(i)), "one\n");
    EXPECT_EQ(slurp(root_ + "/cache/shared/two." + std::to_string(i)), "two\n");
  }
}

}  // namespace

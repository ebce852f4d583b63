// launch --runner docker end to end: the real launch, the real docker CLI,
// podman's Docker-compatible engine started by each test on its own socket,
// a busybox image. Checked from the outside: exit status, output, the cache
// directory, and that no container (by launch's pid label), mount, daemon or
// work directory is left, whatever happens.
#include "tests/docker_engine.h"
#include "tests/launch/launch_fixture.h"

namespace {

using namespace launch_test;
using cachefs_test::kTestImage;
using cachefs_test::PodmanEngine;

class LaunchDockerTest : public LaunchTest {
 protected:
  void SetUp() override {
    LaunchTest::SetUp();
    fs::create_directories(root_ + "/engine");
    engine_ = std::make_unique<PodmanEngine>(root_ + "/engine");
    if (engine_->error().find("not installed") != std::string::npos)
      GTEST_SKIP() << engine_->error();
    ASSERT_EQ(engine_->error(), "");
  }
  void TearDown() override {
    engine_.reset();
    LaunchTest::TearDown();
  }
  std::vector<std::string> docker_args(const std::string& file) {
    std::vector<std::string> a = base(file);
    a.insert(a.end(), {"--runner", "docker", "--image", kTestImage});
    return a;
  }
  // Runs launch, remembering its pid (for its containers' label).
  LaunchRun launch_docker(const std::vector<std::string>& args,
                          const std::function<void(pid_t)>& on_start = nullptr) {
    return launch(args, [&](pid_t pid) {
      pid_ = pid;
      if (on_start) on_start(pid);
    });
  }
  // No container of that launch, none of its cachefs daemons.
  void expect_nothing_left() {
    std::vector<std::string> left = engine_->containers_of(pid_);
    for (int i = 0; i < 100 && !left.empty(); ++i) {  // after kill -9 the watchdog is at work
      std::this_thread::sleep_for(100ms);
      left = engine_->containers_of(pid_);
    }
    EXPECT_TRUE(left.empty()) << "container left: " << left.front();
    engine_->remove_containers_of(pid_);
    bool daemon = true;
    for (int i = 0; i < 100 && daemon; ++i) {
      daemon =
          std::system(("pgrep -f '[c]achefs -f --cache-directory " + root_ + "/cache' >/dev/null")
                          .c_str()) == 0;
      if (daemon) std::this_thread::sleep_for(50ms);
    }
    EXPECT_FALSE(daemon) << "the build's cachefs daemon is still running";
  }
  std::unique_ptr<PodmanEngine> engine_;
  pid_t pid_ = -1;
};

TEST_F(LaunchDockerTest, ReadsTheCacheAndItsWritesPersist) {
  fs::create_directories(root_ + "/cache/pip");
  std::ofstream(root_ + "/cache/pip/seed.whl") << "seeded\n";
  const std::string f = write("pkg.yaml", R"Y(package:
  name: boxed
  version: 1
  epoch: 0
  resources:
    cpu: 500m
    memory: 256Mi
pipeline:
  - name: use the cache
    runs: |
      echo "read: $(cat /var/cache/melange/pip/seed.whl)"
      echo built > /var/cache/melange/pip/new.whl
      echo "in $(pwd) as $(id -u), HOME=$HOME PIP_CACHE_DIR=$PIP_CACHE_DIR"
      echo state > /tmp/state
  - name: same container
    working-directory: sub
    runs: |
      echo "still there: $(cat /tmp/state) in $(pwd)"
      mkdir -p ${{targets.destdir}}/usr/share
      echo packaged > ${{targets.destdir}}/usr/share/f
      echo to-stderr >&2
)Y");
  const LaunchRun r = launch_docker(docker_args(f));
  ASSERT_EQ(r.code(), 0) << r.out;
  EXPECT_NE(r.out.find("[boxed/use the cache] read: seeded"), std::string::npos) << r.out;
  EXPECT_NE(
      r.out.find("in /home/build as 0, HOME=/home/build PIP_CACHE_DIR=/var/cache/melange/pip"),
      std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("still there: state in /home/build/sub"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[boxed/same container] to-stderr"), std::string::npos) << r.out;
  EXPECT_EQ(slurp(root_ + "/cache/pip/new.whl"), "built\n");
  EXPECT_EQ(slurp(root_ + "/out/boxed/usr/share/f"), "packaged\n");
  expect_nothing_left();
}

TEST_F(LaunchDockerTest, AFailingStepIsNamedAndNothingIsLeft) {
  const std::string f = write("pkg.yaml", R"Y(package:
  name: broken
  version: 1
  epoch: 0
pipeline:
  - name: breaks
    runs: |
      echo about to fail
      exit 3
      echo not reached
  - name: after
    runs: echo after
)Y");
  const LaunchRun r = launch_docker(docker_args(f));
  EXPECT_EQ(r.code(), 1) << r.out;
  EXPECT_NE(r.out.find("step 'breaks' of broken failed (exited with status 3"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("[broken/breaks] about to fail"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("not reached"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("[broken/after]"), std::string::npos) << r.out;
  expect_nothing_left();
}

// Interrupted mid-step (Ctrl-C), or killed outright: the container goes (by
// launch's teardown, or by its watchdog), and with it the step.
class LaunchDockerSignalTest : public LaunchDockerTest,
                               public ::testing::WithParamInterface<int> {};

TEST_P(LaunchDockerSignalTest, TheContainerAndTheMountGo) {
  const std::string f = write("pkg.yaml",
                              "package:\n  name: slow\n  version: 1\n  epoch: 0\npipeline:\n"
                              "  - runs: |\n      touch /var/cache/melange/started\n      sleep " +
                                  sleep_arg() + "\n");
  const int sig = GetParam();
  bool had_container = false;
  const LaunchRun r = launch_docker(docker_args(f), [&](pid_t pid) {
    for (int i = 0; i < 400 && !fs::exists(root_ + "/cache/started"); ++i)
      std::this_thread::sleep_for(25ms);
    had_container = !engine_->containers_of(pid).empty();
    ::kill(pid, sig);
  });
  EXPECT_TRUE(fs::exists(root_ + "/cache/started")) << r.out;
  EXPECT_TRUE(had_container) << r.out;
  if (sig == SIGKILL) {
    EXPECT_TRUE(WIFSIGNALED(r.status));
  } else {
    EXPECT_EQ(r.code(), 128 + sig) << r.out;
    EXPECT_NE(r.out.find("interrupted during slow"), std::string::npos) << r.out;
  }
  expect_nothing_left();
  const std::string a = sleep_arg();
  bool alive = true;
  for (int i = 0; i < 50 && alive; ++i) {
    alive = std::system(
                ("pgrep -f 'sleep " + a.substr(0, a.size() - 1) + "[" + a.back() + "]' >/dev/null")
                    .c_str()) == 0;
    if (alive) std::this_thread::sleep_for(100ms);
  }
  EXPECT_FALSE(alive) << "the step's process survived";
}

INSTANTIATE_TEST_SUITE_P(Signals, LaunchDockerSignalTest,
                         ::testing::Values(SIGINT, SIGTERM, SIGKILL));

// Each mistake is one line, exit 2, and nothing is left (TearDown: no mount,
// no work directory).
TEST_F(LaunchDockerTest, BadInputIsOneClearLine) {
  const std::string f = write(
      "pkg.yaml", "package:\n  name: x\n  version: 1\n  epoch: 0\npipeline:\n  - runs: true\n");
  auto one_line = [](const LaunchRun& r) {
    return std::count(r.out.begin(), r.out.end(), '\n') == 1 && r.out.rfind("launch: ", 0) == 0;
  };
  // No --image.
  std::vector<std::string> args = base(f);
  args.insert(args.end(), {"--runner", "docker"});
  LaunchRun r = launch_docker(args);
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_TRUE(one_line(r)) << r.out;
  EXPECT_NE(r.out.find("--runner docker needs --image"), std::string::npos) << r.out;

  // An image the engine does not have.
  args = base(f);
  args.insert(args.end(), {"--runner", "docker", "--image", "localhost/cachefs-no-such-image:1"});
  r = launch_docker(args);
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_TRUE(one_line(r)) << r.out;
  EXPECT_NE(
      r.out.find(
          "--image localhost/cachefs-no-such-image:1: no such image on the engine at DOCKER_HOST=" +
          engine_->host()),
      std::string::npos)
      << r.out;
  expect_nothing_left();

  // An engine that is not there.
  const std::string missing = "unix://" + root_ + "/no-engine.sock";
  ::setenv("DOCKER_HOST", missing.c_str(), 1);
  r = launch_docker(docker_args(f));
  ::setenv("DOCKER_HOST", engine_->host().c_str(), 1);
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_TRUE(one_line(r)) << r.out;
  EXPECT_NE(r.out.find("launch: docker engine not reachable at DOCKER_HOST=" + missing + ": "),
            std::string::npos)
      << r.out;
  expect_nothing_left();

  // Flags of the other runner.
  args = docker_args(f);
  args.insert(args.end(), {"--rootfs", root_});
  r = launch_docker(args);
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_NE(r.out.find("--rootfs is for --runner bubblewrap"), std::string::npos) << r.out;
  args = base(f);
  args.insert(args.end(), {"--image", kTestImage});
  r = launch_docker(args);
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_NE(r.out.find("--image is for --runner docker"), std::string::npos) << r.out;
}

}  // namespace

// The docker runner for real: the docker CLI against podman's engine, started
// by each test on its own socket, and a busybox image (tests/docker_engine.h).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "common/error.h"
#include "runners/docker.h"
#include "tests/docker_engine.h"

namespace fs = std::filesystem;
using namespace cachefs::runners;
using namespace std::chrono_literals;
using cachefs_test::kTestImage;
using cachefs_test::PodmanEngine;
using cachefs_test::sh_ok;

namespace {

std::string usage_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const cachefs::UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(DockerResources, MelangeQuantitiesBecomeDockersFlags) {
  EXPECT_EQ(docker_cpus("2"), "2");
  EXPECT_EQ(docker_cpus("0.5"), "0.5");
  EXPECT_EQ(docker_cpus("1500m"), "1.5");
  EXPECT_EQ(docker_memory("4Gi"), "4294967296");
  EXPECT_EQ(docker_memory("512Mi"), "536870912");
  EXPECT_EQ(docker_memory("2G"), "2147483648");
  EXPECT_EQ(docker_memory("1048576"), "1048576");
  for (const char* bad : {"two", "", "m", "1.2.3", "-1", "0", "1e3"}) {
    EXPECT_NE(usage_error([&] { docker_cpus(bad); }).find("package.resources.cpu '"),
              std::string::npos)
        << bad;
  }
  for (const char* bad : {"lots", "4 GB", "0", "-1Gi"}) {
    EXPECT_NE(usage_error([&] { docker_memory(bad); }).find("package.resources.memory '"),
              std::string::npos)
        << bad;
  }
}

class DockerRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/var/tmp/cachefs-docker-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    for (const char* d : {"/cache", "/ws", "/engine"}) fs::create_directories(root_ + d);
    engine_ = std::make_unique<PodmanEngine>(root_ + "/engine");
    if (engine_->error().find("not installed") != std::string::npos)
      GTEST_SKIP() << engine_->error();
    ASSERT_EQ(engine_->error(), "");
  }
  void TearDown() override {
    if (engine_ && engine_->error().empty()) {
      const auto left = engine_->containers_of(::getpid());
      EXPECT_TRUE(left.empty()) << "container left: " << left.front();
      engine_->remove_containers_of(::getpid());
    }
    engine_.reset();
    fs::remove_all(root_);
  }
  DockerSpec spec() const { return {kTestImage, root_ + "/ws", root_ + "/cache", "", ""}; }
  static std::string slurp(const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string root_;
  std::unique_ptr<PodmanEngine> engine_;
};

struct Lines {
  std::vector<std::string> out, err;
  LineSink sink() {
    return [this](std::string_view l, bool is_err) { (is_err ? err : out).emplace_back(l); };
  }
};

TEST_F(DockerRunnerTest, StepsRunInOneContainerWithTheirEnvironment) {
  std::ofstream(root_ + "/ws/input") << "from the workspace\n";
  std::ofstream(root_ + "/cache/cached") << "from the cache\n";
  DockerSpec s = spec();
  s.cpus = "500m";
  s.memory = "256Mi";
  DockerRunner r(s);
  Lines start;
  r.start(start.sink(), nullptr);
  EXPECT_EQ(engine_->containers_of(::getpid()).size(), 1u);
  std::string limits;
  sh_ok(
      "docker inspect --format '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}' " + r.container(),
      &limits);
  EXPECT_EQ(limits, "268435456 500000000\n");
  Lines a;
  int status = r.run(
      "pwd; cat /home/build/input /var/cache/melange/cached; echo \"$GREETING|$EMPTY|\"\n"
      "echo kept > /tmp/state; echo written > /var/cache/melange/new; echo to-stderr >&2",
      "/home/build/sub/dir", {{"GREETING", "hello world"}, {"EMPTY", ""}, {"PATH", "/bin"}},
      a.sink(), nullptr);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe_status(status);
  EXPECT_EQ(a.out, (std::vector<std::string>{"/home/build/sub/dir", "from the workspace",
                                             "from the cache", "hello world||"}));
  EXPECT_EQ(a.err, (std::vector<std::string>{"to-stderr"}));
  EXPECT_TRUE(fs::is_directory(root_ + "/ws/sub/dir"));
  EXPECT_EQ(slurp(root_ + "/cache/new"), "written\n");
  Lines b;
  status = r.run("cat /tmp/state; echo before; false; echo after", "/home/build",
                 {{"PATH", "/bin"}}, b.sink(), nullptr);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_EQ(b.out, (std::vector<std::string>{"kept", "before"}));
  r.finish();
  EXPECT_TRUE(engine_->containers_of(::getpid()).empty());
  r.finish();  // idempotent
}

TEST_F(DockerRunnerTest, StopEndsAStepAndFinishRemovesWhatItRan) {
  DockerRunner r(spec());
  r.start([](std::string_view, bool) {}, nullptr);
  std::atomic<bool> stop{false};
  std::thread t([&] {
    std::this_thread::sleep_for(500ms);
    stop = true;
  });
  const auto t0 = std::chrono::steady_clock::now();
  r.run(
      "sleep 1000", "/home/build", {{"PATH", "/bin"}}, [](std::string_view, bool) {},
      [&] { return stop.load(); });
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  r.finish();
  EXPECT_TRUE(engine_->containers_of(::getpid()).empty());
}

TEST_F(DockerRunnerTest, ContainersOfDeadLaunchesAreRemovedByTheNextStart) {
  // A pid that is certainly gone: a child that exited and was reaped.
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  std::string boot, ns;
  sh_ok("cat /proc/sys/kernel/random/boot_id", &boot);
  sh_ok("readlink /proc/self/ns/pid | tr -dc 0-9", &ns);
  boot.pop_back();
  const std::string orphan = "cachefs-test-orphan-" + std::to_string(::getpid());
  const std::string elsewhere = "cachefs-test-elsewhere-" + std::to_string(::getpid());
  auto create = [&](const std::string& name, const std::string& owner) {
    ASSERT_TRUE(sh_ok("docker create --name " + name + " --label " + kOwnerLabel + "=" + owner +
                      " --label " + kPidLabel + "=" + std::to_string(::getpid()) + " " +
                      kTestImage + " true"));
  };
  create(orphan, boot + "/" + ns + "/" + std::to_string(dead) + "/12345");
  // Another machine's (or kernel's) container is never touched.
  create(elsewhere,
         "00000000-0000-0000-0000-000000000000/" + ns + "/" + std::to_string(dead) + "/12345");
  {
    DockerRunner r(spec());
    Lines l;
    r.start(l.sink(), nullptr);
    ASSERT_EQ(l.err.size(), 1u);
    EXPECT_NE(l.err[0].find("removed 1 container(s) left by launches that are gone: " + orphan),
              std::string::npos)
        << l.err[0];
  }
  EXPECT_FALSE(sh_ok("docker container inspect " + orphan));
  EXPECT_TRUE(sh_ok("docker container inspect " + elsewhere));
  sh_ok("docker rm -f " + elsewhere);
}

TEST_F(DockerRunnerTest, MistakesAreOneClearError) {
  DockerSpec s = spec();
  s.image.clear();
  EXPECT_NE(usage_error([&] { DockerRunner r(s); }).find("--runner docker needs --image"),
            std::string::npos);
  s = spec();
  s.memory = "lots";
  EXPECT_NE(usage_error([&] { DockerRunner r(s); }).find("package.resources.memory 'lots'"),
            std::string::npos);
  s = spec();
  s.image = "localhost/cachefs-no-such-image:1";
  EXPECT_NE(usage_error([&] {
              DockerRunner(s).start([](std::string_view, bool) {}, nullptr);
            }).find("no such image on the engine at DOCKER_HOST=" + engine_->host()),
            std::string::npos);
  const std::string path = std::getenv("PATH");
  ::setenv("PATH", "/nonexistent", 1);
  const std::string no_cli = usage_error([&] { DockerRunner r(spec()); });
  ::setenv("PATH", path.c_str(), 1);
  EXPECT_NE(no_cli.find("docker CLI not found in PATH"), std::string::npos) << no_cli;
}

TEST_F(DockerRunnerTest, AnEngineThatDoesNotAnswerIsAnErrorWithinTheTimeout) {
  // A socket that accepts connections (the kernel's backlog) and never answers.
  const std::string sock = root_ + "/hung.sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  ::setenv("DOCKER_HOST", ("unix://" + sock).c_str(), 1);
  DockerSpec s = spec();
  s.timeout = 1s;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string e =
      usage_error([&] { DockerRunner(s).start([](std::string_view, bool) {}, nullptr); });
  const auto took = std::chrono::steady_clock::now() - t0;
  ::setenv("DOCKER_HOST", engine_->host().c_str(), 1);
  ::close(fd);
  EXPECT_EQ(e,
            "docker engine not reachable at DOCKER_HOST=unix://" + sock + ": no answer within 1 s");
  EXPECT_LT(took, 5s);
}

}  // namespace

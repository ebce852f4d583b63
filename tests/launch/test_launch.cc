// launch end to end: the real binary, real bubblewrap, a real cachefs mount per
// build. Build files are written by each test; the process is checked from the
// outside: exit status, output, what landed in the cache and the out dir, and
// that nothing (mount, daemon, temp dir) is left behind whatever happens.
#include "tests/launch/launch_fixture.h"

namespace {

using namespace launch_test;

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

TEST_F(LaunchTest, CacheSourcePreloadsTheCache) {
  // A plain cache tree as the source: copied into --cache-dir (deduplicated)
  // before the build, which finds it at /var/cache/melange.
  const std::string seed = root_ + "/seed";
  std::filesystem::create_directories(seed + "/pip");
  std::ofstream(seed + "/pip/greeting.txt") << "preloaded from the seed\n";
  const std::string f = write("pkg.yaml", R"Y(package:
  name: preload
  version: 1
  epoch: 0
pipeline:
  - runs: cat /var/cache/melange/pip/greeting.txt
)Y");
  auto args = base(f);
  args.insert(args.end(), {"--cache-source", seed});
  LaunchRun r = launch(args);
  EXPECT_EQ(r.code(), 0) << r.out;
  EXPECT_NE(r.out.find("preloaded from the seed"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(root_ + "/cache/.cachefs/cachefs-store"));

  args = base(f);
  args.insert(args.end(), {"--cache-source", "ftp://u:secret-pw@host/x"});
  r = launch(args);
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_NE(r.out.find("unknown scheme 'ftp'"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("secret-pw"), std::string::npos) << r.out;
}

// Signals mid-step: launch stops the step, unmounts, removes its work dir.
class LaunchSignalTest : public LaunchTest, public ::testing::WithParamInterface<int> {};

TEST_P(LaunchSignalTest, NothingIsLeftBehind) {
  const std::string marker = root_ + "/started";
  const std::string f = write("pkg.yaml", "package:\n  name: slow\n  version: 1\n  epoch: 0\npipeline:\n"
                                          "  - runs: |\n      touch /var/cache/melange/started\n      sleep " + sleep_arg() + "\n");
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
  // Unique to this process, so a parallel test's step is not mistaken for ours.
  const std::string a = sleep_arg();
  const int pgrep = std::system(("pgrep -f 'sleep " + a.substr(0, a.size() - 1) + "[" + a.back() + "]' >/dev/null").c_str());
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
    ra = launch({"build", a, "--cache-dir", root_ + "/cache", "--out-dir", root_ + "/out-a",
                 "--skip-package-check"},
                nullptr, "a.out");
  });
  rb = launch({"build", b, "--cache-dir", root_ + "/cache", "--out-dir", root_ + "/out-b",
               "--skip-package-check"});
  t.join();
  EXPECT_EQ(ra.code(), 0) << ra.out;
  EXPECT_EQ(rb.code(), 0) << rb.out;
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(slurp(root_ + "/cache/shared/one." + std::to_string(i)), "one\n");
    EXPECT_EQ(slurp(root_ + "/cache/shared/two." + std::to_string(i)), "two\n");
  }
}

TEST_F(LaunchTest, VarsFromTheCommandLineOverrideTheFile) {
  const std::string f = write("pkg.yaml", R"Y(package:
  name: varied
  version: 1
  epoch: 0
vars:
  who: world
  greeting: hello ${{vars.who}}
var-transforms:
  - from: ${{vars.who}}
    match: o
    replace: "0"
    to: mangled
pipeline:
  - runs: echo "${{vars.greeting}} / ${{vars.mangled}}"
)Y");
  std::vector<std::string> args = base(f);
  args.insert(args.end(), {"--var", "who=moon"});
  LaunchRun r = launch(args);
  ASSERT_EQ(r.code(), 0) << r.out;
  EXPECT_NE(r.out.find("hello moon / m00n"), std::string::npos) << r.out;

  args = base(f);
  args.insert(args.end(), {"--var", "whom=moon"});
  r = launch(args);
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_NE(r.out.find("--var whom: " + f + " declares no such var (its vars: who, greeting)"),
            std::string::npos)
      << r.out;
  args = base(f);
  args.insert(args.end(), {"--var", "who"});
  r = launch(args);
  EXPECT_EQ(r.code(), 2) << r.out;
  EXPECT_NE(r.out.find("expected NAME=VALUE"), std::string::npos) << r.out;
}

// The shipped fetch pipeline through launch, against a server on 127.0.0.1.
class LaunchFetchTest : public LaunchTest {
 protected:
  void SetUp() override {
    LaunchTest::SetUp();
    fs::create_directories(root_ + "/srv/tree/src-1.0");
    std::ofstream(root_ + "/srv/tree/src-1.0/hello.txt") << "fetched content\n";
    shell("tar --sort=name --mtime=@0 --owner=0 --group=0 -C '" + root_ + "/srv/tree' -czf '" + root_ +
          "/srv/src-1.0.tar.gz' src-1.0");
    sha_ = sha256_of(root_ + "/srv/src-1.0.tar.gz");
    ASSERT_EQ(sha_.size(), 64u);
    fs::remove_all(root_ + "/srv/tree");
    server_ = http_server(root_ + "/srv", root_ + "/server.log", port_);
    ASSERT_FALSE(port_.empty()) << slurp(root_ + "/server.log");
    file_ = write("pkg.yaml", R"Y(package:
  name: fetcher
  version: 1
  epoch: 0
vars:
  port: "1"
  sha: 0000000000000000000000000000000000000000000000000000000000000000
pipeline:
  - uses: fetch
    with:
      uri: http://127.0.0.1:${{vars.port}}/src-1.0.tar.gz
      expected-sha256: ${{vars.sha}}
  - name: show
    runs: cat hello.txt
)Y");
  }
  void TearDown() override {
    server_.reset();
    LaunchTest::TearDown();
  }
  std::vector<std::string> args(const std::string& sha) {
    std::vector<std::string> a = base(file_);
    a.insert(a.end(), {"--var", "port=" + port_, "--var", "sha=" + sha});
    return a;
  }
  std::vector<std::string> cache_entries() {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(root_ + "/cache")) names.push_back(e.path().filename());
    return names;
  }
  std::string sha_, port_, file_;
  std::unique_ptr<Child> server_;
};

TEST_F(LaunchFetchTest, DownloadsOnceThenHitsTheCacheWithTheServerStopped) {
  LaunchRun r = launch(args(sha_));
  ASSERT_EQ(r.code(), 0) << r.out;
  EXPECT_NE(r.out.find("src-1.0.tar.gz: downloading"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("stored in the cache as sha256:" + sha_), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[fetcher/show] fetched content"), std::string::npos) << r.out;
  ASSERT_TRUE(fs::is_regular_file(root_ + "/cache/sha256:" + sha_)) << r.out;
  EXPECT_EQ(sha256_of(root_ + "/cache/sha256:" + sha_), sha_);

  server_->stop();
  r = launch(args(sha_));
  ASSERT_EQ(r.code(), 0) << r.out;
  EXPECT_NE(r.out.find("cache hit (sha256:" + sha_ + ")"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("downloading"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[fetcher/show] fetched content"), std::string::npos) << r.out;
}

TEST_F(LaunchFetchTest, AWrongChecksumFailsTheBuildAndCachesNothing) {
  std::string wrong = sha_;
  wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
  const LaunchRun r = launch(args(wrong));
  EXPECT_EQ(r.code(), 1) << r.out;
  EXPECT_NE(r.out.find("src-1.0.tar.gz: sha256 mismatch: expected " + wrong + ", got " + sha_),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("step 'fetch' of fetcher failed (exited with status 1"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("[fetcher/show]"), std::string::npos) << r.out;
  for (const std::string& name : cache_entries()) {
    EXPECT_EQ(name.find("sha256:"), std::string::npos) << "left in the cache: " << name;
  }
}

TEST_F(LaunchTest, NestedPipelinesAndUsesWithFromAPipelineDir) {
  write("pipelines/greet.yaml", R"Y(name: greet
inputs:
  who:
    description: who to greet
    required: true
  punctuation:
    default: "!"
pipeline:
  - runs: |
      echo "greet: hello ${{inputs.who}}${{inputs.punctuation}}"
  - uses: util/stamp
    with:
      what: ${{inputs.who}}
)Y");
  write("pipelines/util/stamp.yaml", R"Y(name: stamp
inputs:
  what:
    required: true
pipeline:
  - runs: |
      mkdir -p ${{targets.destdir}}/stamps
      echo "${{inputs.what}}" >> ${{targets.destdir}}/stamps/list
      echo "stamp: ${{inputs.what}} in $(pwd)"
)Y");
  const std::string f = write("pkg.yaml", R"Y(package:
  name: nest
  version: 1
  epoch: 0
pipeline:
  - name: outer
    working-directory: sub
    environment:
      LEVEL: outer
    pipeline:
      - name: first
        runs: |
          echo "first: $LEVEL in $(pwd)"
      - name: inner
        environment:
          LEVEL: inner
        pipeline:
          - runs: |
              echo "deep: $LEVEL"
          - if: ${{package.name}} == 'other'
            runs: echo never
  - uses: greet
    with:
      who: ${{package.name}}
  - uses: greet
    working-directory: elsewhere
    with:
      who: again
      punctuation: "?"
)Y");
  std::vector<std::string> args = base(f);
  args.insert(args.end(), {"--pipeline-dir", root_ + "/pipelines"});
  const LaunchRun r = launch(args);
  ASSERT_EQ(r.code(), 0) << r.out;
  const std::vector<std::string> in_order = {
      "[nest/outer/first] first: outer in /home/build/sub",
      "[nest/outer/inner] deep: inner",
      "skipped outer/inner",
      "[nest/greet] greet: hello nest!",
      "[nest/greet/util/stamp] stamp: nest in /home/build",
      "greet: hello again?",
      "stamp: again in /home/build/elsewhere",
  };
  size_t at = 0;
  for (const std::string& want : in_order) {
    const size_t found = r.out.find(want, at);
    ASSERT_NE(found, std::string::npos) << "'" << want << "' missing or out of order\n" << r.out;
    at = found + want.size();
  }
  EXPECT_EQ(r.out.find("never"), std::string::npos) << r.out;
  EXPECT_EQ(slurp(root_ + "/out/nest/stamps/list"), "nest\nagain\n");
}

TEST_F(LaunchTest, AnExistingCacheMountIsUsedAndLeftMounted) {
  const std::string backing = root_ + "/backing", mnt = root_ + "/mnt";
  fs::create_directories(backing);
  fs::create_directories(mnt);
  std::ofstream(backing + "/before") << "there before\n";
  {
    Child daemon({CACHEFS_BINARY, "-f", "--cache-directory", backing, "-o", "allow_other", mnt},
                 root_ + "/cachefs.log");
    for (int i = 0; i < 200 && !cachefs_mounted_at(mnt) && daemon.alive(); ++i) std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(cachefs_mounted_at(mnt)) << slurp(root_ + "/cachefs.log");
    const std::string f = write("pkg.yaml", R"Y(package:
  name: hostwide
  version: 1
  epoch: 0
pipeline:
  - runs: |
      cat /var/cache/melange/before
      mkdir -p /var/cache/melange/pip
      echo written-by-build > /var/cache/melange/pip/wheel
)Y");
    std::vector<std::string> args = base(f);
    args.insert(args.end(), {"--cache-mount", mnt});
    const LaunchRun r = launch(args);
    ASSERT_EQ(r.code(), 0) << r.out;
    EXPECT_NE(r.out.find("[hostwide/") , std::string::npos) << r.out;
    EXPECT_NE(r.out.find("there before"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("<- " + mnt), std::string::npos) << r.out;
    // launch did not unmount it, and the write went through it to the backing dir.
    EXPECT_TRUE(cachefs_mounted_at(mnt)) << r.out;
    EXPECT_TRUE(daemon.alive());
    EXPECT_EQ(slurp(mnt + "/pip/wheel"), "written-by-build\n");
    EXPECT_EQ(slurp(backing + "/pip/wheel"), "written-by-build\n");
    // Nothing was mounted at --cache-dir's place either.
    EXPECT_FALSE(fs::exists(root_ + "/cache/pip"));
    daemon.stop();
  }
  for (int i = 0; i < 100 && cachefs_mounted_at(mnt); ++i) std::this_thread::sleep_for(50ms);
  if (cachefs_mounted_at(mnt)) std::system(("fusermount3 -u -z '" + mnt + "'").c_str());
  EXPECT_FALSE(cachefs_mounted_at(mnt)) << "the test's own mount did not go away";
  EXPECT_EQ(slurp(backing + "/pip/wheel"), "written-by-build\n");
}

// examples/npm-offline: the first build installs from a local registry, the
// second, with the registry stopped, from npm's cache in the cachefs mount.
TEST_F(LaunchTest, NpmOfflineExampleInstallsFromTheCacheWithTheRegistryStopped) {
  if (!have_command("npm") || !have_command("node")) {
    GTEST_SKIP() << "npm and node are not installed on this machine (the sandbox uses the host's root)";
  }
  const std::string example = std::string(SOURCE_DIR) + "/examples/npm-offline";
  auto registry = std::make_unique<Child>(
      std::vector<std::string>{"python3", example + "/registry.py", example + "/registry/tiny-greeting"},
      root_ + "/registry.log");
  const std::string port = registry->wait_for_port();
  ASSERT_FALSE(port.empty()) << slurp(root_ + "/registry.log");
  std::vector<std::string> args = base(example + "/pkg.yaml");
  args.insert(args.end(), {"--var", "port=" + port});
  LaunchRun r = launch(args);
  ASSERT_EQ(r.code(), 0) << r.out;
  EXPECT_NE(r.out.find("hello launch, from tiny-greeting"), std::string::npos) << r.out;
  EXPECT_NE(slurp(root_ + "/registry.log").find("GET /tiny-greeting/-/tiny-greeting-1.0.0.tgz"),
            std::string::npos)
      << slurp(root_ + "/registry.log");
  EXPECT_TRUE(fs::is_directory(root_ + "/cache/npm/_cacache")) << r.out;

  registry->stop();
  args.insert(args.end(), {"--var", "offline=true"});
  r = launch(args);
  ASSERT_EQ(r.code(), 0) << r.out;
  EXPECT_NE(r.out.find("npm install --offline"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("hello launch, from tiny-greeting"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::is_regular_file(root_ + "/out/greet-app/usr/lib/greet-app/node_modules/tiny-greeting/index.js"));
}

}  // namespace

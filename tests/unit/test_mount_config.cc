#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "common/error.h"
#include "fs/mount_config.h"

namespace cachefs {
namespace {

namespace fs = std::filesystem;

struct Env {
  std::map<std::string, std::string> vars;
  GetEnv fn() const {
    return [this](const char* n) -> const char* {
      auto it = vars.find(n);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

MountConfig parse(std::vector<std::string> args, const Env& env = {}) {
  args.insert(args.begin(), "cachefs");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  MountConfig cfg;
  EXPECT_TRUE(parse_mount_args(static_cast<int>(argv.size()), argv.data(), env.fn(), cfg));
  return cfg;
}

std::string error_of(std::vector<std::string> args, const Env& env = {}) {
  try {
    parse(std::move(args), env);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cachefs-unit-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& s) const { return path_ + "/" + s; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(MountArgs, CacheDirectoryIsTheLastCatchAll) {
  auto cfg =
      parse({"--cache-directory", "/d", "--define-cache-directories", "/g=^/go/|/c=", "/mnt"});
  ASSERT_EQ(cfg.routes.size(), 3u);
  EXPECT_EQ(cfg.routes[0], (RouteSpec{"/g", "^/go/"}));
  EXPECT_EQ(cfg.routes[1], (RouteSpec{"/c", ""}));
  EXPECT_EQ(cfg.routes[2], (RouteSpec{"/d", ""}));
  EXPECT_EQ(cfg.mountpoint, "/mnt");
  EXPECT_EQ(cfg.policy, ResolutionPolicy::kStrict);
  EXPECT_EQ(cfg.write_mode, WriteMode::kPassthrough);
}

TEST(MountArgs, FlagBeatsEnvironment) {
  Env env{{{"CACHEFS_CACHE_DIRECTORY", "/env"},
           {"CACHEFS_RESOLUTION_POLICY", "weak"},
           {"CACHEFS_DEFINE_CACHE_DIRECTORIES", "/eg=go"}}};
  auto cfg = parse({"--cache-directory", "/flag", "--resolution-policy", "strict", "/mnt"}, env);
  ASSERT_EQ(cfg.routes.size(), 2u);
  EXPECT_EQ(cfg.routes[0], (RouteSpec{"/eg", "go"}));  // no routes flag: env's routes
  EXPECT_EQ(cfg.routes[1].directory, "/flag");
  EXPECT_EQ(cfg.policy, ResolutionPolicy::kStrict);
}

TEST(MountArgs, EnvironmentFallbacks) {
  Env env{{{"CACHEFS_CACHE_DIRECTORY", "/env"}, {"CACHEFS_RESOLUTION_POLICY", "weak"}}};
  auto cfg = parse({"/mnt"}, env);
  ASSERT_EQ(cfg.routes.size(), 1u);
  EXPECT_EQ(cfg.routes[0].directory, "/env");
  EXPECT_EQ(cfg.policy, ResolutionPolicy::kWeak);
}

TEST(MountArgs, EmptyEnvironmentVariableCountsAsUnset) {
  Env env{{{"CACHEFS_CACHE_DIRECTORY", ""}, {"CACHEFS_RESOLUTION_POLICY", ""}}};
  EXPECT_NE(error_of({"/mnt"}, env).find("no default cache directory"), std::string::npos);
  Env env2{{{"CACHEFS_CACHE_DIRECTORY", "/d"}, {"CACHEFS_DEFINE_CACHE_DIRECTORIES", ""}}};
  EXPECT_EQ(parse({"/mnt"}, env2).routes.size(), 1u);
}

TEST(MountArgs, BadEnvironmentRoutesNameTheVariable) {
  Env env{{{"CACHEFS_DEFINE_CACHE_DIRECTORIES", "/a"}}};
  EXPECT_EQ(error_of({"--cache-directory", "/d", "/mnt"}, env)
                .rfind("CACHEFS_DEFINE_CACHE_DIRECTORIES: entry 1 '/a' has no '='", 0),
            0u);
  Env env2{{{"CACHEFS_RESOLUTION_POLICY", "lax"}}};
  EXPECT_EQ(error_of({"--cache-directory", "/d", "/mnt"}, env2),
            "CACHEFS_RESOLUTION_POLICY: unknown resolution policy 'lax' (use strict or weak)");
}

TEST(MountArgs, DashOCarriesCachefsKeysAndFuseOptions) {
  auto cfg = parse({"/mnt", "-o", "allow_other,cache_directory=/o,resolution_policy=weak", "-o",
                    "threads=4,noatime,defaults,_netdev"});
  ASSERT_EQ(cfg.routes.size(), 1u);
  EXPECT_EQ(cfg.routes[0].directory, "/o");
  EXPECT_EQ(cfg.policy, ResolutionPolicy::kWeak);
  EXPECT_EQ(cfg.threads, 4u);
  EXPECT_EQ(cfg.fuse_options, (std::vector<std::string>{"allow_other", "noatime"}));
}

TEST(MountArgs, ExplicitFlagBeatsDashO) {
  auto cfg = parse({"--cache-directory", "/flag", "/mnt", "-o", "cache_directory=/o"});
  EXPECT_EQ(cfg.routes.back().directory, "/flag");
}

TEST(MountArgs, MountStyleSourceIsTheCacheDirectory) {
  auto cfg = parse({"/srv/cache", "/mnt", "-o", "rw,allow_other"});
  ASSERT_EQ(cfg.routes.size(), 1u);
  EXPECT_EQ(cfg.routes[0].directory, "/srv/cache");
  EXPECT_EQ(cfg.mountpoint, "/mnt");
}

TEST(MountArgs, WritesGoThroughUnlessWritebackCacheIsAskedFor) {
  EXPECT_FALSE(parse({"--cache-directory", "/d", "/mnt"}).writeback_cache);
  EXPECT_TRUE(parse({"--cache-directory", "/d", "--writeback-cache", "/mnt"}).writeback_cache);
  EXPECT_TRUE(parse({"/d", "/mnt", "-o", "writeback_cache"}).writeback_cache);
  EXPECT_FALSE(parse({"/d", "/mnt", "-o", "no_writeback_cache"}).writeback_cache);
}

TEST(MountArgs, WatchingTheBackingTreesLengthensTheNameAndAttributeTimeoutsNotGiven) {
  MountConfig plain = parse({"--cache-directory", "/d", "/mnt"});
  EXPECT_EQ(plain.watch_backing, WatchBacking::kAuto);
  EXPECT_EQ(plain.entry_timeout, 10.0);
  EXPECT_EQ(plain.attr_timeout, 10.0);
  EXPECT_EQ(plain.negative_timeout, 0.0);
  plain.follow_watch(false);  // auto, and the daemon may not watch
  EXPECT_EQ(plain.entry_timeout, 10.0);
  EXPECT_EQ(plain.attr_timeout, 10.0);
  EXPECT_EQ(plain.negative_timeout, 0.0);
  plain.follow_watch(true);
  EXPECT_EQ(plain.entry_timeout, 3600.0);
  EXPECT_EQ(plain.attr_timeout, 3600.0);
  EXPECT_EQ(plain.negative_timeout, 0.0);  // a name another mount makes shows at once

  EXPECT_EQ(parse({"--cache-directory", "/d", "--watch-backing", "/mnt"}).watch_backing,
            WatchBacking::kOn);
  EXPECT_EQ(parse({"--cache-directory", "/d", "--no-watch-backing", "/mnt"}).watch_backing,
            WatchBacking::kOff);
  // The last one given wins, as for every other setting.
  EXPECT_EQ(parse({"/d", "--watch-backing", "--no-watch-backing", "/mnt"}).watch_backing,
            WatchBacking::kOff);
  EXPECT_EQ(parse({"/d", "--no-watch-backing", "--watch-backing", "/mnt"}).watch_backing,
            WatchBacking::kOn);
  EXPECT_EQ(parse({"/d", "/mnt", "-o", "no_watch_backing"}).watch_backing, WatchBacking::kOff);
  // Another option's value that looks like the flag is that option's value.
  const MountConfig valued =
      parse({"/d", "--no-watch-backing", "--pid-file", "--watch-backing", "/mnt"});
  EXPECT_EQ(valued.watch_backing, WatchBacking::kOff);
  EXPECT_EQ(valued.pid_file, "--watch-backing");
  // An explicit flag beats -o.
  EXPECT_EQ(parse({"/d", "--watch-backing", "/mnt", "-o", "no_watch_backing"}).watch_backing,
            WatchBacking::kOn);

  MountConfig given =
      parse({"/d", "/mnt", "-o", "watch_backing,attr_timeout=5,negative_timeout=60"});
  EXPECT_EQ(given.watch_backing, WatchBacking::kOn);
  given.follow_watch(true);
  EXPECT_EQ(given.entry_timeout, 3600.0);
  EXPECT_EQ(given.attr_timeout, 5.0);
  EXPECT_EQ(given.negative_timeout, 60.0);
  for (const char* o : {"watch_backing=yes", "no_watch_backing=1"}) {
    const std::string e = error_of({"/d", "/mnt", "-o", o});
    EXPECT_NE(e.find("takes no value"), std::string::npos) << e;
  }
  const std::string e = error_of({"/d", "--watch-backing=off", "/mnt"});
  EXPECT_EQ(e, "--watch-backing: takes no value");
}

TEST(MountArgs, KernelPassthroughIsOnUnlessTurnedOff) {
  EXPECT_TRUE(parse({"--cache-directory", "/d", "/mnt"}).kernel_passthrough);
  EXPECT_FALSE(
      parse({"--cache-directory", "/d", "--kernel-passthrough", "off", "/mnt"}).kernel_passthrough);
  EXPECT_TRUE(parse({"/d", "/mnt", "-o", "kernel_passthrough=on"}).kernel_passthrough);
  EXPECT_FALSE(parse({"/d", "/mnt", "-o", "kernel_passthrough=off"}).kernel_passthrough);
}

TEST(MountArgs, IoUringIsAutoUnlessSaid) {
  EXPECT_EQ(parse({"--cache-directory", "/d", "/mnt"}).io_uring, IoUring::kAuto);
  EXPECT_EQ(parse({"--cache-directory", "/d", "--io-uring", "on", "/mnt"}).io_uring, IoUring::kOn);
  EXPECT_EQ(parse({"/d", "/mnt", "-o", "io_uring=off"}).io_uring, IoUring::kOff);
  EXPECT_EQ(parse({"/d", "/mnt", "--io-uring=off", "--io-uring=auto"}).io_uring, IoUring::kAuto);
}

TEST(MountArgs, BusyPollIsMicrosecondsAndZeroTurnsItOff) {
  EXPECT_EQ(parse({"--cache-directory", "/d", "/mnt"}).busy_poll_us, 100u);
  EXPECT_EQ(parse({"--cache-directory", "/d", "--busy-poll", "0", "/mnt"}).busy_poll_us, 0u);
  EXPECT_EQ(parse({"/d", "/mnt", "-o", "busy_poll=75"}).busy_poll_us, 75u);
  for (const char* bad : {"-1", "fast", "10001", "1.5"}) {
    const std::string e = error_of({"--cache-directory", "/d", "--busy-poll", bad, "/mnt"});
    EXPECT_NE(e.find("--busy-poll"), std::string::npos) << bad << ": " << e;
  }
  const std::string e = error_of({"/d", "/mnt", "-o", "busy_poll=often"});
  EXPECT_NE(e.find("--busy-poll"), std::string::npos) << e;
}

TEST(MountArgs, WorkerThreadsDefaultToSixteenAndZeroIsRefused) {
  EXPECT_EQ(parse({"--cache-directory", "/d", "/mnt"}).threads, 16u);
  EXPECT_NE(error_of({"--cache-directory", "/d", "--threads", "0", "/mnt"}).find("--threads"),
            std::string::npos);
}

TEST(MountArgs, PrefetchThreadsAreCountedAndZeroTurnsItOff) {
  EXPECT_EQ(parse({"--cache-directory", "/d", "/mnt"}).prefetch_threads, 8u);
  EXPECT_EQ(parse({"--cache-directory", "/d", "--prefetch-threads", "0", "/mnt"}).prefetch_threads,
            0u);
  EXPECT_EQ(parse({"/d", "/mnt", "-o", "prefetch_threads=3"}).prefetch_threads, 3u);
  for (const char* bad : {"-1", "many", "65", "2.5", ""}) {
    const std::string e = error_of({"--cache-directory", "/d", "--prefetch-threads", bad, "/mnt"});
    EXPECT_NE(e.find("--prefetch-threads"), std::string::npos) << bad << ": " << e;
  }
  const std::string e = error_of({"/d", "/mnt", "-o", "prefetch_threads=lots"});
  EXPECT_NE(e.find("--prefetch-threads"), std::string::npos) << e;
}

TEST(MountArgs, DashORoMeansReadonly) {
  EXPECT_EQ(parse({"/d", "/mnt", "-o", "ro"}).write_mode, WriteMode::kReadonly);
  EXPECT_EQ(parse({"--write-mode", "readonly", "--cache-directory", "/d", "/mnt"}).write_mode,
            WriteMode::kReadonly);
}

TEST(MountArgs, EachMistakeHasItsOwnMessage) {
  EXPECT_EQ(error_of({"--cache-directory", "/d"}),
            "missing MOUNTPOINT (usage: cachefs [OPTIONS] [SOURCE] MOUNTPOINT)");
  EXPECT_EQ(error_of({"--cache-directory", "/d", "/mnt", "-o", "bogus"}),
            "-o bogus: unknown mount option (see cachefs(8))");
  EXPECT_EQ(error_of({"--cache-directory", "/d", "/mnt", "-o", "store"}),
            "-o store: needs a value (store=...)");
  EXPECT_EQ(error_of({"--cache-directory", "/d", "--write-mode", "discardz", "/mnt"}),
            "--write-mode: unknown mode 'discardz' (use passthrough, discard or readonly)");
  EXPECT_EQ(error_of({"--cache-directory", "/d", "--log-level", "loud", "/mnt"}),
            "--log-level: unknown level 'loud' (use trace, debug, info, warn, error, off)");
  EXPECT_NE(error_of({"--cache-directory", "/d", "--bogus", "/mnt"}).find("--bogus"),
            std::string::npos);
  EXPECT_NE(error_of({"--cache-directory", "/d", "--threads", "0", "/mnt"}).find("--threads"),
            std::string::npos);
  EXPECT_NE(error_of({"--define-cache-directories", "/a=(", "/mnt"}).find("invalid regex"),
            std::string::npos);
  EXPECT_NE(error_of({"/mnt"}).find("no default cache directory"), std::string::npos);
}

TEST(ConfigFile, RoutesMayHoldBarsAndEquals) {
  TempDir t;
  std::ofstream(t / "c.yaml") << "cache-directory: /d\n"
                                 "resolution-policy: weak\n"
                                 "routes:\n"
                                 "  - directory: /a\n"
                                 "    regex: '^/(go|pip)/x=1'\n"
                                 "  - {directory: /b}\n";
  auto cfg = parse({"--config", t / "c.yaml", "/mnt"});
  ASSERT_EQ(cfg.routes.size(), 3u);
  EXPECT_EQ(cfg.routes[0], (RouteSpec{"/a", "^/(go|pip)/x=1"}));
  EXPECT_EQ(cfg.routes[1], (RouteSpec{"/b", ""}));
  EXPECT_EQ(cfg.routes[2], (RouteSpec{"/d", ""}));
  EXPECT_EQ(cfg.policy, ResolutionPolicy::kWeak);
}

TEST(ConfigFile, FlagBeatsFileBeatsEnvironment) {
  TempDir t;
  std::ofstream(t / "c.yaml") << "cache-directory: /file\nresolution-policy: weak\n";
  Env env{{{"CACHEFS_CACHE_DIRECTORY", "/env"}, {"CACHEFS_RESOLUTION_POLICY", "strict"}}};
  auto cfg = parse({"--config", t / "c.yaml", "/mnt"}, env);
  EXPECT_EQ(cfg.routes.back().directory, "/file");
  EXPECT_EQ(cfg.policy, ResolutionPolicy::kWeak);
  cfg = parse({"--config", t / "c.yaml", "--resolution-policy", "strict", "/mnt"}, env);
  EXPECT_EQ(cfg.policy, ResolutionPolicy::kStrict);
}

TEST(ConfigFile, MergedRouteSettingsAreWhatTheDaemonReads) {
  // cachectl reads routes through merge_route_settings; it must agree with cachefs.
  TempDir t;
  std::ofstream(t / "c.yaml") << "cache-directory: /file\nstore: /file/s\n"
                                 "routes:\n  - {directory: /r, regex: '^/go/'}\n";
  Env env{{{"CACHEFS_CACHE_DIRECTORY", "/env"}, {"CACHEFS_RESOLUTION_POLICY", "weak"}}};
  RouteSettings s = merge_route_settings({"", "", t / "c.yaml", "", ""}, env.fn());
  auto cfg = parse({"--config", t / "c.yaml", "/mnt"}, env);
  EXPECT_EQ(s.routes, cfg.routes);
  EXPECT_EQ(s.policy, cfg.policy);
  EXPECT_EQ(s.policy, ResolutionPolicy::kWeak);
  EXPECT_EQ(s.store_dir, "/file/s");
  s = merge_route_settings({"/flag", "/a=x", "", "strict", "/st"}, env.fn());
  EXPECT_EQ(s.routes, (std::vector<RouteSpec>{{"/a", "x"}, {"/flag", ""}}));
  EXPECT_EQ(s.policy, ResolutionPolicy::kStrict);
  EXPECT_EQ(s.store_dir, "/st");
}

TEST(ConfigFile, ErrorsNameFileLineAndField) {
  TempDir t;
  std::ofstream(t / "a.yaml") << "cache-directory: /d\nroutez: []\n";
  EXPECT_EQ(error_of({"--config", t / "a.yaml", "/mnt"}),
            t / "a.yaml" +
                ":2:1: unknown key 'routez' (use cache-directory, routes, resolution-policy, "
                "write-mode, store)");
  std::ofstream(t / "b.yaml") << "routes:\n  - directory: /a\n    regx: x\n";
  EXPECT_EQ(error_of({"--config", t / "b.yaml", "/mnt"}),
            t / "b.yaml" + ":3:5: unknown route field 'regx' (use directory, regex)");
  std::ofstream(t / "c.yaml") << "routes: [\n";
  EXPECT_EQ(error_of({"--config", t / "c.yaml", "/mnt"}).rfind(t / "c.yaml" + ":", 0), 0u);
  std::ofstream(t / "d.yaml") << "routes:\n  - regex: x\n";
  EXPECT_EQ(error_of({"--config", t / "d.yaml", "/mnt"}),
            t / "d.yaml" + ":2:5: route without a 'directory'");
  // Keys that are not strings (found by tests/fuzz/fuzz_route_config): a one-line
  // error, not an uncaught yaml-cpp exception.
  std::ofstream(t / "e.yaml") << "[cache-directory]: /d\n";
  EXPECT_EQ(error_of({"--config", t / "e.yaml", "/mnt"}),
            t / "e.yaml" + ":1:1: a key must be a plain string");
  std::ofstream(t / "f.yaml") << "routes:\n  - {directory: /a, {regex: x}: y}\n";
  EXPECT_EQ(error_of({"--config", t / "f.yaml", "/mnt"}),
            t / "f.yaml" + ":2:21: a key must be a plain string");
  EXPECT_EQ(error_of({"--config", t / "missing.yaml", "/mnt"}),
            "--config '" + t / "missing.yaml" + "': No such file or directory");
}

TEST(ValidatePaths, CanonicalisesAndCreatesTheStore) {
  TempDir t;
  fs::create_directories(t / "cache");
  fs::create_directories(t / "mnt");
  auto cfg = parse({"--cache-directory", t / "cache/../cache", t / "mnt"});
  validate_paths(cfg);
  EXPECT_EQ(cfg.routes[0].directory, t / "cache");
  EXPECT_EQ(cfg.store_dir, t / "cache/.cachefs");
  EXPECT_TRUE(fs::is_directory(t / "cache/.cachefs"));
}

std::string validate_error(MountConfig cfg) {
  try {
    validate_paths(cfg);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(ValidatePaths, RefusesWhatCannotWork) {
  TempDir t;
  fs::create_directories(t / "cache/mnt");
  fs::create_directories(t / "mnt");
  std::ofstream(t / "file") << "x";
  EXPECT_EQ(validate_error(parse({"--cache-directory", t / "nope", t / "mnt"})),
            "cache directory '" + t / "nope" + "': No such file or directory");
  EXPECT_EQ(validate_error(parse({"--cache-directory", t / "file", t / "mnt"})),
            "cache directory '" + t / "file" + "': not a directory");
  EXPECT_EQ(validate_error(parse({"--define-cache-directories", t / "gone" + "=x",
                                  "--cache-directory", t / "cache", t / "mnt"})),
            "route directory '" + t / "gone" + "': No such file or directory");
  EXPECT_EQ(validate_error(parse({"--cache-directory", t / "cache", t / "nomnt"})),
            "mountpoint '" + t / "nomnt" + "': No such file or directory");
  EXPECT_NE(validate_error(parse({"--cache-directory", t / "cache", t / "cache/mnt"}))
                .find("lies inside cache directory"),
            std::string::npos);
  EXPECT_NE(
      validate_error(parse({"--cache-directory", t / "cache", "--store", t / "mnt/s", t / "mnt"}))
          .find("--store"),
      std::string::npos);
  EXPECT_FALSE(fs::exists(t / "mnt/s"));  // refused: not created
}

}  // namespace
}  // namespace cachefs

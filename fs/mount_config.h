// Everything a mount is told by its user: flags, -o options, a config file and
// CACHEFS_* environment variables, merged with the precedence
// flag / -o  >  --config file  >  environment, and validated before anything is
// mounted. Every mistake is a UsageError whose one-line message names it.
#pragma once

#include <spdlog/common.h>

#include <functional>
#include <string>
#include <vector>

#include "fs/route_table.h"

namespace cachefs {

enum class WriteMode { kPassthrough, kReadonly, kDiscard };
// FUSE over io_uring (fs/uring_loop.h): used when the kernel offers it (auto),
// also switched on in the kernel when it is off (on), or never (off).
enum class IoUring { kAuto, kOn, kOff };
// --watch-backing / --no-watch-backing; auto: watch when the daemon may.
enum class WatchBacking { kAuto, kOn, kOff };
std::string_view to_string(WriteMode m);

struct MountConfig {
  // Routes in candidate order; the default cache directory is the last catch-all.
  std::vector<RouteSpec> routes;
  ResolutionPolicy policy = ResolutionPolicy::kStrict;
  WriteMode write_mode = WriteMode::kPassthrough;
  std::string store_dir;  // empty until validated: then <default dir>/.cachefs unless given
  std::string mountpoint;
  bool foreground = false;
  bool debug = false;
  unsigned threads = 16;  // FUSE workers (--threads, 1-1024)
  // µs the listening worker polls /dev/fuse after a request before it sleeps
  // (fs/request_loop.h); 0: sleep at once.
  unsigned busy_poll_us = 100;
  // Background threads that read directories (and small files, while the mount
  // is being read) ahead of the reader (fs/prefetch.h); 0: none.
  unsigned prefetch_threads = 8;
  spdlog::level::level_enum log_level = spdlog::level::info;
  // Standard mount options handed to the kernel through libfuse (allow_other, ...).
  std::vector<std::string> fuse_options;
  double entry_timeout = 10.0;
  double attr_timeout = 10.0;
  double negative_timeout = 0.0;
  // Whether the command line gave these two; if not, they follow the watch.
  bool entry_timeout_given = false;
  bool attr_timeout_given = false;
  // The daemon watches the backing filesystems and invalidates what others
  // change (fs/backing_watch.h), by default whenever the kernel lets it
  // (root); the entry and attribute timeouts not given then default to this.
  WatchBacking watch_backing = WatchBacking::kAuto;
  static constexpr double kWatchedTimeout = 3600.0;
  // Settles the timeouts not given once it is known whether the mount watches.
  void follow_watch(bool watching);
  // Files created by root are written by the kernel straight into their backing
  // files (FUSE passthrough), not through the daemon (--kernel-passthrough).
  bool kernel_passthrough = true;
  IoUring io_uring = IoUring::kAuto;
  bool writeback_cache = false;  // kernel write-back cache (--writeback-cache); off: write through
  std::string pid_file;         // written once mounted (and daemonized)
  unsigned max_open_files = 0;  // descriptors kept open; 0: 70% of RLIMIT_NOFILE
  bool dedup = true;            // passthrough mode: share identical files written
  double dedup_delay = 1.0;     // seconds a file must stay unchanged first
  // discard mode: where changes go (empty: a private directory under the store,
  // <store>/upper/<id>/tree), and whether they stay there after unmount.
  std::string upper_dir;
  bool keep_upper = false;
};

using GetEnv = std::function<const char*(const char*)>;

// Parses argv (argv[0] included). Returns false if it printed --help or --version
// and the program should exit 0. Throws UsageError.
bool parse_mount_args(int argc, const char* const* argv, const GetEnv& getenv, MountConfig& out);

// Reads the YAML config file into `out` for every setting not already set.
// Exposed for tests; parse_mount_args calls it for --config / -o config=.
struct ConfigFileSettings {
  std::string cache_directory;
  std::vector<RouteSpec> routes;
  std::string resolution_policy;
  std::string write_mode;
  std::string store;
};
ConfigFileSettings read_config_file(const std::string& path);
// The same from YAML text; `path` only names the source in messages. The text is
// untrusted input (tests/fuzz/fuzz_route_config.cc): anything wrong is a UsageError.
ConfigFileSettings parse_config_yaml(const std::string& text, const std::string& path);

// The route settings as given on a command line (empty: not given), and what they
// come to after merging flag > --config file > CACHEFS_* environment. Shared by
// cachefs and cachectl so both read routes the same way.
struct RouteFlags {
  std::string cache_directory;
  std::string define_cache_directories;
  std::string config;
  std::string resolution_policy;
  std::string store;
};
struct RouteSettings {
  std::vector<RouteSpec> routes;  // candidate order; the default directory last
  ResolutionPolicy policy = ResolutionPolicy::kStrict;
  std::string store_dir;    // flag, else the config file's; empty if neither
  ConfigFileSettings file;  // the --config file, for settings beyond routes
};
// Throws UsageError naming the flag, file position or variable at fault. Regexes
// are not compiled here (RouteTable does that).
RouteSettings merge_route_settings(const RouteFlags& flags, const GetEnv& getenv);

// Makes every directory absolute and canonical, checks that backing directories
// exist, creates the store directory if needed, and refuses layouts that would
// make the mount see itself. Throws UsageError.
void validate_paths(MountConfig& cfg);

}  // namespace cachefs

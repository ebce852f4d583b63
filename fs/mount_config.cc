#include "fs/mount_config.h"

#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "common/error.h"
#include "common/log.h"

namespace cachefs {
namespace {

// cachefs settings that -o accepts as key=value; each is the flag of the same name
// with '_' for '-'. Boolean ones take no value.
constexpr std::array<std::string_view, 21> kValueKeys = {"cache_directory",
                                                         "define_cache_directories",
                                                         "config",
                                                         "resolution_policy",
                                                         "store",
                                                         "write_mode",
                                                         "threads",
                                                         "busy_poll",
                                                         "prefetch_threads",
                                                         "log_level",
                                                         "entry_timeout",
                                                         "attr_timeout",
                                                         "negative_timeout",
                                                         "source",
                                                         "pid_file",
                                                         "max_open_files",
                                                         "dedup",
                                                         "dedup_delay",
                                                         "kernel_passthrough",
                                                         "io_uring",
                                                         "upper"};
constexpr std::array<std::string_view, 5> kBoolKeys = {
    "writeback_cache", "no_writeback_cache", "keep_upper", "watch_backing", "no_watch_backing"};

// Mount options libfuse hands to the kernel (or handles itself).
constexpr std::array<std::string_view, 26> kFuseKeys = {
    "allow_other",  "allow_root",  "default_permissions",
    "ro",           "rw",          "suid",
    "nosuid",       "dev",         "nodev",
    "exec",         "noexec",      "async",
    "sync",         "atime",       "noatime",
    "diratime",     "nodiratime",  "relatime",
    "norelatime",   "strictatime", "dirsync",
    "auto_unmount", "fsname",      "subtype",
    "max_read",     "blkdev"};
// fstab/mount(8) bookkeeping words that reach us through mount.fuse3 and mean
// nothing to the filesystem.
constexpr std::array<std::string_view, 8> kIgnoredKeys = {"defaults", "auto", "noauto", "nofail",
                                                          "_netdev",  "user", "users",  "nouser"};

template <size_t N>
bool in(const std::array<std::string_view, N>& set, std::string_view key) {
  for (auto k : set)
    if (k == key) return true;
  return false;
}

std::string flag_for(std::string_view key) {
  std::string f = "--";
  for (char c : key) f += c == '_' ? '-' : c;
  return f;
}

// Splits -o values on ',' and turns cachefs keys into flags placed before the real
// command line (so an explicit flag, parsed later, wins); FUSE keys are collected.
void expand_dash_o(const std::vector<std::string>& values, std::vector<std::string>& flags,
                   std::vector<std::string>& fuse, bool& read_only) {
  for (const std::string& value : values) {
    size_t start = 0;
    while (start <= value.size()) {
      size_t comma = value.find(',', start);
      if (comma == std::string::npos) comma = value.size();
      const std::string opt = value.substr(start, comma - start);
      start = comma + 1;
      if (opt.empty()) continue;
      const size_t eq = opt.find('=');
      const std::string key = opt.substr(0, eq);
      if (in(kValueKeys, key)) {
        if (eq == std::string::npos)
          throw UsageError::make("-o {}: needs a value ({}=...)", key, key);
        flags.push_back(flag_for(key) + "=" + opt.substr(eq + 1));
      } else if (in(kBoolKeys, key) || key == "debug") {
        if (eq != std::string::npos) throw UsageError::make("-o {}: takes no value", key);
        flags.push_back(flag_for(key));
      } else if (in(kFuseKeys, key)) {
        if (key == "ro") read_only = true;
        if (key == "rw") read_only = false;
        fuse.push_back(opt);
      } else if (in(kIgnoredKeys, key) || key.starts_with("x-") || key.starts_with("comment=")) {
        continue;
      } else {
        throw UsageError::make("-o {}: unknown mount option (see cachefs(8))", opt);
      }
    }
  }
}

std::optional<std::string> env_value(const GetEnv& getenv, const char* name) {
  const char* v = getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;  // empty counts as unset
  return std::string(v);
}

std::string node_where(const std::string& path, const YAML::Node& n) {
  return fmt::format("{}:{}:{}", path, n.Mark().line + 1, n.Mark().column + 1);
}

std::string scalar(const std::string& path, const YAML::Node& n, std::string_view field) {
  if (!n.IsScalar())
    throw UsageError::make("{}: '{}' must be a string", node_where(path, n), field);
  return n.as<std::string>();
}

// A mapping key: YAML allows any node there; the config file only plain strings.
std::string key_of(const std::string& path, const YAML::Node& n) {
  if (!n.IsScalar()) throw UsageError::make("{}: a key must be a plain string", node_where(path, n));
  return n.as<std::string>();
}

std::string canonical_dir(const std::string& dir, std::string_view what) {
  char buf[PATH_MAX];
  if (::realpath(dir.c_str(), buf) == nullptr) {
    if (errno == ENOTCONN) {
      throw UsageError::make(
          "{} '{}': {} (a killed daemon's mount? clear it with: fusermount3 -u {})", what, dir,
          std::strerror(errno), dir);
    }
    throw UsageError::make("{} '{}': {}", what, dir, std::strerror(errno));
  }
  struct stat st {};
  if (::stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw UsageError::make("{} '{}': not a directory", what, dir);
  }
  return buf;
}

bool inside(const std::string& child, const std::string& parent) {
  if (child == parent) return true;
  const std::string p = parent == "/" ? parent : parent + "/";
  return child.starts_with(p);
}

}  // namespace

std::string_view to_string(WriteMode m) {
  return m == WriteMode::kPassthrough ? "passthrough"
         : m == WriteMode::kDiscard   ? "discard"
                                      : "readonly";
}

ConfigFileSettings read_config_file(const std::string& path) {
  std::string text;
  {
    errno = 0;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      throw UsageError::make("--config '{}': {}", path, std::strerror(errno ? errno : ENOENT));
    }
    std::ostringstream all;
    all << in.rdbuf();
    if (in.bad()) {
      throw UsageError::make("--config '{}': {}", path, std::strerror(errno ? errno : EIO));
    }
    text = std::move(all).str();
  }
  return parse_config_yaml(text, path);
}

ConfigFileSettings parse_config_yaml(const std::string& text, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw UsageError::make("{}:{}:{}: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  ConfigFileSettings s;
  if (root.IsNull()) return s;
  if (!root.IsMap())
    throw UsageError::make("{}: the config file must be a mapping", node_where(path, root));
  for (const auto& kv : root) {
    const std::string key = key_of(path, kv.first);
    const YAML::Node& v = kv.second;
    if (key == "cache-directory") {
      s.cache_directory = scalar(path, v, key);
    } else if (key == "resolution-policy") {
      s.resolution_policy = scalar(path, v, key);
    } else if (key == "write-mode") {
      s.write_mode = scalar(path, v, key);
    } else if (key == "store") {
      s.store = scalar(path, v, key);
    } else if (key == "routes") {
      if (!v.IsSequence())
        throw UsageError::make("{}: 'routes' must be a list", node_where(path, v));
      for (const auto& r : v) {
        if (!r.IsMap()) {
          throw UsageError::make("{}: a route must be a mapping with 'directory' and 'regex'",
                                 node_where(path, r));
        }
        RouteSpec spec;
        bool have_dir = false;
        for (const auto& f : r) {
          const std::string fk = key_of(path, f.first);
          if (fk == "directory") {
            spec.directory = scalar(path, f.second, "directory");
            have_dir = true;
          } else if (fk == "regex") {
            spec.regex = f.second.IsNull() ? "" : scalar(path, f.second, "regex");
          } else {
            throw UsageError::make("{}: unknown route field '{}' (use directory, regex)",
                                   node_where(path, f.first), fk);
          }
        }
        if (!have_dir || spec.directory.empty()) {
          throw UsageError::make("{}: route without a 'directory'", node_where(path, r));
        }
        s.routes.push_back(std::move(spec));
      }
    } else {
      throw UsageError::make(
          "{}: unknown key '{}' (use cache-directory, routes, resolution-policy, write-mode, "
          "store)",
          node_where(path, kv.first), key);
    }
  }
  return s;
}

RouteSettings merge_route_settings(const RouteFlags& flags, const GetEnv& getenv) {
  RouteSettings out;
  if (!flags.config.empty()) out.file = read_config_file(flags.config);
  const ConfigFileSettings& file = out.file;

  auto pick = [&](const std::string& flag, const std::string& from_file,
                  const char* env) -> std::pair<std::string, std::string> {
    if (!flag.empty()) return {flag, "flag"};
    if (!from_file.empty()) return {from_file, "config"};
    if (auto v = env_value(getenv, env)) return {*v, env};
    return {"", ""};
  };

  // Routes: a flag replaces the config file's list, which replaces the environment's.
  if (!flags.define_cache_directories.empty()) {
    out.routes = parse_route_spec(flags.define_cache_directories);
  } else if (!file.routes.empty()) {
    out.routes = file.routes;
  } else if (auto v = env_value(getenv, "CACHEFS_DEFINE_CACHE_DIRECTORIES")) {
    try {
      out.routes = parse_route_spec(*v);
    } catch (const UsageError& e) {
      std::string m = e.what();
      m.replace(0, std::strlen("--define-cache-directories"), "CACHEFS_DEFINE_CACHE_DIRECTORIES");
      throw UsageError(m);
    }
  }
  const auto [dir, dir_from] =
      pick(flags.cache_directory, file.cache_directory, "CACHEFS_CACHE_DIRECTORY");
  if (!dir.empty()) out.routes.push_back({dir, ""});

  const auto [pol, pol_from] =
      pick(flags.resolution_policy, file.resolution_policy, "CACHEFS_RESOLUTION_POLICY");
  if (!pol.empty()) {
    out.policy = parse_resolution_policy(pol, pol_from == "flag"     ? "--resolution-policy"
                                              : pol_from == "config" ? flags.config
                                                                     : pol_from);
  }
  out.store_dir = !flags.store.empty() ? flags.store : file.store;
  return out;
}

bool parse_mount_args(int argc, const char* const* argv, const GetEnv& getenv, MountConfig& out) {
  // First pass: pull out -o values so their cachefs keys can become flags.
  std::vector<std::string> raw(argv + 1, argv + argc);
  std::vector<std::string> dash_o, rest;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == "-o") {
      if (i + 1 == raw.size()) throw UsageError("-o: needs a value");
      dash_o.push_back(raw[++i]);
    } else if (raw[i].starts_with("-o") && raw[i] != "-o") {
      dash_o.push_back(raw[i].substr(2));
    } else {
      rest.push_back(raw[i]);
    }
  }
  bool read_only_opt = false;
  std::vector<std::string> args;
  expand_dash_o(dash_o, args, out.fuse_options, read_only_opt);
  args.insert(args.end(), rest.begin(), rest.end());

  CLI::App app{"cachefs: a routed, deduplicating FUSE filesystem for build caches", "cachefs"};
  app.set_version_flag("-V,--version", "cachefs " CACHEFS_VERSION);
  std::string cache_dir, define, config, policy, store, write_mode, log_level, source, pid_file;
  std::vector<std::string> positionals;
  const auto last = CLI::MultiOptionPolicy::TakeLast;
  app.add_option("--cache-directory", cache_dir, "default backing directory (catch-all route)")
      ->multi_option_policy(last);
  app.add_option("--define-cache-directories", define, "routes: 'DIR1=REGEX1|DIR2=REGEX2|...'")
      ->multi_option_policy(last);
  app.add_option("--config", config, "YAML file with routes and settings")
      ->multi_option_policy(last);
  app.add_option("--resolution-policy", policy, "strict (default) or weak")
      ->multi_option_policy(last);
  app.add_option("--store", store, "object store directory (default: <cache dir>/.cachefs)")
      ->multi_option_policy(last);
  app.add_option("--write-mode", write_mode, "passthrough (default), discard or readonly")
      ->multi_option_policy(last);
  app.add_option("--upper", out.upper_dir,
                 "discard mode: keep the changes here (default: a private directory in the store)")
      ->multi_option_policy(last);
  app.add_flag("--keep-upper", out.keep_upper,
               "discard mode: leave the changes in the upper directory at unmount");
  // Defaults shown in --help come from MountConfig itself, the one place they are set.
  const MountConfig defaults;
  app.add_option("--threads", out.threads,
                 fmt::format("maximum FUSE worker threads (default {})", defaults.threads))
      ->multi_option_policy(last)
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--busy-poll", out.busy_poll_us,
                 fmt::format("microseconds a worker polls for the next request before it "
                             "sleeps (default {}; 0: never)",
                             defaults.busy_poll_us))
      ->multi_option_policy(last)
      ->check(CLI::Range(0u, 10000u));
  app.add_option("--prefetch-threads", out.prefetch_threads,
                 fmt::format("threads that read directories and small files ahead of the "
                             "reader (default {}; 0: none)",
                             defaults.prefetch_threads))
      ->multi_option_policy(last)
      ->check(CLI::Range(0u, 64u));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->multi_option_policy(last);
  auto timeout = [&](const char* flag, double& value, const char* what, std::string normal) {
    return app
        .add_option(flag, value, fmt::format("seconds the kernel may cache {} ({})", what, normal))
        ->multi_option_policy(last)
        ->check(CLI::NonNegativeNumber);
  };
  const std::string watched = fmt::format("default {:g} when the mount watches, 10 otherwise",
                                          MountConfig::kWatchedTimeout);
  CLI::Option* entry_timeout = timeout("--entry-timeout", out.entry_timeout, "names", watched);
  CLI::Option* attr_timeout = timeout("--attr-timeout", out.attr_timeout, "attributes", watched);
  timeout("--negative-timeout", out.negative_timeout, "a name's absence", "default 0");
  bool watch_on = false, watch_off = false;
  CLI::Option* watch_on_opt = app.add_flag("--watch-backing", watch_on,
               "watch the backing directories (fanotify) and tell the kernel at once what other "
               "processes change there, so that the timeouts can default to an hour; refuse to "
               "mount if the daemon may not (default: watch whenever it may, which needs root)");
  CLI::Option* watch_off_opt = app.add_flag("--no-watch-backing", watch_off, "do not watch them");
  app.add_option("--source", source, "same as a SOURCE argument (mount(8) style)")
      ->multi_option_policy(last);
  app.add_option("--pid-file", pid_file, "write the daemon's pid here once mounted")
      ->multi_option_policy(last);
  app.add_option("--max-open-files", out.max_open_files,
                 "descriptors the daemon keeps open (default: 70% of its limit)")
      ->multi_option_policy(last)
      ->check(CLI::Range(16u, 1u << 24));
  std::string dedup;
  app.add_option("--dedup", dedup, "on (default) or off: share identical files through the store")
      ->multi_option_policy(last);
  app.add_option("--dedup-delay", out.dedup_delay,
                 fmt::format("seconds a file must go unchanged before it is deduplicated "
                             "(default {:g})",
                             defaults.dedup_delay))
      ->multi_option_policy(last)
      ->check(CLI::Range(0.0, 86400.0));
  std::string kernel_passthrough;
  app.add_option("--kernel-passthrough", kernel_passthrough,
                 "on (default) or off: the kernel writes files the build creates straight "
                 "to their backing files")
      ->multi_option_policy(last);
  std::string io_uring;
  app.add_option("--io-uring", io_uring,
                 "auto (default), on or off: take requests over io_uring, one queue per CPU, "
                 "when the kernel offers it (on: also switch the fuse module's enable_uring on)")
      ->multi_option_policy(last);
  bool writeback = false, no_writeback = false;
  app.add_flag("--writeback-cache", writeback,
               "let the kernel's page cache gather writes (default: write through)");
  app.add_flag("--no-writeback-cache", no_writeback, "write through (the default)");
  app.add_flag("-f,--foreground", out.foreground, "stay in the foreground");
  app.add_flag("-d,--debug", out.debug, "log every request (implies -f)");
  app.add_option("[SOURCE] MOUNTPOINT", positionals,
                 "mount(8) style: SOURCE is the cache directory")
      ->expected(1, 2);
  app.footer(
      "Also: -o opt[,opt...] with FUSE mount options and any of the above as key=value.\n"
      "Environment: CACHEFS_CACHE_DIRECTORY, CACHEFS_DEFINE_CACHE_DIRECTORIES,\n"
      "CACHEFS_RESOLUTION_POLICY. See cachefs(8).");

  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return false;
  } catch (const CLI::CallForVersion&) {
    std::cout << app.version() << "\n";
    return false;
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    if (msg.find("[SOURCE] MOUNTPOINT") != std::string::npos && positionals.empty()) {
      msg = "missing MOUNTPOINT (usage: cachefs [OPTIONS] [SOURCE] MOUNTPOINT)";
    }
    throw UsageError(msg);
  }
  if (positionals.empty())
    throw UsageError("missing MOUNTPOINT (usage: cachefs [OPTIONS] [SOURCE] MOUNTPOINT)");
  out.mountpoint = positionals.back();
  if (positionals.size() == 2) source = positionals.front();
  if (out.debug) out.foreground = true;
  out.entry_timeout_given = entry_timeout->count() != 0;
  out.attr_timeout_given = attr_timeout->count() != 0;
  // A bare flag's result is "true"; anything else was given as --flag=VALUE.
  for (const CLI::Option* o : {watch_on_opt, watch_off_opt}) {
    for (const std::string& r : o->results()) {
      if (r != "true") throw UsageError::make("{}: takes no value", o->get_name());
    }
  }
  // The last of the pair wins, in the parser's own order (-o ones come first:
  // a flag beats them).
  for (const CLI::Option* o : app.parse_order()) {
    if (o == watch_on_opt) out.watch_backing = WatchBacking::kOn;
    if (o == watch_off_opt) out.watch_backing = WatchBacking::kOff;
  }
  if (writeback && no_writeback)
    throw UsageError("--writeback-cache and --no-writeback-cache contradict each other");
  out.writeback_cache = writeback;
  if (!log_level.empty())
    out.log_level = parse_log_level(log_level);
  else if (out.debug)
    out.log_level = spdlog::level::debug;
  out.pid_file = pid_file;

  // mount(8) passes the fstab source; "none" or a fs name means "no source".
  if (!source.empty() && source.find('/') != std::string::npos) {
    if (!cache_dir.empty() && cache_dir != source) {
      throw UsageError::make("SOURCE '{}' and --cache-directory '{}' disagree", source, cache_dir);
    }
    cache_dir = source;
  }

  RouteSettings merged = merge_route_settings({cache_dir, define, config, policy, store}, getenv);
  out.routes = std::move(merged.routes);
  out.policy = merged.policy;
  const ConfigFileSettings& file = merged.file;
  const std::string wm = !write_mode.empty() ? write_mode : file.write_mode;
  if (wm.empty()) {
    out.write_mode = read_only_opt ? WriteMode::kReadonly : WriteMode::kPassthrough;
  } else if (wm == "passthrough") {
    out.write_mode = WriteMode::kPassthrough;
  } else if (wm == "readonly") {
    out.write_mode = WriteMode::kReadonly;
  } else if (wm == "discard") {
    out.write_mode = read_only_opt ? WriteMode::kReadonly : WriteMode::kDiscard;
  } else {
    throw UsageError::make("--write-mode: unknown mode '{}' (use passthrough, discard or readonly)",
                           wm);
  }
  if (out.write_mode != WriteMode::kDiscard && (!out.upper_dir.empty() || out.keep_upper)) {
    throw UsageError::make("{}: only for --write-mode discard",
                           !out.upper_dir.empty() ? "--upper" : "--keep-upper");
  }
  out.store_dir = merged.store_dir;
  if (dedup == "off") {
    out.dedup = false;
  } else if (!dedup.empty() && dedup != "on") {
    throw UsageError::make("--dedup: '{}' is neither on nor off", dedup);
  }
  if (kernel_passthrough == "off") {
    out.kernel_passthrough = false;
  } else if (!kernel_passthrough.empty() && kernel_passthrough != "on") {
    throw UsageError::make("--kernel-passthrough: '{}' is neither on nor off", kernel_passthrough);
  }
  if (io_uring == "on") {
    out.io_uring = IoUring::kOn;
  } else if (io_uring == "off") {
    out.io_uring = IoUring::kOff;
  } else if (!io_uring.empty() && io_uring != "auto") {
    throw UsageError::make("--io-uring: '{}' is not auto, on or off", io_uring);
  }

  // Surface regex and default-directory errors now, before any directory is touched.
  RouteTable check(out.routes, out.policy);
  (void)check;
  return true;
}

void MountConfig::follow_watch(bool watching) {
  if (!watching) return;  // the defaults stand
  if (!entry_timeout_given) entry_timeout = kWatchedTimeout;
  if (!attr_timeout_given) attr_timeout = kWatchedTimeout;
  // Absences stay uncached unless asked for: the watch tells the kernel of a
  // new name within moments, not before the creator's call returns, and a
  // name made through one mount must be found through another right after.
}

void validate_paths(MountConfig& cfg) {
  for (size_t i = 0; i < cfg.routes.size(); ++i) {
    cfg.routes[i].directory = canonical_dir(
        cfg.routes[i].directory,
        cfg.routes[i].regex.empty() ? std::string_view("cache directory") : "route directory");
  }
  cfg.mountpoint = canonical_dir(cfg.mountpoint, "mountpoint");
  RouteTable table(cfg.routes, cfg.policy);
  const std::string& default_dir = table.branch_dir(table.default_branch());

  for (size_t b = 0; b < table.branch_count(); ++b) {
    const std::string& d = table.branch_dir(static_cast<BranchIndex>(b));
    if (inside(cfg.mountpoint, d)) {
      throw UsageError::make(
          "mountpoint '{}' lies inside cache directory '{}': the mount would see itself",
          cfg.mountpoint, d);
    }
    if (inside(d, cfg.mountpoint)) {
      throw UsageError::make("cache directory '{}' lies inside mountpoint '{}'", d, cfg.mountpoint);
    }
  }
  if (!cfg.upper_dir.empty()) {
    // The upper layer holds the build's changes: it may not be part of what it
    // changes (a backing tree, the mount) nor hold them.
    const std::string up = std::filesystem::absolute(cfg.upper_dir).lexically_normal();
    for (size_t b = 0; b < table.branch_count(); ++b) {
      const std::string& d = table.branch_dir(static_cast<BranchIndex>(b));
      if (inside(up, d) || inside(d, up)) {
        throw UsageError::make("--upper '{}' and cache directory '{}' overlap", cfg.upper_dir, d);
      }
    }
    if (inside(up, cfg.mountpoint) || inside(cfg.mountpoint, up)) {
      throw UsageError::make("--upper '{}' and mountpoint '{}' overlap", cfg.upper_dir,
                             cfg.mountpoint);
    }
    if (::mkdir(up.c_str(), 0700) != 0 && errno != EEXIST) {
      throw UsageError::make("--upper '{}': {}", cfg.upper_dir, std::strerror(errno));
    }
    cfg.upper_dir = canonical_dir(up, "--upper");
    for (size_t b = 0; b < table.branch_count(); ++b) {
      const std::string& d = table.branch_dir(static_cast<BranchIndex>(b));
      if (inside(cfg.upper_dir, d) || inside(d, cfg.upper_dir)) {
        throw UsageError::make("--upper '{}' and cache directory '{}' overlap", cfg.upper_dir, d);
      }
    }
    std::error_code ec;
    if (!std::filesystem::is_empty(cfg.upper_dir, ec)) {
      throw UsageError::make("--upper '{}' is not empty (a discard mount starts from an empty one)",
                             cfg.upper_dir);
    }
  }
  // Checked on the lexical path first, so a refused store is never created.
  if (cfg.store_dir.empty()) cfg.store_dir = default_dir + "/.cachefs";
  const std::string lexical = std::filesystem::absolute(cfg.store_dir).lexically_normal();
  if (inside(lexical, cfg.mountpoint) || inside(cfg.mountpoint, lexical)) {
    throw UsageError::make("--store '{}' and mountpoint '{}' overlap", cfg.store_dir,
                           cfg.mountpoint);
  }
  if (::mkdir(cfg.store_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    throw UsageError::make("--store '{}': {}", cfg.store_dir, std::strerror(errno));
  }
  cfg.store_dir = canonical_dir(cfg.store_dir, "--store");
}

}  // namespace cachefs

// Session setup: the performance policy (init), the operations table, mounting,
// daemonizing and the event loop. Every speed lever the kernel offers with
// libfuse 3.14 is chosen in init() below.
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "common/error.h"
#include "common/log.h"
#include "fs/backing_watch.h"
#include "fs/filesystem.h"
#include "fs/ops.h"
#include "fs/prefetch.h"
#include "fs/request_loop.h"
#include "fs/uring_loop.h"

namespace cachefs {
namespace ops {

void init(void* userdata, fuse_conn_info* conn) {
  auto& fs = *static_cast<Filesystem*>(userdata);
  auto want = [conn](unsigned cap, bool on) {
    if (on && (conn->capable & cap)) conn->want |= cap;
    if (!on) conn->want &= ~cap;
  };
  // Reads: spliced from the backing file straight into the kernel's pipe buffer.
  want(FUSE_CAP_SPLICE_WRITE, true);
  want(FUSE_CAP_SPLICE_MOVE, true);
  // Writes arrive as buffers: for a cache's many small files copying is cheaper
  // than a pipe round trip.
  want(FUSE_CAP_SPLICE_READ, false);
  // Small writes are gathered by the kernel's page cache (tar, compilers).
  want(FUSE_CAP_WRITEBACK_CACHE, fs.config().writeback_cache && !fs.read_only());
  want(FUSE_CAP_PARALLEL_DIROPS, true);
  want(FUSE_CAP_CACHE_SYMLINKS, true);
  want(FUSE_CAP_AUTO_INVAL_DATA, true);  // page cache dropped when mtime/size change
  want(FUSE_CAP_READDIRPLUS, true);
  want(FUSE_CAP_READDIRPLUS_AUTO, true);
  // Truncation must come as SETATTR: with no_open we never see O_TRUNC.
  want(FUSE_CAP_ATOMIC_O_TRUNC, false);
  // The daemon writes as root, which keeps set-id bits: without the kill-priv v2
  // flag (kernel_io.h adds it to the reply) the kernel clears them itself.
  want(FUSE_CAP_HANDLE_KILLPRIV, false);
  fs.writeback = (conn->want & FUSE_CAP_WRITEBACK_CACHE) != 0;
  fs.no_open = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
  fs.no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
  // Created files are written by the kernel itself (ops::create); it refuses
  // passthrough beside the write-back cache.
  fs.kernel_io().want_passthrough(fs.config().kernel_passthrough && !fs.writeback &&
                                  !fs.read_only());
  // Requests over io_uring, one queue per CPU, when the kernel offers it; the
  // threads are shared out between the queues (8 each on 2 CPUs by default, so
  // a slow request leaves its CPU served).
  const unsigned threads = fs.config().threads;
  fs.kernel_io().want_uring(fs.config().io_uring != IoUring::kOff,
                            std::max(1u, threads / std::max(1u, UringLoop::queue_count())),
                            &fs.counters.uring_served);
  conn->time_gran = 1;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
}

}  // namespace ops

const fuse_lowlevel_ops& Filesystem::operations() {
  static const fuse_lowlevel_ops table = [] {
    fuse_lowlevel_ops o{};
    o.init = ops::init;
    o.lookup = ops::lookup;
    o.forget = ops::forget;
    o.forget_multi = ops::forget_multi;
    o.getattr = ops::getattr;
    o.setattr = ops::setattr;
    o.readlink = ops::readlink;
    o.statfs = ops::statfs;
    o.opendir = ops::opendir;
    o.readdir = ops::readdir;
    o.readdirplus = ops::readdirplus;
    o.releasedir = ops::releasedir;
    o.fsyncdir = ops::fsyncdir;
    o.mkdir = ops::mkdir;
    o.rmdir = ops::rmdir;
    o.open = ops::open;
    o.create = ops::create;
    o.read = ops::read;
    o.write_buf = ops::write_buf;
    o.flush = ops::flush;
    o.release = ops::release;
    o.fsync = ops::fsync;
    o.fallocate = ops::fallocate;
    o.lseek = ops::lseek;
    o.copy_file_range = ops::copy_file_range;
    o.setxattr = ops::setxattr;
    o.getxattr = ops::getxattr;
    o.listxattr = ops::listxattr;
    o.removexattr = ops::removexattr;
    o.mknod = ops::mknod;
    o.symlink = ops::symlink;
    o.link = ops::link;
    o.unlink = ops::unlink;
    o.rename = ops::rename;
    return o;
  }();
  return table;
}

namespace {

// Escapes a value for libfuse's -o parser (',' separates options).
std::string escape_opt(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// Raises the soft descriptor limit to the hard one and returns the budget of
// descriptors nodes may keep open (the rest is headroom for requests in flight
// and for the prefetcher's queue and threads: 64 + 3 per thread at most).
int64_t fd_budget(unsigned asked) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  ::getrlimit(RLIMIT_NOFILE, &lim);
  const auto limit = static_cast<int64_t>(lim.rlim_cur);
  if (asked != 0) return std::min<int64_t>(asked, limit - 64 - 64 - 3 * 64);
  return std::max<int64_t>(16, limit * 7 / 10);
}

constexpr const char* kUringParam = "/sys/module/fuse/parameters/enable_uring";

bool enable_kernel_uring() {
  std::string v;
  std::ifstream(kUringParam) >> v;
  if (v == "Y" || v == "1") return true;
  std::ofstream f(kUringParam);
  f << "1";
  f.flush();
  if (!f) {
    spdlog::error(
        "--io-uring on: cannot switch on {} ({}): needs root and a kernel built with "
        "CONFIG_FUSE_IO_URING (6.14+)",
        kUringParam, v.empty() ? "not there" : "write refused");
    return false;
  }
  spdlog::info("--io-uring on: switched on {}", kUringParam);
  return true;
}

}  // namespace

int run_mount(const MountConfig& cfg) {
  const int64_t budget = fd_budget(cfg.max_open_files);
  ::umask(0);  // modes reach us already masked by the kernel
  Filesystem fs(cfg);
  fs.fd_budget = budget;

  std::string opts = "default_permissions,nosuid,nodev,subtype=cachefs,fsname=" +
                     escape_opt(fs.routes().branch_dir(fs.routes().default_branch()));
  if (fs.read_only()) opts += ",ro";
  for (const std::string& o : cfg.fuse_options) {
    // ro/rw are the write mode's business. suid and dev are never honoured: a
    // cache written by one build must not hand set-id programs or device nodes to
    // another (mount.fuse3 adds both to every mount it makes).
    if (o == "ro" || o == "rw" || o == "suid" || o == "dev") continue;
    opts += "," + o;
  }
  std::vector<std::string> argv_s = {"cachefs", "-o", opts};
  if (cfg.debug) argv_s.emplace_back("-d");
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  fuse_session* se =
      fuse_session_new(&args, &Filesystem::operations(), sizeof(fuse_lowlevel_ops), &fs);
  fuse_opt_free_args(&args);
  if (se == nullptr) {
    spdlog::error("could not create the FUSE session (options: {})", opts);
    return 1;
  }
  struct SessionGuard {
    fuse_session* se;
    KernelIo& io;
    bool mounted = false;
    bool signals = false;
    ~SessionGuard() {
      if (mounted) fuse_session_unmount(se);
      // The ring threads hand requests to the session: gone before it is.
      io.stop_uring();
      if (signals) fuse_remove_signal_handlers(se);
      fuse_session_destroy(se);
    }
  } guard{se, fs.kernel_io()};
  if (fuse_set_signal_handlers(se) != 0) return 1;
  guard.signals = true;
  // Before mounting, so that a refusal leaves nothing mounted; after the
  // session, so that its thread is gone before the session is.
  std::unique_ptr<BackingWatch> watch;
  if (cfg.watch_backing != WatchBacking::kOff) {
    try {
      watch = std::make_unique<BackingWatch>(fs);
    } catch (const UsageError& e) {
      if (cfg.watch_backing == WatchBacking::kOn) throw;
      // Auto: the mount works without; what the watch would have kept right in
      // an hour-long cache, the default timeouts keep right within seconds.
      spdlog::info("not watching the backing directories ({})", e.what());
    }
  }
  fs.set_watch(watch.get());
  // The kernel offers io_uring in INIT only while the fuse module's enable_uring
  // is on, and reads it when the mount is made.
  if (cfg.io_uring == IoUring::kOn && !enable_kernel_uring()) return 1;
  if (fuse_session_mount(se, cfg.mountpoint.c_str()) != 0) {
    spdlog::error("could not mount on '{}' (is /dev/fuse usable? is something mounted there?)",
                  cfg.mountpoint);
    return 1;
  }
  // Before the first request is read: INIT is where the kill-priv flag is added.
  const bool own_io = fs.kernel_io().install(se);
  if (!own_io) spdlog::warn("libfuse refused custom I/O: write() pays a GETXATTR");
  guard.mounted = true;
  spdlog::info("mounted {} on {}: {} branch(es), {} resolution, {} mode, store {}",
               fs.routes().branch_dir(fs.routes().default_branch()), cfg.mountpoint,
               fs.branch_count(), to_string(cfg.policy), to_string(cfg.write_mode), cfg.store_dir);
  const MountConfig& settled = fs.config();
  spdlog::info("{}: names {:g} s, attributes {:g} s, absent names {:g} s",
               watch ? "watching the backing directories for changes made behind the mount's "
                       "back; the kernel may cache"
                     : "changes made behind the mount's back show once the kernel's caches run out",
               settled.entry_timeout, settled.attr_timeout, settled.negative_timeout);
  if (!cfg.foreground) {
    if (fuse_daemonize(0) != 0) return 1;
    setup_logging("cachefs", cfg.log_level, true);
  }
  if (!cfg.pid_file.empty()) {
    std::ofstream(cfg.pid_file) << ::getpid() << "\n";
  }
  fs.start_dedup();  // after fuse_daemonize: threads do not survive its fork
  fs.prefetcher().start();
  if (watch) watch->start(se);

  const unsigned threads = cfg.threads;
  int rc;
  if (own_io) {
    RequestLoop loop(se, threads, cfg.busy_poll_us, fs.counters.listener);
    fs.kernel_io().use_loop(&loop);
    rc = loop.run();
    fs.kernel_io().use_loop(nullptr);
  } else {
    fuse_loop_config* loop = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(loop, 1);
    fuse_loop_cfg_set_max_threads(loop, threads);
    fuse_loop_cfg_set_idle_threads(loop, threads);
    rc = fuse_session_loop_mt(se, loop);
    fuse_loop_cfg_destroy(loop);
  }
  spdlog::info("unmounting {}", cfg.mountpoint);
  if (watch) watch->stop();
  fs.prefetcher().stop();
  fuse_session_unmount(se);
  guard.mounted = false;
  fs.kernel_io().stop_uring();
  // The mount is gone; files still waiting for dedup are done now (the backing
  // trees are plain directories, nothing needs the kernel).
  fs.stop_dedup();
  spdlog::info("stats: {}", fs.stats_json());
  fs.finish_discard();
  if (!cfg.pid_file.empty()) ::unlink(cfg.pid_file.c_str());
  return rc < 0 ? 1 : 0;
}

}  // namespace cachefs

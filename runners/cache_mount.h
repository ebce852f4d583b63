// The cachefs mount a build uses: started for the build (a child daemon on a
// private mountpoint, routes and store from launch's flags) and torn down
// after it, or an existing host-wide mount (--cache-mount) that is only used.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace cachefs::runners {

struct CacheMountOptions {
  std::string cachefs;                 // the cachefs binary
  std::vector<std::string> args;       // routes, store, write mode... (cachefs flags)
  std::string existing;                // --cache-mount: use this mount, start nothing
  std::string work_dir;                // where the private mountpoint and log go
};

class CacheMount {
 public:
  // Starts (or checks) the mount; throws UsageError with the daemon's own
  // message when it refuses to start.
  explicit CacheMount(const CacheMountOptions& o);
  ~CacheMount();  // stop()
  CacheMount(const CacheMount&) = delete;
  CacheMount& operator=(const CacheMount&) = delete;

  const std::string& path() const { return path_; }
  // The mount's live counters (JSON), empty if unavailable.
  std::string stats() const;
  // Unmounts and reaps the daemon we started (nothing for --cache-mount); the
  // daemon's final log lines, for the build's report. Idempotent.
  std::string stop();

 private:
  std::string path_;
  std::string log_;
  pid_t pid_ = -1;
  bool owned_ = false;
};

// True while /proc/self/mountinfo shows a fuse.cachefs mount at `path`.
bool is_cachefs_mount(const std::string& path);

// The cachefs binary next to `self` (an installed or build-tree launch), else
// $CACHEFS_BIN, else PATH; empty if none.
std::string find_cachefs(const std::string& self);

}  // namespace cachefs::runners

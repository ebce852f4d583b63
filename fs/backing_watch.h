// The backing watch (on whenever the daemon may, i.e. as root; --watch-backing
// makes it a must, --no-watch-backing turns it off): the daemon watches the
// backing directories the mount has shown (fanotify, a mark on each, with
// their entries) and tells the kernel at once when a process other than
// itself changes something there: another mount over the same directories,
// cachectl, a user editing the cache by hand. The kernel may then keep names
// and attributes for an hour rather than ten seconds: a warm build
// sends no request for the files it has seen, and still sees a change made
// behind the mount's back within milliseconds.
//
// A mark pins its directory's inode in the kernel's cache. So each is counted
// by the nodes showing its directory and removed (by file handle, on the
// watch's thread) once the kernel has forgotten the last of them: the marks
// follow the kernel's own cache of the mount.
//
// Each event names its directory by file handle, and the process that made the
// change. The daemon's own changes (the kernel already knows them) are dropped
// by pid; a directory handle is turned into a path under a branch once (cached
// until a directory moves), and that path into the mount's nodes by name
// (NodeTable::find_for_watch). Then:
//  * an entry made, removed or renamed: the name is invalidated in its
//    directory (a negative entry too), and the directory's attributes and
//    cached listing;
//  * a file's data or attributes changed: that node's attributes and pages.
// Nothing here opens or reads the backing trees; a handle is opened O_PATH
// only to learn where the directory is, or to remove its mark.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <atomic>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/unique_fd.h"
#include "fs/route_table.h"

struct fanotify_event_metadata;

namespace cachefs {

class Filesystem;
struct BranchDir;

class BackingWatch {
 public:
  // Marks the root of every routed branch (discard mode: the lower layer),
  // for as long as the mount lives. Throws UsageError naming --watch-backing
  // if the kernel refuses (it needs CAP_SYS_ADMIN and a filesystem whose files
  // fanotify can name).
  explicit BackingWatch(Filesystem& fs);
  // Watches directory `dir_fd` (O_PATH will do; `st` its stat) of routed
  // branch `b` for node member `who`: called whenever the mount opens one. A
  // directory several nodes show (one renamed behind the mount's back) has one
  // mark; a node showing another directory than before gives up the old one.
  void watch(const BranchDir& who, BranchIndex b, int dir_fd, const struct stat& st);
  // The kernel has forgotten `who`'s node (NodeTable::on_dir_forgotten, table
  // locked): once no node shows its directory, the watch thread removes the
  // mark, which held the directory's inode in the kernel's cache. So marks
  // follow the kernel's own cache of the mount, and memory pressure that
  // shrinks it frees them too.
  void unwatch(const BranchDir& who);
  ~BackingWatch();
  BackingWatch(const BackingWatch&) = delete;
  BackingWatch& operator=(const BackingWatch&) = delete;

  // Starts the thread that reads the events and sends the kernel the
  // invalidations through `se` (after fuse_daemonize: threads do not survive it).
  void start(fuse_session* se);
  // Stops and joins it; events still queued are dropped.
  void stop();

 private:
  int add_mark(int dir_fd);  // 0 or an errno
  void run();
  struct Inode {
    dev_t dev;
    ino_t ino;
    bool operator==(const Inode&) const = default;
  };
  struct InodeHash {
    size_t operator()(const Inode& i) const { return std::hash<uint64_t>()(i.ino ^ (i.dev << 40)); }
  };
  // One fanotify mark, on one backing directory.
  struct Mark {
    uint32_t nodes = 0;  // node members showing it; 0: waiting to be removed
    BranchIndex branch = 0;
    std::vector<unsigned char> handle;  // a struct file_handle, to remove it by (empty: cannot)
  };
  void release_locked(const Inode& i);
  // Removes the marks no node shows any more (the watch thread).
  void drop_unwatched();
  // One event: `m`, a copy of its metadata; `event`, where it starts in the buffer.
  void handle(const fanotify_event_metadata& m, const char* event, pid_t self);
  // Where the directory with this handle lies, relative to each branch root
  // it is under (none: outside every branch, or gone).
  // `handle` points at a struct file_handle of `handle_bytes` (unaligned).
  const std::vector<std::string>& where(const char* fsid, const char* handle,
                                        uint32_t handle_bytes);
  void invalidate(std::string_view rel, std::string_view name, bool entry);

  Filesystem& fs_;
  UniqueFd fan_;
  UniqueFd wake_;                   // eventfd: stop()
  std::vector<std::string> roots_;  // branch roots, as /proc/self/fd shows them
  // One descriptor per watched filesystem, to open handles against, by fsid.
  std::vector<std::pair<std::string, UniqueFd>> mounts_;
  // Directory handle (fsid + handle bytes) → relative paths; cleared whenever a
  // directory moves (which changes the paths below it).
  std::unordered_map<std::string, std::vector<std::string>> paths_;
  std::atomic<bool> warned_{false};
  std::vector<dev_t> root_devs_;   // per branch: a directory elsewhere cannot be found by handle
  std::vector<int> branch_mount_;  // per branch: its descriptor in mounts_
  std::mutex marks_mu_;
  std::unordered_map<Inode, Mark, InodeHash> marks_;
  std::unordered_map<const BranchDir*, Inode> shown_;  // which directory each member marked
  std::vector<Inode> unwatched_;                       // marks whose count fell to 0
  std::atomic<bool> stopping_{false};
  fuse_session* se_ = nullptr;
  std::thread thread_;
};

}  // namespace cachefs

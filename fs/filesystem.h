// The mounted filesystem: routes, branches, nodes, and the operations the kernel
// sends. Each group of operations lives in its own op_*.cc file; this header is
// what they share. Every access to a backing tree goes through a directory fd held
// by a node and a single, validated name component: no path string is ever walked,
// no symlink found in a backing tree is ever followed.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <atomic>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "common/unique_fd.h"
#include "fs/kernel_io.h"
#include "fs/mount_config.h"
#include "fs/node_table.h"
#include "fs/request_loop.h"
#include "fs/route_table.h"
#include "store/object_store.h"

namespace cachefs {

class BackingWatch;
class Deduper;
class Prefetcher;
struct UpperLayer;

// What a mount has done since it started (cachectl stats --mount).
struct Counters {
  std::atomic<uint64_t> files_read{0};     // files read through the mount (each once)
  std::atomic<uint64_t> files_written{0};  // files created or changed (each once)
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> bytes_written{0};
  std::atomic<uint64_t> kernel_written{0};  // files created with a passthrough handle (ops::create)
  std::atomic<uint64_t> dedup_linked{0};      // files that now share an existing object
  std::atomic<uint64_t> dedup_adopted{0};     // files that became a new object
  std::atomic<uint64_t> dedup_bytes_saved{0};  // bytes of files linked to an existing object
  std::atomic<uint64_t> dedup_skipped{0};     // files dedup leaves alone (hard links, xattrs, ...)
  std::atomic<uint64_t> dedup_collisions{0};  // same hash, other bytes: kept apart
  std::atomic<uint64_t> dedup_retries{0};     // changed while hashed: tried again later
  std::atomic<uint64_t> dedup_busy{0};        // written through another descriptor: later
  std::atomic<uint64_t> cow_breaks{0};        // shared files given a private copy on change
  std::atomic<uint64_t> cow_bytes{0};
  ListenerCounters listener;                  // how the request loop's listener fared
  std::atomic<uint64_t> uring_served{0};      // requests served over io_uring (uring_loop.h)
  // --watch-backing (backing_watch.h): changes others made in the backing
  // trees' filesystems, and what the kernel was told to forget because of them.
  std::atomic<uint64_t> watch_events{0};
  std::atomic<uint64_t> watch_invalidations{0};
  std::atomic<uint64_t> watch_unmarked{0};  // directories the kernel would not let us watch
  std::atomic<uint64_t> watch_marks{0};     // directories watched now (not a count of events)
};

// Write access to a non-directory (Filesystem::begin_write): its backing is
// private (never a shared object) and stays so while this is held — also against
// other processes deduplicating the same file (a regular file's data descriptor
// holds LOCK_SH; see begin_write).
struct WriteAccess {
  std::shared_lock<std::shared_mutex> lock;  // released last
  std::shared_ptr<FileBacking> backing;
  FdLease fd;  // read-write descriptor, when asked for
};

// Shared hold of the stripes of one or two directories (Filesystem::dir_change),
// for the one call that changes their entries or times.
class DirChange {
 public:
  DirChange(std::shared_mutex& a, std::shared_mutex& b) {
    // Always the same order, and a stripe only once.
    std::shared_mutex* first = &a < &b ? &a : &b;
    std::shared_mutex* second = &a < &b ? &b : &a;
    first_ = std::shared_lock(*first);
    if (second != first) second_ = std::shared_lock(*second);
  }

 private:
  std::shared_lock<std::shared_mutex> first_, second_;
};

class Filesystem {
 public:
  // Opens every backing directory and the store. Throws UsageError.
  explicit Filesystem(const MountConfig& cfg);
  ~Filesystem();

  const MountConfig& config() const { return cfg_; }
  const RouteTable& routes() const { return routes_; }
  NodeTable& nodes() { return nodes_; }
  bool read_only() const { return cfg_.write_mode == WriteMode::kReadonly; }
  bool discard() const { return cfg_.write_mode == WriteMode::kDiscard; }
  // The routed backing directories (in discard mode: the lower layer).
  size_t branch_count() const { return routes_.branch_count(); }
  // Directory slots per node: the routed branches, then discard mode's upper.
  size_t slot_count() const { return nodes_.branch_count(); }
  // Discard mode's upper layer: the slot after the routed branches.
  BranchIndex upper() const { return static_cast<BranchIndex>(routes_.branch_count()); }
  bool is_upper(BranchIndex b) const { return discard() && b == upper(); }
  // The branch whose attributes and xattrs a directory shows.
  BranchIndex shown_branch(Node* dir) const {
    if (discard() && dir->dirs[upper()].known.load(std::memory_order_acquire)) return upper();
    return dir->primary.load(std::memory_order_relaxed);
  }

  // The fuse_lowlevel_ops table; userdata is the Filesystem.
  static const fuse_lowlevel_ops& operations();

  // ---- shared helpers for the op_*.cc files ----

  // ---- descriptors: each use holds a lease; idle ones may be closed and are
  // reopened here on demand (see fd_slot.h) ----

  // `dir` in branch `b` (O_PATH). With `create`, makes the missing directory chain
  // in that branch (modes and owners copied from the union directory). On failure
  // the lease is empty and `err` says why (ENOENT: the branch has no such directory).
  FdLease dir_fd(Node* dir, BranchIndex b, bool create, int& err);
  FdLease dir_fd(Node* dir, BranchIndex b) {
    int err;
    return dir_fd(dir, b, false, err);
  }
  // A non-directory's backing inode (O_PATH), or its data (O_RDWR, or O_RDONLY where
  // the inode refuses writing and `write` is false).
  FdLease path_fd(Node* n, FileBacking& f, int& err);
  FdLease io_fd(Node* n, FileBacking& f, bool write, int& err);
  // Keeps the descriptors of the node at (parent, name) open for good: the name is
  // about to go away through the mount, and an open file must stay readable.
  void pin_before_removal(Node* parent, std::string_view name);
  // Closes idle descriptors when more than the budget are open.
  void enforce_fd_budget();

  // Looks `name` up in `parent` and fills `e` (counting one lookup). Returns 0 or an
  // errno; ENOENT when nothing is visible there.
  int lookup(Node* parent, std::string_view name, fuse_entry_param& e);

  // What `name` in `parent` is on disk right now, per branch, without making a node.
  struct Probe {
    Resolution res;
    std::vector<NodeTable::Found> found;  // per slot: fd invalid when absent
    // Discard mode: what the lower layer alone holds at the name (shown or not),
    // whether the upper layer has a whiteout there, and whether its directory
    // there is opaque.
    Resolution lower;
    bool whiteout = false;
    bool opaque = false;
  };
  int probe(Node* parent, std::string_view name, Probe& out, bool all_branches);

  // The entry reply for a node just counted a lookup of (the lookup is dropped
  // again if its attributes cannot be read). Returns 0 or an errno.
  int entry_for(Node* n, fuse_entry_param& e);

  // Attributes as the mount shows them.
  int getattr(Node* n, struct stat& st);
  void fill_entry(Node* n, const struct stat& st, fuse_entry_param& e) const;

  // A real (not O_PATH) fd on a directory in branch b, for xattrs and readdir.
  // On failure `err` says why (absent_errno(err): the branch has no such directory).
  UniqueFd open_dir(Node* dir, BranchIndex b, int& err);
  UniqueFd open_dir(Node* dir, BranchIndex b) {
    int err;
    return open_dir(dir, b, err);
  }
  // errno values that mean "this branch has no such entry" rather than a failure.
  static bool absent_errno(int e) { return e == ENOENT || e == ENOTDIR || e == ELOOP; }

  // Where a new entry named `name` in `parent` goes; checks the name and the mode.
  // On success `branch` and `parent_fd` (created chain) are set.
  // Discard mode: a whiteout in the way is removed first (`over_whiteout` says so;
  // put it back with restore_whiteout if the create fails).
  int prepare_create(Node* parent, std::string_view name, bool is_dir, BranchIndex& branch,
                     FdLease& parent_fd, bool* over_whiteout = nullptr);
  // Gives a just-created entry to the requesting user and makes its node; fills `e`.
  // `fd` is the read-write descriptor creating it gave, if any. Returns 0 or an errno.
  int finish_create(fuse_req_t req, Node* parent, int parent_fd, std::string_view name,
                    BranchIndex branch, UniqueFd fd, fuse_entry_param& e);
  // Gives the entry behind `fd` (stat `st`, updated) to the requesting user.
  void chown_to_caller(fuse_req_t req, int fd, struct stat& st);

  // ---- discard mode (overlay.cc) ----

  // Gives `n` (a lower-layer file; caller holds its I/O stripe exclusively) a
  // copy of itself in the upper layer — its first `keep` bytes, owner, mode, times
  // and xattrs — under its name, and makes that its backing. 0 if already upper.
  int copy_up(Node* n, uint64_t keep);
  // Copies a lower directory up whole: every entry under it lives in the upper
  // layer afterwards, and its upper directory is opaque. What `mv dir` needs.
  int copy_up_tree(Node* dir);
  // Marks the upper directory `name` in `ufd` opaque (lower ones no longer show).
  int set_opaque(int ufd, const char* name);
  static bool is_whiteout(const struct stat& st) {
    return S_ISCHR(st.st_mode) && st.st_rdev == 0;
  }
  // A whiteout at `name` in the upper directory `ufd`: hides the lower entry.
  static int make_whiteout(int ufd, const char* name);
  // Removes a whiteout at `name` (true if there was one).
  static bool take_whiteout(int ufd, const char* name);
  static void restore_whiteout(int ufd, const char* name) { make_whiteout(ufd, name); }
  // What the upper layer holds (files created, changed, deleted; bytes), as JSON.
  Json discard_json();
  // At unmount: reports, and removes the upper layer unless it is to be kept.
  void finish_discard();

  // ---- dedup (dedup.cc) ----

  // Makes `n`'s backing private — a shared object is first replaced, for this path
  // only, by a copy of its first `keep` bytes — and holds it so until `w` goes.
  // With `need_fd`, w.fd is a read-write descriptor on it. Returns 0 or an errno.
  // `no_change`, when given, is asked again under the exclusive lock before a
  // shared object is broken: a change it finds to be none (dedup may have made
  // the file an object since the caller looked) returns kNoChange instead.
  //
  // Other processes (another daemon over the same store, cachectl import) and
  // this daemon's other nodes of the same inode deduplicate files too, so the
  // first change of a burst to a regular file on the store's filesystem takes
  // LOCK_SH on the data descriptor it is made through (store/object_store.h:
  // dedup takes LOCK_EX, never waiting) and then looks whether the inode became
  // an object or was swapped out of its name for an identical object
  // meanwhile; if so, the node takes the object as its backing and breaks the
  // sharing as above. The lock is held until the node goes quiet
  // (end_write_burst, when dedup takes the node up) or its descriptor is closed.
  int begin_write(Node* n, WriteAccess& w, bool need_fd, uint64_t keep = UINT64_MAX,
                  const std::function<bool()>* no_change = nullptr);
  static constexpr int kNoChange = -1;
  // A change was made to `n` through the mount (call while holding its
  // WriteAccess): dedup looks at it again once it has stayed unchanged a while.
  void written(Node* n);
  // `n` went quiet: the LOCK_SH its writes held (begin_write) is let go, so that
  // dedup, this daemon's or another process's, may take the file.
  void end_write_burst(Node* n);
  // One dedup attempt on `n` (ends its write burst first).
  enum class DedupResult {
    kDone,   // shared, stored, or left alone for good
    kRetry,  // changed meanwhile: try again later
    kBusy,   // being written through another descriptor (LOCK_SH held): try much later
  };
  DedupResult dedup_one(Node* n);
  bool dedup_on(BranchIndex b) const { return cfg_.dedup && shares_store_[b]; }
  // Some process may deduplicate files of branch b (see shares_store_).
  bool shares_store(BranchIndex b) const { return shares_store_[b]; }
  // The kernel's passthrough handle on `n` (made by create) was released: what
  // it wrote, unseen, counts as one write of the whole file. Until then dedup
  // found the file busy: the handle's backing file holds the writer's LOCK_SH.
  // (The handle is write-only, so it cannot have been mapped: nothing writes
  // the file unseen after its RELEASE.)
  void kernel_released(Node* n);
  void start_dedup();
  void stop_dedup();  // finishes what is queued, then stops
  Prefetcher& prefetcher() { return *prefetcher_; }
  const store::Store& store() const { return *store_; }
  Counters counters;
  // The live counters and settings as one JSON object.
  std::string stats_json();

  // A change was made inside `dir` through the mount: its listing is out of date.
  static void changed(Node* dir) { dir->change_gen.fetch_add(1, std::memory_order_relaxed); }
  // Dedup swaps a name inside a directory for an object and then puts the
  // directory's times back (store::Store::replace): the store's business, not a
  // change a user made. Whatever this daemon changes in a directory (a name made
  // or removed, its times or mode set) is done holding this, for that one call,
  // and the swap holds the directory's stripe exclusively from its first look
  // at the times to their put-back: neither can undo the other's update (tar
  // setting a directory's mtime while a file in it is being shared did lose it).
  [[nodiscard]] DirChange dir_change(const Node* dir) { return {dir_mutex(dir), dir_mutex(dir)}; }
  [[nodiscard]] DirChange dir_change(const Node* a, const Node* b) {
    return {dir_mutex(a), dir_mutex(b)};
  }
  // `call()`, one system call that changes `dir` (or `dir` and `other`), made
  // under dir_change; returns what it returns, errno as it left it.
  template <typename Call>
  int changing(const Node* dir, Call&& call) {
    const DirChange hold = dir_change(dir);
    return call();
  }
  template <typename Call>
  int changing(const Node* dir, const Node* other, Call&& call) {
    const DirChange hold = dir_change(dir, other);
    return call();
  }

  // The inode number shown for a backing inode in branch b.
  uint64_t shown_ino(BranchIndex b, const struct stat& st) const;
  // The inode number shown for a path of a shared object: its own, stable across
  // lookups and restarts, never a real inode's.
  uint64_t object_path_ino(Node* parent, BranchIndex b, std::string_view name,
                           const struct stat& st) const;
  bool is_store(const struct stat& st) const {
    return st.st_dev == store_->dev() && st.st_ino == store_ino_;
  }
  // A name the mount must not accept: empty, ".", "..", containing '/', too long.
  static bool valid_name(std::string_view name);

  // Set by init: the kernel lets us decline OPEN once and never sends it again.
  bool no_open = false;
  bool no_opendir = false;
  bool writeback = false;  // the kernel's write-back cache is on
  KernelIo& kernel_io() { return kernel_io_; }
  int64_t fd_budget = 0;
  // --watch-backing: set (or not: null) before the mount is made, which
  // settles the timeouts not given; every directory of a routed branch the
  // mount opens is handed to it.
  void set_watch(BackingWatch* w);
  bool watching() const { return watch_ != nullptr; }
  // Directory node `n` shows `dir_fd` (`st`) as its member in branch `b`.
  void watch_dir(Node* n, BranchIndex b, int dir_fd, const struct stat& st);
  // The same for the directories a lookup found and interned into `n`.
  void watch_found(Node* n, std::span<const NodeTable::Found> found);

 private:
  MountConfig cfg_;
  RouteTable routes_;
  std::unique_ptr<UpperLayer> upper_layer_;  // discard mode; before nodes_ (its root fd)
  NodeTable nodes_;
  ino_t store_ino_ = 0;  // the store directory, hidden from the view
  bool single_device_ = true;
  std::vector<uint64_t> branch_dev_index_;
  std::mutex evict_mu_;
  KernelIo kernel_io_;
  // Descriptors still open after the last eviction pass that could not reach its
  // target (0: it did); the next pass waits until fd_budget / 8 more are open.
  std::atomic<int64_t> evict_floor_{0};
  std::unique_ptr<store::Store> store_;
  // Per branch: on the store's filesystem and written through (passthrough), so
  // some process (this daemon with --dedup on, another one, cachectl import) may
  // deduplicate its files: writes there take the write lock (begin_write).
  std::vector<bool> shares_store_;
  std::unique_ptr<Deduper> deduper_;
  BackingWatch* watch_ = nullptr;
  std::unique_ptr<Prefetcher> prefetcher_;
  // Writers hold a node's stripe shared; swapping its backing takes it exclusive.
  static constexpr size_t kIoStripes = 64;
  std::shared_mutex io_mu_[kIoStripes];
  static size_t stripe(const Node* n) { return (reinterpret_cast<uintptr_t>(n) >> 6) % kIoStripes; }
  std::shared_mutex& io_mutex(const Node* n) { return io_mu_[stripe(n)]; }
  // Filesystem::dir_change's stripes.
  std::shared_mutex dir_mu_[kIoStripes];
  std::shared_mutex& dir_mutex(const Node* dir) { return dir_mu_[stripe(dir)]; }
  int break_shared(Node* n, uint64_t keep);
  // begin_write's first look at a burst's descriptor `d` of `f` (non-object,
  // regular): takes LOCK_SH on it and checks the inode. Returns 0 with `object`
  // empty (go on writing; `d` is flocked now), 0 with `object` set (the backing
  // the node must take first: the inode, or what replaced it, is an object), or
  // an errno.
  int start_write_burst(Node* n, FileBacking& f, const FdLease& d,
                        std::shared_ptr<FileBacking>& object);
  // Lets go of the burst locks `f`'s descriptors hold (caller: the node's stripe
  // held exclusively, so no writer of this daemon is mid-change).
  static void release_write_locks(FileBacking& f);
  int probe_lower(Node* parent, std::string_view name, Probe& out, bool all_branches);
  // Discard mode: a new upper directory (made by dir_fd's create) takes the lower
  // one's times and xattrs.
  void copy_dir_meta(Node* dir, int upper_fd);
};

// fuse_req_userdata, typed.
inline Filesystem& fs_of(fuse_req_t req) {
  return *static_cast<Filesystem*>(fuse_req_userdata(req));
}

// Runs the mount until unmounted or signalled; returns the process exit code.
int run_mount(const MountConfig& cfg);

}  // namespace cachefs

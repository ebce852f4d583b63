// Nodes are the daemon's inodes: the fuse_ino_t handed to the kernel is the Node's
// address. This file is the one place where nodes are created, found again, and
// freed; nothing else touches lookup counts.
//
// A node is a name in the mount's namespace, keyed by (parent node, name), and
// holds a reference on its parent, so that its path (which routes it) can always
// be computed and an operation on it can reach its entry in the backing tree.
//  * A directory is a union of same-named directories in every branch: one O_PATH
//    fd per branch, each published once.
//  * A non-directory is one backing inode in one branch (a FileBacking). The
//    backing can be replaced while the node lives — a deduplicated file broken
//    into a private copy on first write, a lower file copied up — and operations
//    hold a shared_ptr to the backing they started with, so a swap never closes a
//    descriptor under a running read.
// Hard links are the exception to one-node-per-name: names whose backing inode
// has several links resolve to one node (found through an inode index), so the
// kernel keeps one page cache for them. Such a node keeps the name it was first
// found by.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/unique_fd.h"
#include "fs/dir_listing.h"
#include "fs/fd_slot.h"
#include "fs/route_table.h"

namespace cachefs {

// A directory's member in one branch.
struct BranchDir {
  FdSlot slot;                     // O_PATH directory fd; reopened by name from the parent's slot
  std::atomic<bool> known{false};  // the branch has this directory (identity below)
  std::atomic<dev_t> dev{0};
  std::atomic<ino_t> ino{0};
  // Discard mode: known not to have this directory, so lookups need not ask
  // again (see Filesystem::dir_fd).
  std::atomic<bool> absent{false};
  // The inode the backing watch has marked for this node (0: none), a hint
  // that spares a lookup the watch's lock; BackingWatch keeps the record.
  std::atomic<ino_t> marked{0};
};

// One backing inode of a non-directory: its identity and descriptors on it, each
// reopenable (path by name from the parent directory, checked against dev/ino;
// data through /proc/self/fd from path).
struct FileBacking {
  FileBacking(BranchIndex b, const struct stat& st, bool is_object = false, bool is_lower = false)
      : branch(b),
        dev(st.st_dev),
        ino(st.st_ino),
        regular(S_ISREG(st.st_mode)),
        object(is_object),
        lower(is_lower) {}

  const BranchIndex branch;
  const dev_t dev;
  const ino_t ino;
  const bool regular;  // a regular file (only those are deduplicated, and locked for writing)
  // A store object shared with other paths: never written; the first change made
  // through this path swaps in a private copy (Filesystem::begin_write).
  const bool object;
  // Discard mode: a file of the read-only lower layer. Never opened for writing;
  // the first change made through the mount copies it up (Filesystem::copy_up).
  const bool lower;
  FdSlot path;  // O_PATH|O_NOFOLLOW
  FdSlot rw;    // O_RDWR
  FdSlot ro;    // O_RDONLY, when the inode refuses O_RDWR
  // rw or ro may hold LOCK_SH for a burst of writes (FdSlot::flocked;
  // Filesystem::begin_write, and store/object_store.h for the protocol). A
  // burst is started (lock taken, inode looked at, flag set) by one writer at a
  // time, under this; a flagged descriptor is unlocked only with the node's I/O
  // stripe held exclusively.
  std::mutex burst_mu;
};

struct Node {
  enum class Kind : uint8_t { kDirectory, kOther };
  explicit Node(Kind k) : kind(k) {}

  const Kind kind;
  bool is_dir() const { return kind == Kind::kDirectory; }

  // ---- guarded by NodeTable::mu_ ----
  uint64_t nlookup = 0;
  uint32_t child_refs = 0;  // nodes naming this one as parent
  bool indexed = false;
  Node* parent = nullptr;
  std::string name;
  std::string cached_path;  // directories: "/a/b/"
  uint64_t cached_gen = 0;

  // ---- non-directories ----
  // Bumped by every change to the file's data or attributes made through the mount;
  // dedup commits only if it has not moved since the file was hashed.
  std::atomic<uint64_t> write_gen{0};
  std::atomic<bool> dedup_queued{false};
  std::atomic<bool> read_counted{false};  // counted in Counters::files_read
  // Passthrough handles the kernel writes this file through (ops::create, until
  // their RELEASE): those writes come as changes made by the writing process,
  // not by the daemon, and the backing watch must not take them for a stranger's.
  std::atomic<uint32_t> kernel_writers{0};
  // The inode number shown, once the backing inode's own cannot be (a path of a
  // shared object; a file that became one): 0 until then.
  std::atomic<uint64_t> fixed_ino{0};
  // The file's own mtime (ns since the epoch) when dedup linked it to an object
  // with another: the kernel (write-back cache) keeps showing and writing back
  // that time, which is not a change. 0: none.
  std::atomic<int64_t> own_mtime_ns{0};
  std::shared_ptr<FileBacking> backing() const {
    lock_file();
    auto b = file_;
    unlock_file();
    return b;
  }
  void set_backing(std::shared_ptr<FileBacking> b) {
    lock_file();
    file_.swap(b);
    unlock_file();
    // the old backing (in b) goes here, outside the lock
  }

  // ---- directories: one slot per branch ----
  std::unique_ptr<BranchDir[]> dirs;
  std::atomic<BranchIndex> primary{0};  // branch whose attributes the directory shows
  // Discard mode: the upper directory hides the lower ones (it replaced a deleted
  // directory, or a renamed one was copied up whole); lower branches are not asked.
  std::atomic<bool> opaque{false};
  // Bumped by every change made through the mount inside this directory; the
  // cached listing is rebuilt when it moves (or a branch directory's mtime does).
  std::atomic<uint64_t> change_gen{0};
  std::mutex listing_mu;
  std::shared_ptr<const DirListing> listing;  // guarded by listing_mu

 private:
  // A spinlock around a plain shared_ptr rather than std::atomic<shared_ptr>:
  // the same cost here, and ThreadSanitizer understands it (GCC 12's atomic
  // shared_ptr hides its lock in a pointer bit, which TSan reports as a race).
  void lock_file() const {
    while (file_lock_.exchange(true, std::memory_order_acquire)) {
    }
  }
  void unlock_file() const { file_lock_.store(false, std::memory_order_release); }
  mutable std::atomic<bool> file_lock_{false};
  std::shared_ptr<FileBacking> file_;
};

class NodeTable {
 public:
  NodeTable(size_t branch_count, std::vector<UniqueFd> root_fds);
  ~NodeTable();
  NodeTable(const NodeTable&) = delete;
  NodeTable& operator=(const NodeTable&) = delete;

  size_t branch_count() const { return branches_; }
  Node* root() { return root_.get(); }
  Node* node(fuse_ino_t ino) {
    return ino == FUSE_ROOT_ID ? root_.get() : reinterpret_cast<Node*>(ino);
  }
  fuse_ino_t ino(const Node* n) const {
    return n == root_.get() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(n);
  }

  // The node for non-directory `name` in `parent`, backed by `backing`; counts one
  // lookup. A node already there for the same backing inode is reused; one for
  // another inode (the name was replaced behind our back) is retired. With
  // `nlink` > 1 the node of another name of the same inode is reused.
  Node* intern_file(Node* parent, std::string_view name, std::shared_ptr<FileBacking> backing,
                    nlink_t nlink);

  // The directory node for `name` in `parent`; counts one lookup. Reused unless a
  // branch directory it holds is no longer the one found. `found` holds the O_PATH
  // fds found per branch (invalid = not there) and their stat; slots the node
  // lacks are filled, the rest closed.
  struct Found {
    bool present = false;  // the branch has a directory of that name
    struct stat st;
    UniqueFd fd;  // optional: an O_PATH descriptor on it, if one is at hand
  };
  Node* intern_dir(Node* parent, std::string_view name, std::span<Found> found,
                   BranchIndex primary);

  // `n` just gained a name through link(): later lookups of any of its names find
  // it; counts one lookup (the kernel's for the new name).
  void add_link(Node* n);

  // Installs a branch directory fd on a directory node; returns a lease on the fd
  // installed (another thread's, if it was first; `fd` is then closed).
  FdLease publish_dir_fd(Node* dir, BranchIndex b, UniqueFd fd, const struct stat& st);

  // The node at (parent, name), counting one lookup (drop it with forget), or null.
  Node* find(Node* parent, std::string_view name);
  // Counts one lookup on a node already held (drop it with forget).
  void ref(Node* n);
  // For the backing watch (backing_watch.h): the inode numbers of directory
  // `rel` ("a/b"; "" for the root) and of `name` in it, found by name without
  // counting a lookup; 0 where there is no node. The numbers are only handed to
  // the kernel, which ignores an invalidation of an inode it has forgotten.
  struct WatchHit {
    fuse_ino_t dir = 0;
    fuse_ino_t child = 0;
    bool child_kernel_written = false;  // the child has a passthrough handle open
  };
  WatchHit find_for_watch(std::string_view rel, std::string_view name);

  // Closes idle, unpinned descriptors, least recently used first, until at most
  // `target` are open.
  void evict_idle(int64_t target);

  void forget(Node* n, uint64_t count);
  // Told of each branch directory of a node the backing watch marked
  // (BranchDir::marked) once the kernel has forgotten the node. Called with the
  // table locked: it must only take note. Set before the mount is made.
  void on_dir_forgotten(std::function<void(const BranchDir&)> f) { dir_forgotten_ = std::move(f); }

  // The parent of a node and its name, with a reference held on the parent so a
  // concurrent rename cannot free it; drop with put_parent.
  Node* get_parent(Node* n, std::string& name);
  void put_parent(Node* parent);

  // An entry was renamed: the node at (parent, name), if any, now lives at
  // (new_parent, new_name); whatever node was there is retired.
  void move(Node* parent, std::string_view name, Node* new_parent, std::string_view new_name);
  // An entry was removed: later lookups must not find its node.
  void drop(Node* parent, std::string_view name);

  // "/a/b/" for a directory ("/" for the root); "/a/b/c" or "/a/b/c/" for a child.
  std::string child_path(Node* dir, std::string_view name, bool as_dir);

 private:
  struct Key {
    const Node* parent;
    std::string name;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<std::string_view>()(k.name) ^ (std::hash<const void*>()(k.parent) * 31);
    }
  };

  std::unique_ptr<Node> new_dir_node();
  Node* insert_locked(Key key, std::unique_ptr<Node> n);
  const std::string& dir_path_locked(Node* dir);
  void retire_locked(std::unordered_map<Key, Node*, KeyHash>::iterator it);
  void release_locked(Node* n);

  const size_t branches_;
  std::mutex mu_;
  std::unique_ptr<Node> root_;
  std::unordered_map<Key, Node*, KeyHash> names_;
  struct InodeKey {
    dev_t dev;
    ino_t ino;
    bool operator==(const InodeKey&) const = default;
  };
  struct InodeKeyHash {
    size_t operator()(const InodeKey& k) const {
      return std::hash<uint64_t>()(k.ino ^ (k.dev << 40));
    }
  };
  std::unordered_map<InodeKey, Node*, InodeKeyHash> links_;  // nodes of multiply-linked inodes
  std::unordered_set<Node*> all_;  // every live node but the root, for teardown
  // Nodes the kernel has forgotten, freed after a grace period: a request the
  // kernel sent before its FORGET may still be running on one (seen: a
  // security.capability GETXATTR racing an unlink's FORGET).
  std::deque<std::pair<std::chrono::steady_clock::time_point, Node*>> graveyard_;
  // Closes a file node's descriptors unless another node shares its backing.
  void retire_file_slots(Node* n);
  void bury_locked(Node* n);
  uint64_t rename_gen_ = 1;  // bumped by every directory rename: invalidates cached paths
  std::function<void(const BranchDir&)> dir_forgotten_;
};

// The parent of a node and the node's name, with a reference held on the parent
// for as long as this object lives (a concurrent rename cannot free it).
class ParentRef {
 public:
  ParentRef(NodeTable& t, Node* n) : t_(t), p_(t.get_parent(n, name_)) {}
  ~ParentRef() {
    if (p_ != nullptr) t_.put_parent(p_);
  }
  ParentRef(const ParentRef&) = delete;
  ParentRef& operator=(const ParentRef&) = delete;
  Node* get() const { return p_; }
  const std::string& name() const { return name_; }

 private:
  NodeTable& t_;
  std::string name_;
  Node* p_;
};

}  // namespace cachefs

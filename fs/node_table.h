// Nodes are the daemon's inodes: the fuse_ino_t handed to the kernel is the Node's
// address. This file is the one place where nodes are created, found again, and
// freed; nothing else touches lookup counts.
//
// Two kinds, two identities:
//  * a non-directory is one backing inode in one branch, keyed by (st_dev, st_ino),
//    so hard links made through the mount are one node, as the kernel expects;
//  * a directory is a name in the mount's namespace, keyed by (parent node, name):
//    it is a union of same-named directories in every branch, and it knows its
//    parent so that its path (which routes its children) can be computed. A child
//    directory node holds a reference on its parent.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/unique_fd.h"
#include "fs/route_table.h"

namespace cachefs {

struct BranchDir {
  std::atomic<int> fd{-1};  // O_PATH directory fd, set once, -1 while unknown
  // Identity of that directory, stored before fd is published (racing publishers
  // store the same values, hence relaxed atomics rather than plain fields).
  std::atomic<dev_t> dev{0};
  std::atomic<ino_t> ino{0};
};

struct Node {
  enum class Kind : uint8_t { kDirectory, kOther };
  explicit Node(Kind k) : kind(k) {}
  ~Node();

  const Kind kind;
  bool is_dir() const { return kind == Kind::kDirectory; }

  // ---- guarded by NodeTable::mu_ ----
  uint64_t nlookup = 0;
  uint32_t child_refs = 0;  // directories: child directory nodes naming this one as parent
  bool indexed = false;
  Node* parent = nullptr;  // directories only
  std::string name;        // directories only
  std::string cached_path;
  uint64_t cached_gen = 0;

  // ---- non-directories; immutable after intern ----
  BranchIndex branch = 0;
  UniqueFd fd;  // O_PATH|O_NOFOLLOW, or the read-write fd `create` opened
  bool fd_writable = false;
  dev_t dev = 0;
  ino_t ino = 0;

  // Lazily opened data descriptors, reopened through /proc/self/fd from `fd`. Each
  // is set once and closed only with the node, so a concurrent read never sees its
  // descriptor number closed and reused.
  std::mutex io_mu;
  std::atomic<int> rw{-1};
  std::atomic<int> ro{-1};

  // ---- directories: one slot per branch ----
  std::unique_ptr<BranchDir[]> dirs;
  std::atomic<BranchIndex> primary{0};  // branch whose attributes the directory shows
};

class NodeTable {
 public:
  NodeTable(size_t branch_count, std::span<UniqueFd> root_fds);
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

  // The node for a backing non-directory, created if new; counts one lookup. Takes
  // `fd` (closed when the inode already has a node).
  Node* intern_file(BranchIndex b, UniqueFd fd, bool fd_writable, const struct stat& st);

  // The directory node for `name` in `parent`, created if new or if the one known
  // is stale (its branch directory is no longer the one found); counts one lookup.
  // `found` holds the O_PATH fds found per branch (invalid = not there) and their
  // stat; slots the node lacks are filled, the rest closed.
  struct Found {
    UniqueFd fd;
    struct stat st;
  };
  Node* intern_dir(Node* parent, std::string_view name, std::span<Found> found,
                   BranchIndex primary);

  // Publishes a branch directory fd on a directory node; returns the fd that won
  // (another thread may have published first; `fd` is then closed).
  int publish_dir_fd(Node* dir, BranchIndex b, UniqueFd fd, const struct stat& st);

  void forget(Node* n, uint64_t count);

  // The parent of a directory node and its name, with a reference held on the
  // parent so a concurrent rename cannot free it; drop with put_parent.
  Node* get_parent(Node* dir, std::string& name);
  void put_parent(Node* parent);

  // A directory was renamed: the node at (parent, name) now lives at
  // (new_parent, new_name); whatever directory node was there is unindexed.
  void move_dir(Node* parent, std::string_view name, Node* new_parent, std::string_view new_name);
  // A directory was removed: later lookups must not find its node.
  void drop_dir(Node* parent, std::string_view name);

  // "/a/b/" for a directory ("/" for the root); "/a/b/c" or "/a/b/c/" for a child.
  std::string child_path(Node* dir, std::string_view name, bool as_dir);

  size_t size();

 private:
  struct DirKey {
    const Node* parent;
    std::string name;
    bool operator==(const DirKey&) const = default;
  };
  struct DirKeyHash {
    size_t operator()(const DirKey& k) const {
      return std::hash<std::string_view>()(k.name) ^ (std::hash<const void*>()(k.parent) * 31);
    }
  };
  struct FileKey {
    dev_t dev;
    ino_t ino;
    bool operator==(const FileKey&) const = default;
  };
  struct FileKeyHash {
    size_t operator()(const FileKey& k) const {
      return std::hash<uint64_t>()(k.ino ^ (k.dev << 40));
    }
  };

  std::unique_ptr<Node> new_dir_node();
  const std::string& dir_path_locked(Node* dir);
  void unindex_locked(Node* n);
  void release_locked(Node* n);

  const size_t branches_;
  std::mutex mu_;
  std::unique_ptr<Node> root_;
  std::unordered_map<FileKey, Node*, FileKeyHash> files_;
  std::unordered_map<DirKey, Node*, DirKeyHash> dirs_;
  std::unordered_set<Node*> all_;  // every live node but the root, for teardown
  uint64_t rename_gen_ = 1;        // bumped by every directory rename: invalidates cached paths
};

}  // namespace cachefs

// The mounted filesystem: routes, branches, nodes, and the operations the kernel
// sends. Each group of operations lives in its own op_*.cc file; this header is
// what they share. Every access to a backing tree goes through a directory fd held
// by a node and a single, validated name component: no path string is ever walked,
// no symlink found in a backing tree is ever followed.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.h"
#include "fs/mount_config.h"
#include "fs/node_table.h"
#include "fs/route_table.h"

namespace cachefs {

class Filesystem {
 public:
  // Opens every backing directory and the store. Throws UsageError.
  explicit Filesystem(const MountConfig& cfg);

  const MountConfig& config() const { return cfg_; }
  const RouteTable& routes() const { return routes_; }
  NodeTable& nodes() { return nodes_; }
  bool read_only() const { return cfg_.write_mode == WriteMode::kReadonly; }
  size_t branch_count() const { return routes_.branch_count(); }

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
    std::vector<NodeTable::Found> found;  // per branch: fd invalid when absent
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
  int prepare_create(Node* parent, std::string_view name, bool is_dir, BranchIndex& branch,
                     FdLease& parent_fd);
  // Gives a just-created entry to the requesting user and makes its node; fills `e`.
  // `fd` is the read-write descriptor creating it gave, if any. Returns 0 or an errno.
  int finish_create(fuse_req_t req, Node* parent, int parent_fd, std::string_view name,
                    BranchIndex branch, UniqueFd fd, fuse_entry_param& e);
  // Gives the entry behind `fd` (stat `st`, updated) to the requesting user.
  void chown_to_caller(fuse_req_t req, int fd, struct stat& st);

  // A change was made inside `dir` through the mount: its listing is out of date.
  static void changed(Node* dir) { dir->change_gen.fetch_add(1, std::memory_order_relaxed); }

  // The inode number shown for a backing inode in branch b.
  uint64_t shown_ino(BranchIndex b, const struct stat& st) const;
  bool is_store(const struct stat& st) const {
    return st.st_dev == store_dev_ && st.st_ino == store_ino_;
  }
  // A name the mount must not accept: empty, ".", "..", containing '/', too long.
  static bool valid_name(std::string_view name);

  // Set by init: the kernel lets us decline OPEN once and never sends it again.
  bool no_open = false;
  bool no_opendir = false;
  int64_t fd_budget = 0;

 private:
  MountConfig cfg_;
  RouteTable routes_;
  NodeTable nodes_;
  UniqueFd store_fd_;
  dev_t store_dev_ = 0;
  ino_t store_ino_ = 0;
  bool single_device_ = true;
  std::vector<uint64_t> branch_dev_index_;
  std::mutex evict_mu_;
};

// fuse_req_userdata, typed.
inline Filesystem& fs_of(fuse_req_t req) {
  return *static_cast<Filesystem*>(fuse_req_userdata(req));
}

// Runs the mount until unmounted or signalled; returns the process exit code.
int run_mount(const MountConfig& cfg);

}  // namespace cachefs

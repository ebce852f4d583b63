// Removing and renaming names in discard mode. The lower layer is never
// touched: a deleted lower entry gets a whiteout in the upper layer, and a
// renamed one is copied up first (a directory whole, see copy_up_tree), so
// `mv dir` works as it does on a plain filesystem rather than answering EXDEV.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <unistd.h>

#include <mutex>

#include "fs/filesystem.h"
#include "fs/ops.h"

namespace cachefs::ops {
namespace {

bool any_lower(const Filesystem& fs, const Filesystem::Probe& p) {
  for (size_t b = 0; b < fs.branch_count(); ++b) {
    if (p.found[b].present) return true;
  }
  return false;
}

// The node at (parent, name), counted once (drop it with forget), or an errno.
int node_at(Filesystem& fs, Node* parent, const char* name, Node*& out) {
  fuse_entry_param e;
  if (int err = fs.lookup(parent, name, e)) return err;
  out = fs.nodes().node(e.ino);
  return 0;
}

// Is the union directory at (parent, name) empty? 0, ENOTEMPTY or an errno.
int check_empty(Filesystem& fs, Node* parent, const char* name) {
  Node* d = nullptr;
  if (int err = node_at(fs, parent, name, d)) return err;
  int err = 0;
  const auto listing = dir_listing(fs, d, err);
  fs.nodes().forget(d, 1);
  if (!listing) return err;
  return listing->entries.size() > 2 ? ENOTEMPTY : 0;
}

// Removes the whiteouts an upper directory holds (all it may hold when the union
// is empty), so that the directory itself can be removed or replaced.
int clear_whiteouts(int ufd, const char* name) {
  UniqueFd d(::openat(ufd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!d) return errno;
  DIR* dp = ::fdopendir(d.get());
  if (dp == nullptr) return errno;
  d.release();
  int err = 0;
  while (dirent* de = ::readdir(dp)) {
    const std::string_view n(de->d_name);
    if (n == "." || n == "..") continue;
    struct stat st {};
    if (::fstatat(::dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!Filesystem::is_whiteout(st)) {
      err = ENOTEMPTY;  // something was created meanwhile
      break;
    }
    if (::unlinkat(::dirfd(dp), de->d_name, 0) != 0) {
      err = errno;
      break;
    }
  }
  ::closedir(dp);
  return err;
}

// Removes the name (parent, name) that `p` probed: its upper entry goes (an
// upper directory with the whiteouts it holds), and a whiteout hides whatever
// the lower layer has there.
int remove_name(Filesystem& fs, Node* parent, const char* name, const Filesystem::Probe& p,
                bool dir) {
  const BranchIndex u = fs.upper();
  int err = 0;
  if (p.found[u].present) {
    FdLease ufd = fs.dir_fd(parent, u, false, err);
    if (!ufd) return err;
    if (dir && (err = clear_whiteouts(ufd.get(), name)) != 0) return err;
    if (::unlinkat(ufd.get(), name, dir ? AT_REMOVEDIR : 0) != 0) return errno;
  }
  if (p.lower.kind != Resolution::kNone) {
    FdLease ufd = fs.dir_fd(parent, u, true, err);
    if (!ufd) return err;
    if ((err = Filesystem::make_whiteout(ufd.get(), name)) != 0) return err;
  }
  Filesystem::changed(parent);
  fs.nodes().drop(parent, name);
  return 0;
}

// Makes the entry at (parent, name) live wholly in the upper layer.
int bring_up(Filesystem& fs, Node* parent, const char* name, const Filesystem::Probe& p) {
  if (p.res.kind == Resolution::kDirectory && !any_lower(fs, p)) return 0;
  if (p.res.kind == Resolution::kFile && fs.is_upper(p.res.branch)) return 0;
  Node* n = nullptr;
  if (int err = node_at(fs, parent, name, n)) return err;
  int err;
  if (n->is_dir()) {
    err = fs.copy_up_tree(n);
  } else {
    WriteAccess w;  // copies the file up, as a write would
    err = fs.begin_write(n, w, false);
  }
  fs.nodes().forget(n, 1);
  return err;
}

}  // namespace

int discard_unlink(Filesystem& fs, Node* parent, const char* name) {
  Filesystem::Probe p;
  if (int err = fs.probe(parent, name, p, true)) return err;
  if (p.res.kind == Resolution::kDirectory) return EISDIR;
  fs.pin_before_removal(parent, name);
  return remove_name(fs, parent, name, p, false);
}

int discard_rmdir(Filesystem& fs, Node* parent, const char* name) {
  Filesystem::Probe p;
  if (int err = fs.probe(parent, name, p, true)) return err;
  if (p.res.kind != Resolution::kDirectory) return ENOTDIR;
  if (int err = check_empty(fs, parent, name)) return err;
  return remove_name(fs, parent, name, p, true);
}

int discard_rename(Filesystem& fs, Node* parent, const char* name, Node* newparent,
                   const char* newname, unsigned flags) {
  const bool exchange = flags & RENAME_EXCHANGE;
  Filesystem::Probe src, dst;
  if (int err = fs.probe(parent, name, src, true)) return err;
  const int derr = fs.probe(newparent, newname, dst, true);
  if (derr != 0 && derr != ENOENT) return derr;
  const bool src_dir = src.res.kind == Resolution::kDirectory;
  const bool dst_exists = dst.res.kind != Resolution::kNone;
  const bool dst_dir = dst.res.kind == Resolution::kDirectory;
  if ((flags & RENAME_NOREPLACE) && dst_exists) return EEXIST;
  if (exchange && !dst_exists) return ENOENT;
  if (!exchange && dst_exists) {
    if (src_dir && !dst_dir) return ENOTDIR;
    if (!src_dir && dst_dir) return EISDIR;
    if (dst_dir) {
      if (int err = check_empty(fs, newparent, newname)) return err;
    }
  }
  // Both ends wholly in the upper layer first (the destination only when it
  // is swapped, not replaced).
  if (int err = bring_up(fs, parent, name, src)) return err;
  if (exchange) {
    if (int err = bring_up(fs, newparent, newname, dst)) return err;
  }
  const BranchIndex u = fs.upper();
  int err = 0;
  FdLease sfd = fs.dir_fd(parent, u, true, err);
  FdLease dfd = sfd ? fs.dir_fd(newparent, u, true, err) : FdLease();
  if (!dfd) return err;
  // A replaced directory's upper part may hold whiteouts only: they go with it.
  if (!exchange && dst_dir && dst.found[u].present) {
    if ((err = clear_whiteouts(dfd.get(), newname)) != 0) return err;
  }
  // Does the destination hide something of the lower layer?
  const bool dst_hides_lower = dst.whiteout || dst.lower.kind != Resolution::kNone;
  const bool took_whiteout = dst.whiteout && Filesystem::take_whiteout(dfd.get(), newname);
  if (!exchange && dst_exists && !dst_dir) fs.pin_before_removal(newparent, newname);
  // The source leaves a whiteout behind where a lower entry would show again;
  // RENAME_WHITEOUT makes it in the same step.
  const bool src_hides_lower = !exchange && src.lower.kind != Resolution::kNone;
  const unsigned base = flags & (RENAME_NOREPLACE | RENAME_EXCHANGE);
  int rc = ::renameat2(sfd.get(), name, dfd.get(), newname, base | (src_hides_lower ? RENAME_WHITEOUT : 0));
  if (rc != 0 && src_hides_lower && errno == EINVAL) {
    rc = ::renameat2(sfd.get(), name, dfd.get(), newname, base);
    if (rc == 0) Filesystem::make_whiteout(sfd.get(), name);
  }
  if (rc != 0) {
    err = errno;
    if (took_whiteout) Filesystem::restore_whiteout(dfd.get(), newname);
    return err;
  }
  // A directory now standing where the lower layer has something must hide it.
  if (src_dir && (dst_hides_lower || exchange)) fs.set_opaque(dfd.get(), newname);
  if (exchange && dst_dir) fs.set_opaque(sfd.get(), name);
  Filesystem::changed(parent);
  Filesystem::changed(newparent);
  if (exchange) {
    fs.nodes().drop(parent, name);
    fs.nodes().drop(newparent, newname);
  } else {
    if (src_dir && dst_hides_lower) {
      Node* n = fs.nodes().find(parent, name);
      if (n != nullptr) {
        n->opaque.store(true, std::memory_order_release);
        fs.nodes().forget(n, 1);
      }
    }
    fs.nodes().move(parent, name, newparent, newname);
  }
  return 0;
}

}  // namespace cachefs::ops

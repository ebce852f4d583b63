// Creating, linking, renaming and removing names. Where the entry lives is the
// route's decision (RouteTable); an operation that would have to move data between
// branches answers EXDEV, as a rename across filesystems does, so tools fall back
// to copy-and-delete (mv does; Go, pip and npm write temp files beside their
// targets, which route alike).
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <unistd.h>

#include <vector>

#include "fs/filesystem.h"
#include "fs/ops.h"

namespace cachefs::ops {
namespace {

void reply_created(fuse_req_t req, Filesystem& fs, Node* parent, int pfd, const char* name,
                   BranchIndex b) {
  fuse_entry_param e;
  if (int err = fs.finish_create(req, parent, pfd, name, b, UniqueFd(), e)) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_entry(req, &e);
}

// The branch a non-directory in `branch` may keep when it takes the name
// `path`: strict wants the first candidate, weak any candidate.
bool may_live_in(Filesystem& fs, const std::string& path, BranchIndex branch) {
  Candidates c;
  fs.routes().candidates(path, c);
  return fs.routes().policy() == ResolutionPolicy::kStrict ? c[0] == branch : c.contains(branch);
}

}  // namespace

void mknod(fuse_req_t req, fuse_ino_t parent_ino, const char* name, mode_t mode, dev_t rdev) {
  Filesystem& fs = fs_of(req);
  Node* parent = fs.nodes().node(parent_ino);
  if (fs.discard() && S_ISCHR(mode) && rdev == 0) {
    fuse_reply_err(req, EPERM);  // a 0:0 device is a whiteout in the upper layer
    return;
  }
  BranchIndex b;
  FdLease pfd;
  bool over_whiteout = false;
  if (int err = fs.prepare_create(parent, name, false, b, pfd, &over_whiteout)) {
    fuse_reply_err(req, err);
    return;
  }
  if (fs.changing(parent, [&] { return ::mknodat(pfd.get(), name, mode, rdev); }) != 0) {
    const int err = errno;
    if (over_whiteout) Filesystem::restore_whiteout(pfd.get(), name);
    fuse_reply_err(req, err);
    return;
  }
  reply_created(req, fs, parent, pfd.get(), name, b);
}

void symlink(fuse_req_t req, const char* target, fuse_ino_t parent_ino, const char* name) {
  Filesystem& fs = fs_of(req);
  Node* parent = fs.nodes().node(parent_ino);
  BranchIndex b;
  FdLease pfd;
  bool over_whiteout = false;
  if (int err = fs.prepare_create(parent, name, false, b, pfd, &over_whiteout)) {
    fuse_reply_err(req, err);
    return;
  }
  // The target is stored as text and never resolved by the daemon.
  if (fs.changing(parent, [&] { return ::symlinkat(target, pfd.get(), name); }) != 0) {
    const int err = errno;
    if (over_whiteout) Filesystem::restore_whiteout(pfd.get(), name);
    fuse_reply_err(req, err);
    return;
  }
  reply_created(req, fs, parent, pfd.get(), name, b);
}

void link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent_ino, const char* newname) {
  Filesystem& fs = fs_of(req);
  Node* n = fs.nodes().node(ino);
  Node* newparent = fs.nodes().node(newparent_ino);
  if (fs.read_only()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  if (n->is_dir()) {
    fuse_reply_err(req, EPERM);
    return;
  }
  if (!Filesystem::valid_name(newname)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  // A link the user makes shares writes between its names, which a path of a
  // shared object must not: it gets its private copy first.
  WriteAccess w;
  int err = fs.begin_write(n, w, false);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  const auto f = w.backing;
  // Discard mode: one upper tree, whatever the routes (begin_write copied it up).
  if (!fs.discard() &&
      !may_live_in(fs, fs.nodes().child_path(newparent, newname, false), f->branch)) {
    fuse_reply_err(req, EXDEV);
    return;
  }
  FdLease src = fs.path_fd(n, *f, err);
  FdLease pfd = src ? fs.dir_fd(newparent, f->branch, true, err) : FdLease();
  if (!pfd) {
    fuse_reply_err(req, err);
    return;
  }
  const bool over_whiteout = fs.discard() && Filesystem::take_whiteout(pfd.get(), newname);
  if (fs.changing(newparent, [&] {
        return ::linkat(src.get(), "", pfd.get(), newname, AT_EMPTY_PATH);
      }) != 0) {
    err = errno;
    if (over_whiteout) Filesystem::restore_whiteout(pfd.get(), newname);
    fuse_reply_err(req, err);
    return;
  }
  // A change to the file like any other (its link count): dedup looks at it
  // when quiet — and so the write lock begin_write took is let go then.
  fs.written(n);
  // The kernel keeps one inode for both names: answer with the same node.
  Filesystem::changed(newparent);
  fs.nodes().add_link(n);
  struct stat st {};
  if ((err = fs.getattr(n, st)) != 0) {
    fs.nodes().forget(n, 1);
    fuse_reply_err(req, err);
    return;
  }
  fuse_entry_param e;
  fs.fill_entry(n, st, e);
  fuse_reply_entry(req, &e);
}

void unlink(fuse_req_t req, fuse_ino_t parent_ino, const char* name) {
  Filesystem& fs = fs_of(req);
  if (fs.read_only()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Node* parent = fs.nodes().node(parent_ino);
  if (fs.discard()) {
    fuse_reply_err(req, discard_unlink(fs, parent, name));
    return;
  }
  Candidates c;
  fs.routes().candidates(fs.nodes().child_path(parent, name, false), c);
  // Strict: the name can only be in its first candidate (the kernel never asks to
  // unlink a directory). Weak: every candidate holding a non-directory of that
  // name, so that a deleted file does not show through from further down.
  std::vector<BranchIndex> targets{c[0]};
  if (fs.routes().policy() == ResolutionPolicy::kWeak) {
    Filesystem::Probe p;
    if (int err = fs.probe(parent, name, p, true)) {
      fuse_reply_err(req, err);
      return;
    }
    if (p.res.kind == Resolution::kDirectory) {
      fuse_reply_err(req, EISDIR);
      return;
    }
    targets.clear();
    for (BranchIndex b : c) {
      if (p.found[b].present && !S_ISDIR(p.found[b].st.st_mode)) targets.push_back(b);
    }
  }
  fs.pin_before_removal(parent, name);
  int err = 0;
  for (BranchIndex b : targets) {
    FdLease pfd = fs.dir_fd(parent, b, false, err);
    // The inode itself, to give a deduplicated file's space back (below).
    UniqueFd victim;
    if (pfd && fs.dedup_on(b)) victim.reset(::openat(pfd.get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!pfd || fs.changing(parent, [&] { return ::unlinkat(pfd.get(), name, 0); }) != 0) {
      if (pfd) err = errno;
      break;
    }
    // Its object, if the store's name is all that is left of it: deleting a file
    // frees its space now, not at the next `cachectl gc`.
    if (victim) fs.store().drop_if_unused(victim.get());
  }
  if (!err) {
    Filesystem::changed(parent);
    fs.nodes().drop(parent, name);
  }
  fuse_reply_err(req, err);
}

namespace {

int rename_file(Filesystem& fs, Node* parent, const char* name, Node* newparent,
                const char* newname, unsigned flags, const Filesystem::Probe& src) {
  const BranchIndex b = src.res.branch;
  if (!may_live_in(fs, fs.nodes().child_path(newparent, newname, false), b)) return EXDEV;
  Filesystem::Probe dst;
  fs.probe(newparent, newname, dst, false);
  if (dst.res.kind == Resolution::kDirectory) return (flags & RENAME_EXCHANGE) ? EXDEV : EISDIR;
  if (dst.res.kind == Resolution::kFile && dst.res.branch != b) {
    return (flags & RENAME_NOREPLACE) ? EEXIST : EXDEV;
  }
  int err = 0;
  FdLease spfd = fs.dir_fd(parent, b, false, err);
  FdLease dpfd = spfd ? fs.dir_fd(newparent, b, true, err) : FdLease();
  if (!dpfd) return err;
  if (!(flags & RENAME_EXCHANGE)) fs.pin_before_removal(newparent, newname);
  if (fs.changing(parent, newparent,
                  [&] { return ::renameat2(spfd.get(), name, dpfd.get(), newname, flags); }) != 0) {
    return errno;
  }
  Filesystem::changed(parent);
  Filesystem::changed(newparent);
  if (flags & RENAME_EXCHANGE) {
    fs.nodes().drop(parent, name);
    fs.nodes().drop(newparent, newname);
  } else {
    fs.nodes().move(parent, name, newparent, newname);
  }
  return 0;
}

// A directory is renamed in every branch that holds it. An empty destination
// directory is replaced (removed from the branches the source does not cover);
// any failure puts back what was already done.
int rename_dir(Filesystem& fs, Node* parent, const char* name, Node* newparent, const char* newname,
               unsigned flags, const Filesystem::Probe& src) {
  if (flags & RENAME_EXCHANGE) return EXDEV;
  Filesystem::Probe dst;
  fs.probe(newparent, newname, dst, true);
  if (dst.res.kind == Resolution::kFile) return ENOTDIR;
  if (dst.res.kind == Resolution::kDirectory && (flags & RENAME_NOREPLACE)) return EEXIST;
  const size_t nb = fs.branch_count();
  std::vector<BranchIndex> removed, renamed;
  int err = 0;
  for (size_t b = 0; !err && b < nb; ++b) {
    if (dst.found[b].present && !src.found[b].present) {
      FdLease dpfd = fs.dir_fd(newparent, static_cast<BranchIndex>(b), false, err);
      if (!dpfd || fs.changing(newparent, [&] {
            return ::unlinkat(dpfd.get(), newname, AT_REMOVEDIR);
          }) != 0) {
        if (dpfd) err = errno;
      } else {
        removed.push_back(static_cast<BranchIndex>(b));
      }
    }
  }
  for (size_t b = 0; !err && b < nb; ++b) {
    if (!src.found[b].present) continue;
    const auto bi = static_cast<BranchIndex>(b);
    FdLease spfd = fs.dir_fd(parent, bi, false, err);
    FdLease dpfd = spfd ? fs.dir_fd(newparent, bi, true, err) : FdLease();
    if (!dpfd) {
      // err set by dir_fd
    } else if (fs.changing(parent, newparent, [&] {
                 return ::renameat2(spfd.get(), name, dpfd.get(), newname, flags);
               }) != 0) {
      err = errno;
    } else {
      renamed.push_back(bi);
    }
  }
  if (err) {
    for (BranchIndex b : renamed) {
      const FdLease from = fs.dir_fd(newparent, b), to = fs.dir_fd(parent, b);
      fs.changing(parent, newparent,
                  [&] { return ::renameat2(from.get(), newname, to.get(), name, 0); });
    }
    for (BranchIndex b : removed) {
      FdLease dpfd = fs.dir_fd(newparent, b);
      fs.changing(newparent,
                  [&] { return ::mkdirat(dpfd.get(), newname, dst.found[b].st.st_mode & 07777); });
      ::fchownat(dpfd.get(), newname, dst.found[b].st.st_uid, dst.found[b].st.st_gid,
                 AT_SYMLINK_NOFOLLOW);
    }
    return err;
  }
  Filesystem::changed(parent);
  Filesystem::changed(newparent);
  fs.nodes().move(parent, name, newparent, newname);
  return 0;
}

}  // namespace

void rename(fuse_req_t req, fuse_ino_t parent_ino, const char* name, fuse_ino_t newparent_ino,
            const char* newname, unsigned int flags) {
  Filesystem& fs = fs_of(req);
  if (fs.read_only()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  if (!Filesystem::valid_name(newname)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  Node* parent = fs.nodes().node(parent_ino);
  Node* newparent = fs.nodes().node(newparent_ino);
  if (fs.discard()) {
    fuse_reply_err(req, discard_rename(fs, parent, name, newparent, newname, flags));
    return;
  }
  Filesystem::Probe src;
  if (int err = fs.probe(parent, name, src, false)) {
    fuse_reply_err(req, err);
    return;
  }
  const int err = src.res.kind == Resolution::kFile
                      ? rename_file(fs, parent, name, newparent, newname, flags, src)
                      : rename_dir(fs, parent, name, newparent, newname, flags, src);
  fuse_reply_err(req, err);
}

}  // namespace cachefs::ops

// Attribute changes (chmod, chown, truncate, utimens) and extended attributes.
// A union directory's attributes are changed in every branch that holds it.
#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fs/filesystem.h"
#include "fs/ops.h"

namespace cachefs::ops {
namespace {

// Names the daemon keeps for itself: the object mark on shared inodes, and the
// live statistics read from the mount's root (cachectl stats --mount).
constexpr std::string_view kReservedPrefix = "trusted.cachefs.";
constexpr const char* kStatsXattr = "trusted.cachefs.stats";
bool reserved(const char* name) {
  return std::string_view(name).starts_with(kReservedPrefix);
}

// Answers a getxattr/listxattr of `value`: its size when asked with size 0.
void reply_value(fuse_req_t req, size_t size, std::string_view value) {
  if (size == 0)
    fuse_reply_xattr(req, value.size());
  else if (size < value.size())
    fuse_reply_err(req, ERANGE);
  else
    fuse_reply_buf(req, value.data(), value.size());
}

// Applies the metadata part of a setattr to one inode reached through `fd` (an
// O_PATH or real descriptor on a non-symlink, or a symlink when `symlink`).
int apply(int fd, bool symlink, const struct stat& attr, int to_set) {
  if (to_set & FUSE_SET_ATTR_MODE) {
    if (symlink) return EOPNOTSUPP;
    // Through the magic link: lands on this very inode, which is not a symlink.
    if (::chmod(ProcFdPath(fd).c_str(), attr.st_mode & 07777) != 0) return errno;
  }
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    const uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr.st_uid : static_cast<uid_t>(-1);
    const gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr.st_gid : static_cast<gid_t>(-1);
    if (::fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
      ts[0].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME)
      ts[0] = attr.st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
      ts[1].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME)
      ts[1] = attr.st_mtim;
    if (::utimensat(fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
  }
  return 0;
}

// The descriptors whose inodes carry a node's xattrs, held while in use: the file
// itself, or every branch of a directory (primary first; `all` false: primary
// only). Symlinks and special files have none here (ENOTSUP).
struct XattrTargets {
  std::shared_ptr<FileBacking> backing;  // outlives the lease on it (declared first)
  FdLease file;
  std::vector<UniqueFd> dirs;
  std::vector<int> fds;
};

int xattr_targets(Filesystem& fs, Node* n, bool all, XattrTargets& t,
                  WriteAccess* write = nullptr) {
  if (!n->is_dir()) {
    if (write != nullptr) {
      if (int err = fs.begin_write(n, *write, false)) return err;
      t.backing = write->backing;
    } else {
      t.backing = n->backing();
    }
    const auto& f = t.backing;
    // The inode's type is known from when the node was made (it never changes):
    // a data descriptor, often open already, reaches its xattrs.
    if (!f->regular) return ENOTSUP;
    int err = 0;
    t.file = fs.io_fd(n, *f, false, err);
    if (!t.file) return err;
    t.fds.push_back(t.file.get());
    return 0;
  }
  if (fs.discard()) {
    // The upper directory alone carries them; a change makes it first.
    int err = 0;
    const BranchIndex b = write != nullptr ? fs.upper() : fs.shown_branch(n);
    if (write != nullptr) {
      FdLease made = fs.dir_fd(n, b, true, err);
      if (!made) return err;
    }
    UniqueFd fd = fs.open_dir(n, b, err);
    if (!fd) return err;
    t.dirs.push_back(std::move(fd));
    t.fds.push_back(t.dirs.back().get());
    return 0;
  }
  const BranchIndex primary = n->primary.load();
  if (UniqueFd fd = fs.open_dir(n, primary)) t.dirs.push_back(std::move(fd));
  for (size_t b = 0; all && b < fs.branch_count(); ++b) {
    if (b == primary) continue;
    if (UniqueFd fd = fs.open_dir(n, static_cast<BranchIndex>(b))) t.dirs.push_back(std::move(fd));
  }
  for (const UniqueFd& fd : t.dirs) t.fds.push_back(fd.get());
  return t.fds.empty() ? ENOENT : 0;
}

// Would this setattr leave a shared object's path as it is? The kernel writes
// back its cached mtime (and ctime, which is never set) when it drops a written
// inode; for a path dedup linked to an object with another mtime, that is the
// time the path had, not a change, and must not cost a private copy.
bool unchanged_object(Filesystem& fs, Node* n, const struct stat& attr, int to_set) {
  const auto f = n->backing();
  if (!f->object) return false;
  constexpr int kNoop = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
                        FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME;
  if (to_set & ~kNoop) return false;  // size, *_NOW
  int err = 0;
  FdLease fd = fs.io_fd(n, *f, false, err);
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0) return false;
  auto same = [](const timespec& a, const timespec& b) {
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
  };
  // The kernel's write-back of times is MTIME|CTIME alone (a utimens from a
  // program sets ATIME too, or asks for "now"), carrying the mtime it computed
  // itself for the last write: within a clock tick of what the file had.
  const int64_t cur = st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec;
  const int64_t own = n->own_mtime_ns.load(std::memory_order_relaxed);
  const int64_t asked = attr.st_mtim.tv_sec * 1'000'000'000LL + attr.st_mtim.tv_nsec;
  const bool writeback_of_times = to_set == (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME) &&
                                  std::llabs(asked - (own != 0 ? own : cur)) < 2'000'000'000LL;
  if (writeback_of_times) return true;
  return (!(to_set & FUSE_SET_ATTR_MODE) || (attr.st_mode & 07777) == (st.st_mode & 07777)) &&
         (!(to_set & FUSE_SET_ATTR_UID) || attr.st_uid == st.st_uid) &&
         (!(to_set & FUSE_SET_ATTR_GID) || attr.st_gid == st.st_gid) &&
         (!(to_set & FUSE_SET_ATTR_ATIME) || same(attr.st_atim, st.st_atim)) &&
         (!(to_set & FUSE_SET_ATTR_MTIME) || same(attr.st_mtim, st.st_mtim) || asked == own);
}

}  // namespace

void setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  Filesystem& fs = fs_of(req);
  if (fs.read_only()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Node* n = fs.nodes().node(ino);
  int err = 0;
  if (n->is_dir()) {
    if (to_set & FUSE_SET_ATTR_SIZE) err = EISDIR;
    if (!err && fs.discard()) {
      // The upper directory alone: made (a copy of the lower's attributes) first.
      FdLease fd = fs.dir_fd(n, fs.upper(), true, err);
      if (fd) err = apply(fd.get(), false, *attr, to_set);
    }
    for (size_t b = 0; !err && !fs.discard() && b < fs.branch_count(); ++b) {
      if (!n->dirs[b].known.load(std::memory_order_acquire)) continue;
      FdLease fd = fs.dir_fd(n, static_cast<BranchIndex>(b));
      const DirChange change = fs.dir_change(n);
      if (fd) err = apply(fd.get(), false, *attr, to_set);
    }
  } else if (unchanged_object(fs, n, *attr, to_set)) {
    // Nothing to do (see unchanged_object).
  } else {
    struct stat st {};
    WriteAccess w;
    // Dedup may make the file an object between the check above and here: the
    // check is made again before a copy is made.
    const std::function<bool()> no_change = [&] { return unchanged_object(fs, n, *attr, to_set); };
    // A truncation keeps only what survives it when a shared file is copied.
    err = fs.begin_write(n, w, false,
                         (to_set & FUSE_SET_ATTR_SIZE) ? static_cast<uint64_t>(attr->st_size)
                                                       : UINT64_MAX,
                         &no_change);
    if (err == Filesystem::kNoChange) {
      struct stat out {};
      if ((err = fs.getattr(n, out)) != 0) {
        fuse_reply_err(req, err);
      } else {
        fuse_reply_attr(req, &out, fs.config().attr_timeout);
      }
      return;
    }
    const auto f = w.backing;
    // A regular file whose data is open already is changed through that
    // descriptor (its type is known from when the node was made); anything else
    // through its O_PATH one, never opened for data here (a running executable
    // refuses writing).
    FdLease p;
    bool symlink = false;
    if (!err && f->regular) p = f->rw.lease();
    if (!err && !p) {
      p = fs.path_fd(n, *f, err);
      if (p && ::fstatat(p.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) err = errno;
      symlink = S_ISLNK(st.st_mode);
    }
    if (!err && (to_set & FUSE_SET_ATTR_SIZE)) {
      if (!f->regular) {
        err = EINVAL;
      } else if (FdLease fd = fs.io_fd(n, *f, true, err)) {
        err = ::ftruncate(fd.get(), attr->st_size) == 0 ? 0 : errno;
      }
    }
    if (!err) err = apply(p.get(), symlink, *attr, to_set);
    // A truncation by a caller without CAP_FSETID, or a chown: set-id bits go.
    if (!err && KernelIo::kill_suidgid() && f->regular) err = KernelIo::kill_suidgid(p.get());
    fs.written(n);
  }
  struct stat out {};
  if (!err) err = fs.getattr(n, out);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_attr(req, &out, fs.config().attr_timeout);
}

void setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
              int flags) {
  Filesystem& fs = fs_of(req);
  if (fs.read_only()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  if (reserved(name)) {
    fuse_reply_err(req, EPERM);
    return;
  }
  Node* n = fs.nodes().node(ino);
  WriteAccess w;
  XattrTargets t;
  int err = xattr_targets(fs, n, true, t, &w);
  for (size_t i = 0; !err && i < t.fds.size(); ++i) {
    err = ::fsetxattr(t.fds[i], name, value, size, flags) == 0 ? 0 : errno;
  }
  if (!n->is_dir()) fs.written(n);
  fuse_reply_err(req, err);
}

void getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Filesystem& fs = fs_of(req);
  if (reserved(name)) {
    if (ino != FUSE_ROOT_ID || std::strcmp(name, kStatsXattr) != 0) {
      fuse_reply_err(req, ENODATA);
      return;
    }
    reply_value(req, size, fs.stats_json());
    return;
  }
  XattrTargets t;
  if (int err = xattr_targets(fs, fs.nodes().node(ino), false, t)) {
    fuse_reply_err(req, err);
    return;
  }
  std::vector<char> buf(size);
  const ssize_t len = ::fgetxattr(t.fds.front(), name, size ? buf.data() : nullptr, size);
  if (len < 0) {
    fuse_reply_err(req, errno);
  } else if (size == 0) {
    fuse_reply_xattr(req, static_cast<size_t>(len));
  } else {
    fuse_reply_buf(req, buf.data(), static_cast<size_t>(len));
  }
}

void listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Filesystem& fs = fs_of(req);
  XattrTargets t;
  if (int err = xattr_targets(fs, fs.nodes().node(ino), false, t)) {
    if (err != ENOTSUP)
      fuse_reply_err(req, err);
    else if (size == 0)
      fuse_reply_xattr(req, 0);  // none here: an empty list
    else
      fuse_reply_buf(req, nullptr, 0);
    return;
  }
  // The full list, less the daemon's own names; sized by what is left.
  std::vector<char> buf(4096);
  ssize_t len;
  while ((len = ::flistxattr(t.fds.front(), buf.data(), buf.size())) < 0 && errno == ERANGE) {
    const ssize_t need = ::flistxattr(t.fds.front(), nullptr, 0);
    if (need < 0) break;
    buf.resize(static_cast<size_t>(need) + 256);
  }
  if (len < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  std::string shown;
  for (ssize_t i = 0; i < len;) {
    const char* item = buf.data() + i;
    const size_t l = std::strlen(item);
    if (!reserved(item)) shown.append(item, l + 1);
    i += static_cast<ssize_t>(l) + 1;
  }
  reply_value(req, size, shown);
}

void removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Filesystem& fs = fs_of(req);
  if (fs.read_only()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  if (reserved(name)) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  Node* n = fs.nodes().node(ino);
  WriteAccess w;
  XattrTargets t;
  int err = xattr_targets(fs, n, true, t, &w);
  if (!n->is_dir()) fs.written(n);
  // Removed if any branch had it; ENODATA only if none did.
  bool removed = false;
  for (size_t i = 0; !err && i < t.fds.size(); ++i) {
    if (::fremovexattr(t.fds[i], name) == 0)
      removed = true;
    else if (errno != ENODATA)
      err = errno;
  }
  if (!err && !removed) err = ENODATA;
  fuse_reply_err(req, err);
}

}  // namespace cachefs::ops

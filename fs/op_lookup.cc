// Name lookup, node lifetime (forget), attributes, symlinks and statfs.
#include <sys/statvfs.h>

#include "fs/filesystem.h"
#include "fs/ops.h"

namespace cachefs::ops {

void lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Filesystem& fs = fs_of(req);
  fuse_entry_param e;
  const int err = fs.lookup(fs.nodes().node(parent), name, e);
  if (err == ENOENT && fs.config().negative_timeout > 0) {
    e = fuse_entry_param{};
    e.entry_timeout = fs.config().negative_timeout;
    fuse_reply_entry(req, &e);
  } else if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Filesystem& fs = fs_of(req);
  fs.nodes().forget(fs.nodes().node(ino), nlookup);
  fuse_reply_none(req);
}

void forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  Filesystem& fs = fs_of(req);
  for (size_t i = 0; i < count; ++i) {
    fs.nodes().forget(fs.nodes().node(forgets[i].ino), forgets[i].nlookup);
  }
  fuse_reply_none(req);
}

void getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Filesystem& fs = fs_of(req);
  struct stat st {};
  if (int err = fs.getattr(fs.nodes().node(ino), st)) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_attr(req, &st, fs.config().attr_timeout);
}

void readlink(fuse_req_t req, fuse_ino_t ino) {
  Filesystem& fs = fs_of(req);
  Node* n = fs.nodes().node(ino);
  if (n->is_dir()) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  char buf[PATH_MAX + 1];
  // The target is returned to the kernel as text; the daemon never resolves it.
  int err;
  FdLease fd = fs.path_fd(n, *n->backing(), err);
  if (!fd) {
    fuse_reply_err(req, err);
    return;
  }
  const ssize_t len = ::readlinkat(fd.get(), "", buf, sizeof buf - 1);
  if (len < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  buf[len] = '\0';
  fuse_reply_readlink(req, buf);
}

void statfs(fuse_req_t req, fuse_ino_t) {
  Filesystem& fs = fs_of(req);
  // Where new data lands: the default directory's filesystem (discard mode:
  // the upper layer's, which is what fills up).
  FdLease fd = fs.dir_fd(fs.nodes().root(),
                         fs.discard() ? fs.upper() : fs.routes().default_branch());
  struct statvfs sv {};
  if (!fd || ::fstatvfs(fd.get(), &sv) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_statfs(req, &sv);
}

}  // namespace cachefs::ops

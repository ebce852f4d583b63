// Directories: the union listing, mkdir and rmdir.
#include <dirent.h>
#include <fcntl.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include "fs/filesystem.h"
#include "fs/ops.h"

namespace cachefs::ops {
namespace {

struct DirHandle {
  struct Entry {
    std::string name;
    uint64_t ino;
    uint8_t type;  // DT_*
  };
  std::mutex mu;
  std::vector<Entry> entries;
  bool served = false;
};

uint8_t dt_of(mode_t mode) {
  return static_cast<uint8_t>((mode & S_IFMT) >> 12);
}

// A snapshot of the union: every name of every branch directory, kept only where a
// lookup would find it (the same resolve() rule), in first-seen order.
int build_listing(Filesystem& fs, Node* dir, std::vector<DirHandle::Entry>& out) {
  const size_t nb = fs.branch_count();
  struct Seen {
    std::string name;
    uint32_t dir_mask = 0;
    uint32_t other_mask = 0;
    std::array<uint64_t, kMaxBranches> ino{};
    std::array<uint8_t, kMaxBranches> type{};
  };
  std::vector<Seen> seen;
  std::unordered_map<std::string, size_t> index;
  bool any = false;
  for (size_t b = 0; b < nb; ++b) {
    const auto bi = static_cast<BranchIndex>(b);
    if (fs.dir_fd(dir, bi, false) < 0) continue;
    UniqueFd fd = fs.open_dir(dir, bi);
    if (!fd) continue;
    DIR* dp = ::fdopendir(fd.get());
    if (dp == nullptr) continue;
    fd.release();
    any = true;
    struct stat bst {};
    ::fstat(::dirfd(dp), &bst);
    while (dirent* de = ::readdir(dp)) {
      const std::string_view name(de->d_name);
      if (name == "." || name == "..") continue;
      uint8_t type = de->d_type;
      struct stat st {};
      st.st_dev = bst.st_dev;
      st.st_ino = de->d_ino;
      if (type == DT_UNKNOWN) {
        if (::fstatat(::dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        type = dt_of(st.st_mode);
      }
      if (type == DT_DIR && fs.is_store(st)) continue;
      auto [it, inserted] = index.try_emplace(std::string(name), seen.size());
      if (inserted) {
        seen.emplace_back();
        seen.back().name = name;
      }
      Seen& s = seen[it->second];
      (type == DT_DIR ? s.dir_mask : s.other_mask) |= 1u << b;
      s.ino[b] = fs.shown_ino(bi, st);
      s.type[b] = type;
    }
    ::closedir(dp);
  }
  if (!any) return ENOENT;

  // glibc hides entries whose inode number is 0: give "." and ".." the directory's.
  struct stat self {};
  fs.getattr(dir, self);
  out.clear();
  out.push_back({".", self.st_ino, DT_DIR});
  out.push_back({"..", self.st_ino, DT_DIR});
  const std::string base = fs.nodes().child_path(dir, "", false);
  std::string path;
  Candidates c;
  for (const Seen& s : seen) {
    path.assign(base).append(s.name);
    fs.routes().candidates(path, c);
    const Resolution r = resolve(c, fs.routes().policy(), nb, [&](BranchIndex b) {
      if (s.dir_mask & (1u << b)) return Presence::kDirectory;
      if (s.other_mask & (1u << b)) return Presence::kOther;
      return Presence::kAbsent;
    });
    if (r.kind == Resolution::kFile) {
      out.push_back({s.name, s.ino[r.branch], s.type[r.branch]});
    } else if (r.kind == Resolution::kDirectory) {
      const int first = __builtin_ctz(s.dir_mask);
      out.push_back({s.name, s.ino[first], DT_DIR});
    }
  }
  return 0;
}

void reply_listing(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
                   bool plus) {
  Filesystem& fs = fs_of(req);
  Node* dir = fs.nodes().node(ino);
  auto* h = reinterpret_cast<DirHandle*>(fi->fh);
  // The reply must be sent after unlocking: once it is, the kernel may release
  // the handle from another thread.
  std::unique_lock lock(h->mu);
  if (off == 0 && h->served) {
    // rewinddir(3): a fresh look, as POSIX asks.
    if (int err = build_listing(fs, dir, h->entries)) {
      lock.unlock();
      fuse_reply_err(req, err);
      return;
    }
  }
  h->served = true;
  std::vector<char> buf(size);
  size_t pos = 0;
  for (size_t i = static_cast<size_t>(off); i < h->entries.size(); ++i) {
    const DirHandle::Entry& en = h->entries[i];
    size_t need;
    if (!plus) {
      struct stat st {};
      st.st_ino = en.ino;
      st.st_mode = static_cast<mode_t>(en.type) << 12;
      need = fuse_add_direntry(req, buf.data() + pos, size - pos, en.name.c_str(), &st,
                               static_cast<off_t>(i + 1));
    } else {
      fuse_entry_param e{};
      if (i < 2) {  // "." and "..": no lookup, no attributes
        e.attr.st_ino = en.ino;
        e.attr.st_mode = S_IFDIR;
      } else if (fs.lookup(dir, en.name, e) != 0) {
        continue;  // gone since the snapshot
      }
      need = fuse_add_direntry_plus(req, buf.data() + pos, size - pos, en.name.c_str(), &e,
                                    static_cast<off_t>(i + 1));
      if (need > size - pos && e.ino != 0) fs.nodes().forget(fs.nodes().node(e.ino), 1);
    }
    if (need > size - pos) break;
    pos += need;
  }
  lock.unlock();
  fuse_reply_buf(req, buf.data(), pos);
}

}  // namespace

void opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = fs_of(req);
  auto h = std::make_unique<DirHandle>();
  if (int err = build_listing(fs, fs.nodes().node(ino), h->entries)) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(h.get());
  // The kernel may keep the listing: any change made through the mount invalidates
  // it, and a change in any branch shows in the directory's mtime (see getattr).
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  if (fuse_reply_open(req, fi) == 0) h.release();
}

void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  reply_listing(req, ino, size, off, fi, false);
}

void readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  reply_listing(req, ino, size, off, fi, true);
}

void releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  Filesystem& fs = fs_of(req);
  Node* dir = fs.nodes().node(ino);
  for (size_t b = 0; b < fs.branch_count(); ++b) {
    UniqueFd fd = fs.open_dir(dir, static_cast<BranchIndex>(b));
    if (fd && (datasync ? ::fdatasync(fd.get()) : ::fsync(fd.get())) != 0) {
      fuse_reply_err(req, errno);
      return;
    }
  }
  fuse_reply_err(req, 0);
}

void mkdir(fuse_req_t req, fuse_ino_t parent_ino, const char* name, mode_t mode) {
  Filesystem& fs = fs_of(req);
  Node* parent = fs.nodes().node(parent_ino);
  BranchIndex b;
  int pfd;
  if (int err = fs.prepare_create(parent, name, true, b, pfd)) {
    fuse_reply_err(req, err);
    return;
  }
  if (::mkdirat(pfd, name, mode & 07777) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_entry_param e;
  if (int err = fs.finish_create(req, parent, pfd, name, b, UniqueFd(), false, e)) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_entry(req, &e);
}

void rmdir(fuse_req_t req, fuse_ino_t parent_ino, const char* name) {
  Filesystem& fs = fs_of(req);
  if (fs.read_only()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Node* parent = fs.nodes().node(parent_ino);
  Filesystem::Probe p;
  if (int err = fs.probe(parent, name, p, true)) {
    fuse_reply_err(req, err);
    return;
  }
  if (p.res.kind != Resolution::kDirectory) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  // Remove it from every branch; if one refuses (not empty there), put back the
  // ones already removed so the union is unchanged.
  std::vector<BranchIndex> removed;
  for (size_t b = 0; b < p.found.size(); ++b) {
    if (!p.found[b].fd.valid()) continue;
    const auto bi = static_cast<BranchIndex>(b);
    const int pfd = fs.dir_fd(parent, bi, false);
    if (pfd < 0 || ::unlinkat(pfd, name, AT_REMOVEDIR) != 0) {
      const int err = pfd < 0 ? -pfd : errno;
      for (BranchIndex r : removed) {
        const int rfd = fs.dir_fd(parent, r, false);
        ::mkdirat(rfd, name, p.found[r].st.st_mode & 07777);
        ::fchownat(rfd, name, p.found[r].st.st_uid, p.found[r].st.st_gid, AT_SYMLINK_NOFOLLOW);
      }
      fuse_reply_err(req, err);
      return;
    }
    removed.push_back(bi);
  }
  fs.nodes().drop(parent, name);
  fuse_reply_err(req, 0);
}

}  // namespace cachefs::ops

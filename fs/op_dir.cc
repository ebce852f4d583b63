// Directories: the union listing, mkdir and rmdir.
#include <dirent.h>
#include <fcntl.h>

#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fs/filesystem.h"
#include "fs/ops.h"
#include "fs/prefetch.h"

namespace cachefs::ops {
namespace {

uint8_t dt_of(mode_t mode) {
  return static_cast<uint8_t>((mode & S_IFMT) >> 12);
}

constexpr timespec kAbsent{-1, -1};

bool same_time(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// The mtime of each branch directory ({-1,-1} where the branch has none).
std::vector<timespec> branch_mtimes(Filesystem& fs, Node* dir) {
  std::vector<timespec> out(fs.slot_count(), kAbsent);
  for (size_t b = 0; b < out.size(); ++b) {
    FdLease fd = fs.dir_fd(dir, static_cast<BranchIndex>(b));
    struct stat st {};
    if (fd && ::fstat(fd.get(), &st) == 0) out[b] = st.st_mtim;
  }
  return out;
}

// The union: every name of every branch directory, kept only where a lookup would
// find it (the same resolve() rule).
int build_listing(Filesystem& fs, Node* dir, DirListing& out) {
  const size_t nb = fs.branch_count();
  const size_t slots = fs.slot_count();
  // Discard mode: names the upper layer has deleted (whiteouts).
  std::unordered_set<std::string> whiteouts;
  struct Seen {
    std::string name;
    uint32_t dir_mask = 0;
    uint32_t other_mask = 0;
    std::array<uint64_t, kMaxBranches> ino{};
    std::array<uint8_t, kMaxBranches> type{};
  };
  std::vector<Seen> seen;
  std::unordered_map<std::string, size_t> index;
  out.gen = dir->change_gen.load(std::memory_order_relaxed);
  out.mtimes.assign(slots, kAbsent);
  bool any = false;
  for (size_t b = 0; b < slots; ++b) {
    const auto bi = static_cast<BranchIndex>(b);
    int err = 0;
    UniqueFd fd = fs.open_dir(dir, bi, err);
    if (!fd) {
      if (Filesystem::absent_errno(err)) continue;
      return err;  // EMFILE and friends: say so, do not show a partial listing
    }
    DIR* dp = ::fdopendir(fd.get());
    if (dp == nullptr) continue;
    fd.release();
    any = true;
    const bool read_ahead = fs.prefetcher().enabled();
    Prefetcher::Job ahead;
    size_t files_listed = 0;
    struct stat bst {};
    ::fstat(::dirfd(dp), &bst);
    out.mtimes[b] = bst.st_mtim;
    while (dirent* de = ::readdir(dp)) {
      const std::string_view name(de->d_name);
      if (name == "." || name == "..") continue;
      uint8_t type = de->d_type;
      struct stat st {};
      st.st_dev = bst.st_dev;
      st.st_ino = de->d_ino;
      if (type == DT_UNKNOWN || (type == DT_CHR && fs.is_upper(bi))) {
        if (::fstatat(::dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        type = dt_of(st.st_mode);
        if (fs.is_upper(bi) && Filesystem::is_whiteout(st)) {
          whiteouts.emplace(name);
          continue;
        }
      }
      if (type == DT_DIR && fs.is_store(st)) continue;
      if (type == DT_REG) ++files_listed;
      if (read_ahead && (type == DT_DIR || type == DT_REG)) ahead.add(type == DT_DIR, name);
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
    if (read_ahead) {
      fs.prefetcher().note_listed(files_listed);
      ahead.dir = UniqueFd(::fcntl(::dirfd(dp), F_DUPFD_CLOEXEC, 0));
      ahead.dev = bst.st_dev;
      ahead.ino = bst.st_ino;
      if (ahead.dir) fs.prefetcher().submit(std::move(ahead));
    }
    ::closedir(dp);
  }
  if (!any) return ENOENT;

  // glibc hides entries whose inode number is 0: give "." and ".." the directory's.
  struct stat self {};
  fs.getattr(dir, self);
  out.entries.clear();
  out.entries.reserve(seen.size() + 2);
  out.entries.push_back({".", DirListing::kDot, self.st_ino, DT_DIR});
  out.entries.push_back({"..", DirListing::kDotDot, self.st_ino, DT_DIR});
  const std::string base = fs.nodes().child_path(dir, "", false);
  std::string path;
  Candidates c;
  const uint32_t upper_bit = fs.discard() ? 1u << fs.upper() : 0;
  for (Seen& s : seen) {
    const uint64_t cookie = DirListing::cookie_of(s.name);
    if ((s.dir_mask | s.other_mask) & upper_bit) {  // the upper layer's entry is the name
      const BranchIndex u = fs.upper();
      out.entries.push_back({std::move(s.name), cookie, s.ino[u], s.type[u]});
      continue;
    }
    if (!whiteouts.empty() && whiteouts.count(s.name) != 0) continue;
    path.assign(base).append(s.name);
    fs.routes().candidates(path, c);
    const Resolution r = resolve(c, fs.routes().policy(), nb, [&](BranchIndex b) {
      if (s.dir_mask & (1u << b)) return Presence::kDirectory;
      if (s.other_mask & (1u << b)) return Presence::kOther;
      return Presence::kAbsent;
    });
    if (r.kind == Resolution::kNone) continue;
    if (r.kind == Resolution::kFile) {
      out.entries.push_back({std::move(s.name), cookie, s.ino[r.branch], s.type[r.branch]});
    } else {
      const int first = __builtin_ctz(s.dir_mask);
      out.entries.push_back({std::move(s.name), cookie, s.ino[first], DT_DIR});
    }
  }
  out.finish();
  return 0;
}

// The directory's listing as it is now: the cached one unless something changed
// through the mount, or (with `revalidate`) in a branch directory behind our back.
std::shared_ptr<const DirListing> current_listing(Filesystem& fs, Node* dir, bool revalidate,
                                                  int& err) {
  std::lock_guard lock(dir->listing_mu);
  err = 0;
  if (dir->listing && dir->listing->gen == dir->change_gen.load(std::memory_order_relaxed)) {
    if (!revalidate) return dir->listing;
    const auto now = branch_mtimes(fs, dir);
    if (std::equal(now.begin(), now.end(), dir->listing->mtimes.begin(), same_time)) {
      return dir->listing;
    }
  }
  auto fresh = std::make_shared<DirListing>();
  if ((err = build_listing(fs, dir, *fresh)) != 0) return nullptr;
  dir->listing = std::move(fresh);
  return dir->listing;
}

void reply_listing(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  Filesystem& fs = fs_of(req);
  Node* dir = fs.nodes().node(ino);
  int err;
  const auto listing = current_listing(fs, dir, off == 0, err);
  if (!listing) {
    fuse_reply_err(req, err);
    return;
  }
  std::vector<char> buf(size);
  size_t pos = 0;
  for (size_t i = listing->after(static_cast<uint64_t>(off)); i < listing->entries.size(); ++i) {
    const DirListing::Entry& en = listing->entries[i];
    const auto next = static_cast<off_t>(en.cookie);
    size_t need;
    if (!plus) {
      struct stat st {};
      st.st_ino = en.ino;
      st.st_mode = static_cast<mode_t>(en.type) << 12;
      need = fuse_add_direntry(req, buf.data() + pos, size - pos, en.name.c_str(), &st, next);
    } else {
      fuse_entry_param e{};
      if (i < 2) {  // "." and "..": no lookup, no attributes
        e.attr.st_ino = en.ino;
        e.attr.st_mode = S_IFDIR;
      } else if (fs.lookup(dir, en.name, e) != 0) {
        continue;  // gone since the listing was made
      }
      need = fuse_add_direntry_plus(req, buf.data() + pos, size - pos, en.name.c_str(), &e, next);
      if (need > size - pos && e.ino != 0) fs.nodes().forget(fs.nodes().node(e.ino), 1);
    }
    if (need > size - pos) break;
    pos += need;
  }
  fuse_reply_buf(req, buf.data(), pos);
}

}  // namespace

std::shared_ptr<const DirListing> dir_listing(Filesystem& fs, Node* dir, int& err) {
  return current_listing(fs, dir, true, err);
}

void opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = fs_of(req);
  if (fs.no_opendir) {
    // Listings need no handle: decline, and the kernel stops sending OPENDIR and
    // RELEASEDIR (two round trips per directory walked) and caches listings.
    fuse_reply_err(req, ENOSYS);
    return;
  }
  int err;
  if (!current_listing(fs, fs.nodes().node(ino), true, err)) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = 0;
  // The kernel may keep the listing: offsets are stable cookies, any change made
  // through the mount invalidates it, and a change in any branch shows in the
  // directory's mtime (see getattr).
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  reply_listing(req, ino, size, off, false);
}

void readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  reply_listing(req, ino, size, off, true);
}

void releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  fuse_reply_err(req, 0);
}

void fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  Filesystem& fs = fs_of(req);
  Node* dir = fs.nodes().node(ino);
  for (size_t b = 0; b < fs.slot_count(); ++b) {
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
  FdLease pfd;
  bool over_whiteout = false;
  if (int err = fs.prepare_create(parent, name, true, b, pfd, &over_whiteout)) {
    fuse_reply_err(req, err);
    return;
  }
  if (fs.changing(parent, [&] { return ::mkdirat(pfd.get(), name, mode & 07777); }) != 0) {
    const int err = errno;
    if (over_whiteout) Filesystem::restore_whiteout(pfd.get(), name);
    fuse_reply_err(req, err);
    return;
  }
  // A directory made where a lower one was deleted starts empty: opaque.
  if (over_whiteout) {
    if (int err = fs.set_opaque(pfd.get(), name)) {
      fs.changing(parent, [&] { return ::unlinkat(pfd.get(), name, AT_REMOVEDIR); });
      Filesystem::restore_whiteout(pfd.get(), name);
      fuse_reply_err(req, err);
      return;
    }
  }
  fuse_entry_param e;
  if (int err = fs.finish_create(req, parent, pfd.get(), name, b, UniqueFd(), e)) {
    fuse_reply_err(req, err);
    return;
  }
  if (over_whiteout) fs.nodes().node(e.ino)->opaque.store(true, std::memory_order_release);
  fuse_reply_entry(req, &e);
}

void rmdir(fuse_req_t req, fuse_ino_t parent_ino, const char* name) {
  Filesystem& fs = fs_of(req);
  if (fs.read_only()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Node* parent = fs.nodes().node(parent_ino);
  if (fs.discard()) {
    fuse_reply_err(req, discard_rmdir(fs, parent, name));
    return;
  }
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
    if (!p.found[b].present) continue;
    const auto bi = static_cast<BranchIndex>(b);
    int err = 0;
    FdLease pfd = fs.dir_fd(parent, bi, false, err);
    if (!pfd ||
        fs.changing(parent, [&] { return ::unlinkat(pfd.get(), name, AT_REMOVEDIR); }) != 0) {
      if (pfd) err = errno;
      for (BranchIndex r : removed) {
        FdLease rfd = fs.dir_fd(parent, r);
        fs.changing(parent,
                    [&] { return ::mkdirat(rfd.get(), name, p.found[r].st.st_mode & 07777); });
        ::fchownat(rfd.get(), name, p.found[r].st.st_uid, p.found[r].st.st_gid,
                   AT_SYMLINK_NOFOLLOW);
      }
      fuse_reply_err(req, err);
      return;
    }
    removed.push_back(bi);
  }
  Filesystem::changed(parent);
  fs.nodes().drop(parent, name);
  fuse_reply_err(req, 0);
}

}  // namespace cachefs::ops

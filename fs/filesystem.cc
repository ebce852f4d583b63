#include "fs/filesystem.h"

#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "fs/backing_watch.h"
#include "fs/dedup.h"
#include "fs/overlay.h"
#include "fs/prefetch.h"

namespace cachefs {
namespace {

// Files whose data the prefetcher reads ahead: the small ones a build opens by
// the thousand. Larger files get the kernel's own read-ahead once read.
constexpr uint64_t kPrefetchFileBytes = 256 * 1024;

std::vector<UniqueFd> open_roots(const RouteTable& routes, const UpperLayer* upper) {
  std::vector<UniqueFd> fds;
  for (size_t b = 0; b < routes.branch_count(); ++b) {
    const std::string& dir = routes.branch_dir(static_cast<BranchIndex>(b));
    UniqueFd fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd) throw UsageError::make("cache directory '{}': {}", dir, std::strerror(errno));
    fds.push_back(std::move(fd));
  }
  if (upper != nullptr) {
    UniqueFd fd(::open(upper->tree.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd) throw UsageError::make("upper directory '{}': {}", upper->tree, std::strerror(errno));
    fds.push_back(std::move(fd));
  }
  return fds;
}

}  // namespace

Filesystem::Filesystem(const MountConfig& cfg)
    : cfg_(cfg),
      routes_(cfg_.routes, cfg_.policy),
      upper_layer_(cfg_.write_mode == WriteMode::kDiscard ? UpperLayer::create(cfg_, routes_)
                                                          : nullptr),
      nodes_(routes_.branch_count() + (upper_layer_ ? 1 : 0),
             open_roots(routes_, upper_layer_.get())) {
  store_ = store::Store::open(cfg_.store_dir, true);
  store_->clean_tmp(std::chrono::hours(1));
  struct stat st {};
  ::fstat(store_->fd(), &st);
  store_ino_ = st.st_ino;
  // Inode numbers are shown as they are when every branch is on one filesystem;
  // otherwise the branch's device gets folded into the high bits so that two
  // branches' files never show the same number (tar and du would take them for
  // hard links).
  std::vector<dev_t> devs;
  for (size_t b = 0; b < slot_count(); ++b) {
    const auto& slot = nodes_.root()->dirs[b];
    const dev_t dev = slot.dev.load(std::memory_order_relaxed);
    auto it = std::find(devs.begin(), devs.end(), dev);
    if (it == devs.end()) {
      devs.push_back(dev);
      it = devs.end() - 1;
    }
    branch_dev_index_.push_back(static_cast<uint64_t>(it - devs.begin()));
  }
  single_device_ = devs.size() == 1;
  // Dedup shares inodes, so it works where a branch and the store are one filesystem.
  // Another process over the same store (a second daemon, cachectl import) may
  // deduplicate a branch's files even where this daemon does not: writes there
  // follow the store's write-lock protocol either way.
  for (size_t b = 0; b < branch_count(); ++b) {
    shares_store_.push_back(cfg_.write_mode == WriteMode::kPassthrough &&
                            nodes_.root()->dirs[b].dev.load(std::memory_order_relaxed) ==
                                store_->dev());
  }
  if (discard()) {
    shares_store_.push_back(false);  // the upper layer: discarded anyway
    upper_layer_->match_root(nodes_.root()->dirs[routes_.default_branch()].slot.lease().get(),
                             nodes_.root()->dirs[upper()].slot.lease().get());
  }
  deduper_ = std::make_unique<Deduper>(*this, cfg_.dedup_delay);
  prefetcher_ = std::make_unique<Prefetcher>(cfg_.prefetch_threads, kPrefetchFileBytes);
  if (::access("/proc/self/fd", R_OK) != 0) {
    throw UsageError("/proc is not mounted: cachefs reopens files through /proc/self/fd");
  }
}

Filesystem::~Filesystem() = default;

bool Filesystem::valid_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.size() <= NAME_MAX &&
         name.find('/') == std::string_view::npos;
}

uint64_t Filesystem::shown_ino(BranchIndex b, const struct stat& st) const {
  if (single_device_) return st.st_ino;
  return static_cast<uint64_t>(st.st_ino) ^ (branch_dev_index_[b] << 56);
}


FdLease Filesystem::dir_fd(Node* dir, BranchIndex b, bool create, int& err) {
  BranchDir& bd = dir->dirs[b];
  const bool up = is_upper(b);
  if (discard() && !up) {
    if (create) {  // the lower layer is never written
      err = EROFS;
      return {};
    }
    if (dir->opaque.load(std::memory_order_acquire)) {  // hidden by the upper directory
      err = ENOENT;
      return {};
    }
  }
  if (FdLease l = bd.slot.lease()) return l;
  // Discard mode: known absent (the upper layer changes only through us; the
  // lower layer is taken as it was when first asked), unless it was made since
  // (a creator publishes after a concurrent lookup may have marked it absent:
  // known wins).
  if (discard() && !create && bd.absent.load(std::memory_order_relaxed) &&
      !bd.known.load(std::memory_order_acquire)) {
    err = ENOENT;
    return {};
  }
  if (dir == nodes_.root()) {  // roots are pinned open: cannot happen
    err = EIO;
    return {};
  }
  ParentRef parent(nodes_, dir);
  FdLease pfd = dir_fd(parent.get(), b, create, err);
  if (!pfd) {
    if (discard() && err == ENOENT) bd.absent.store(true, std::memory_order_relaxed);
    return {};
  }
  const char* name = parent.name().c_str();
  UniqueFd fd(::openat(pfd.get(), name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd && errno == ENOENT && create) {
    // Same mode and owner as the directory shows.
    struct stat shown {};
    mode_t mode = 0755;
    const bool have_shown = getattr(dir, shown) == 0;
    if (have_shown) mode = shown.st_mode & 07777;
    if (changing(parent.get(), [&] { return ::mkdirat(pfd.get(), name, mode); }) != 0 &&
        errno != EEXIST) {
      err = errno;
      return {};
    }
    changed(parent.get());
    fd.reset(::openat(pfd.get(), name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd && have_shown) {
      ::fchownat(fd.get(), "", shown.st_uid, shown.st_gid, AT_EMPTY_PATH);
    }
    if (fd && up) copy_dir_meta(dir, fd.get());
  }
  if (!fd) {
    if (discard() && errno == ENOENT) bd.absent.store(true, std::memory_order_relaxed);
    // ELOOP/ENOTDIR: a symlink or file sits where the directory would be; it is never
    // followed, and the branch simply has no such directory.
    err = errno == ELOOP ? ENOTDIR : errno;
    return {};
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    err = errno;
    return {};
  }
  watch_dir(dir, b, fd.get(), st);
  FdLease l = nodes_.publish_dir_fd(dir, b, std::move(fd), st);
  enforce_fd_budget();
  return l;
}

void Filesystem::set_watch(BackingWatch* w) {
  watch_ = w;
  cfg_.follow_watch(w != nullptr);
  if (w != nullptr) nodes_.on_dir_forgotten([w](const BranchDir& d) { w->unwatch(d); });
}

void Filesystem::watch_found(Node* n, std::span<const NodeTable::Found> found) {
  if (watch_ == nullptr) return;
  for (size_t b = 0; b < found.size() && b < branch_count(); ++b) {
    // The directory found, if it is the one the node shows (its descriptor
    // went into the node's slot) and not marked for it yet.
    const ino_t ino = found[b].st.st_ino;
    if (!found[b].present || n->dirs[b].ino.load(std::memory_order_relaxed) != ino ||
        n->dirs[b].marked.load(std::memory_order_acquire) == ino) {
      continue;
    }
    if (FdLease l = n->dirs[b].slot.lease()) {
      watch_dir(n, static_cast<BranchIndex>(b), l.get(), found[b].st);
    }
  }
}

void Filesystem::watch_dir(Node* n, BranchIndex b, int dir_fd, const struct stat& st) {
  if (watch_ == nullptr || b >= branch_count()) return;
  BranchDir& d = n->dirs[b];
  if (d.marked.load(std::memory_order_acquire) == st.st_ino) return;  // already (likely)
  watch_->watch(d, b, dir_fd, st);
  d.marked.store(st.st_ino, std::memory_order_release);
}

FdLease Filesystem::path_fd(Node* n, FileBacking& f, int& err) {
  if (FdLease l = f.path.lease()) return l;
  ParentRef parent(nodes_, n);
  FdLease pfd = dir_fd(parent.get(), f.branch, false, err);
  if (!pfd) return {};
  UniqueFd fd(::openat(pfd.get(), parent.name().c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0) {
    err = errno == ENOENT ? ESTALE : errno;
    return {};
  }
  if (st.st_dev != f.dev || st.st_ino != f.ino) {
    err = ESTALE;  // the name now holds another file, replaced behind our back
    return {};
  }
  FdLease l = f.path.install(std::move(fd));
  enforce_fd_budget();
  return l;
}

FdLease Filesystem::io_fd(Node* n, FileBacking& f, bool write, int& err) {
  if (write && read_only()) {
    err = EROFS;
    return {};
  }
  if (write && (f.object || f.lower)) {
    err = EIO;  // never written: writers go through begin_write
    return {};
  }
  if (FdLease l = f.rw.lease()) return l;
  if (!write) {
    if (FdLease l = f.ro.lease()) return l;
  }
  FdLease p = path_fd(n, f, err);
  if (!p) return {};
  // Through the magic link (reopen) the open lands on this very inode, a regular file
  // (callers check), so there is no symlink to follow. Read-write when possible so
  // one descriptor serves both; read-only when the inode refuses (busy text file,
  // read-only backing filesystem).
  FdLease l;
  if (!read_only() && !f.object && !f.lower) {
    UniqueFd fd = reopen(p.get(), O_RDWR | O_CLOEXEC);
    if (fd)
      l = f.rw.install(std::move(fd));
    else if (write)
      err = errno;
  }
  if (!l && !write) {
    UniqueFd fd = reopen(p.get(), O_RDONLY | O_CLOEXEC);
    if (fd)
      l = f.ro.install(std::move(fd));
    else
      err = errno;
  }
  if (l) enforce_fd_budget();
  return l;
}

void Filesystem::pin_before_removal(Node* parent, std::string_view name) {
  Node* victim = nodes_.find(parent, name);
  if (victim == nullptr) return;
  if (!victim->is_dir()) {
    const auto f = victim->backing();
    int err;
    if (FdLease l = path_fd(victim, *f, err)) f->path.pin();
  }
  nodes_.forget(victim, 1);
}

void Filesystem::enforce_fd_budget() {
  const int64_t open = FdSlot::open_count();
  if (open <= fd_budget) {
    if (evict_floor_.load(std::memory_order_relaxed) != 0) evict_floor_.store(0, std::memory_order_relaxed);
    return;
  }
  // A pass scans every node. When the last one could not get under budget (the
  // descriptors are in use, or pinned to unlinked files that are still open or
  // queued for dedup), scanning again at every open finds the same ones: rm -rf
  // right after a large untar spent 70% of the daemon's time here and took 4x
  // as long. Wait until enough new descriptors are open to be worth a pass.
  if (open <= evict_floor_.load(std::memory_order_relaxed) + fd_budget / 8) return;
  // One thread evicts; the others go on (a little over budget meanwhile).
  std::unique_lock lock(evict_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return;
  const int64_t target = fd_budget * 3 / 4;
  nodes_.evict_idle(target);
  const int64_t left = FdSlot::open_count();
  evict_floor_.store(left > fd_budget ? left : 0, std::memory_order_relaxed);
}

int Filesystem::probe(Node* parent, std::string_view name, Probe& out, bool all_branches) {
  out.found.resize(slot_count());
  if (!discard()) return probe_lower(parent, name, out, all_branches);
  // The upper layer first: an entry there is what the name is (a whiteout: it
  // is nothing); the lower layer shows through only under an upper directory
  // that is not opaque, and only where it is a directory too.
  const BranchIndex u = upper();
  auto& up = out.found[u];
  up.present = false;
  up.fd.reset();
  out.whiteout = out.opaque = false;
  int err = 0;
  const std::string cname(name);
  if (FdLease ufd = dir_fd(parent, u, false, err)) {
    if (::fstatat(ufd.get(), cname.c_str(), &up.st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (is_whiteout(up.st)) {
        out.whiteout = true;
      } else {
        up.present = true;
        if (S_ISDIR(up.st.st_mode)) {
          UniqueFd d(::openat(ufd.get(), cname.c_str(),
                              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
          char v;
          out.opaque = d && ::fgetxattr(d.get(), kOpaqueXattr, &v, 1) >= 0;
        }
      }
    } else if (!absent_errno(errno)) {
      return errno;
    }
  } else if (!absent_errno(err)) {
    return err;
  }
  if (out.whiteout) {
    for (size_t b = 0; b < branch_count(); ++b) out.found[b].present = false;
    out.lower = out.res = Resolution{};
    return ENOENT;
  }
  const int lerr = probe_lower(parent, name, out, all_branches || up.present);
  out.lower = out.res;
  if (!up.present) return lerr;
  if (S_ISDIR(up.st.st_mode)) {
    out.res = {Resolution::kDirectory, 0};
    if (out.opaque || out.lower.kind != Resolution::kDirectory) {
      for (size_t b = 0; b < branch_count(); ++b) out.found[b].present = false;
    }
  } else {
    out.res = {Resolution::kFile, u};
  }
  return 0;
}

int Filesystem::probe_lower(Node* parent, std::string_view name, Probe& out, bool all_branches) {
  const size_t nb = branch_count();
  for (size_t b = 0; b < nb; ++b) {  // the upper slot is probe()'s
    out.found[b].present = false;
    out.found[b].fd.reset();
  }
  std::array<bool, kMaxBranches> asked{};
  int failure = 0;  // a branch that could not be looked at (EMFILE, EIO, ...)
  const std::string cname(name);
  auto presence = [&](BranchIndex b) -> Presence {
    asked[b] = true;
    int err;
    FdLease pfd = dir_fd(parent, b, false, err);
    if (!pfd) {
      if (!absent_errno(err)) failure = err;
      return Presence::kAbsent;
    }
    // One name component, never followed: as safe as an open, and nothing to
    // close. Descriptors are opened when an operation needs one.
    struct stat& st = out.found[b].st;
    if (::fstatat(pfd.get(), cname.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (!absent_errno(errno)) failure = errno;
      return Presence::kAbsent;
    }
    if (is_store(st)) return Presence::kAbsent;
    out.found[b].present = true;
    return S_ISDIR(st.st_mode) ? Presence::kDirectory : Presence::kOther;
  };
  Candidates c;
  routes_.candidates(nodes_.child_path(parent, name, false), c);
  out.res = resolve(c, routes_.policy(), nb, presence);
  if (out.res.kind == Resolution::kDirectory || all_branches) {
    for (size_t b = 0; b < nb; ++b) {
      if (!asked[b]) presence(static_cast<BranchIndex>(b));
    }
  }
  if (out.res.kind == Resolution::kDirectory) {
    // Only the directories make up the union.
    for (size_t b = 0; b < nb; ++b) {
      if (out.found[b].present && !S_ISDIR(out.found[b].st.st_mode)) out.found[b].present = false;
    }
  }
  if (out.res.kind == Resolution::kNone) return failure ? failure : ENOENT;
  return 0;
}

int Filesystem::lookup(Node* parent, std::string_view name, fuse_entry_param& e) {
  if (!valid_name(name)) return name.size() > NAME_MAX ? ENAMETOOLONG : ENOENT;
  Probe p;
  if (int err = probe(parent, name, p, false)) return err;
  Node* n;
  struct stat st {};
  if (p.res.kind == Resolution::kFile) {
    const BranchIndex b = p.res.branch;
    st = p.found[b].st;
    // Several links on the store's filesystem: a path of a shared object (its own
    // file to the user), or a hard link a user made (one node for all its names).
    bool object = false;
    const bool lower = discard() && b != upper();
    UniqueFd path;
    if (S_ISREG(st.st_mode) && st.st_nlink > 1 && st.st_dev == store_->dev() && !is_upper(b)) {
      int err = 0;
      FdLease pfd = dir_fd(parent, b, false, err);
      if (pfd) path.reset(::openat(pfd.get(), std::string(name).c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
      struct stat now {};
      if (path && ::fstat(path.get(), &now) == 0 && now.st_ino == st.st_ino) {
        object = store::object_name(path.get(), now, store_->dev()).has_value();
      } else {
        path.reset();
      }
    }
    auto backing = std::make_shared<FileBacking>(b, st, object, lower);
    if (path) backing->path.install(std::move(path));
    // A lower file's names are separate files here: each is copied up on its own.
    n = nodes_.intern_file(parent, name, std::move(backing), object || lower ? 1 : st.st_nlink);
    if (object && n->fixed_ino.load(std::memory_order_relaxed) == 0) {
      n->fixed_ino.store(object_path_ino(parent, b, name, st), std::memory_order_relaxed);
    }
  } else {
    // Primary: the first candidate holding the directory, else the first branch.
    Candidates c;
    routes_.candidates(nodes_.child_path(parent, name, true), c);
    int primary = -1;
    for (BranchIndex b : c) {
      if (p.found[b].present) {
        primary = b;
        break;
      }
    }
    for (size_t b = 0; primary < 0 && b < p.found.size(); ++b) {
      if (p.found[b].present) primary = static_cast<int>(b);
    }
    n = nodes_.intern_dir(parent, name, p.found, static_cast<BranchIndex>(primary));
    watch_found(n, p.found);
    if (p.opaque) n->opaque.store(true, std::memory_order_release);
  }
  return entry_for(n, e);
}

int Filesystem::entry_for(Node* n, fuse_entry_param& e) {
  enforce_fd_budget();
  struct stat st {};
  if (int err = getattr(n, st)) {
    nodes_.forget(n, 1);
    return err;
  }
  fill_entry(n, st, e);
  return 0;
}

int Filesystem::getattr(Node* n, struct stat& st) {
  if (!n->is_dir()) {
    const auto f = n->backing();
    if (FdLease fd = f->path.lease()) {
      if (::fstatat(fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
    } else if (FdLease data = f->rw.lease()) {
      if (::fstat(data.get(), &st) != 0) return errno;
    } else {
      // No descriptor at hand: stat the name (one component, not followed) and make
      // sure it is still this inode, rather than open one just to stat it.
      int err = 0;
      ParentRef parent(nodes_, n);
      FdLease pfd = dir_fd(parent.get(), f->branch, false, err);
      if (!pfd) return err == ENOENT ? ESTALE : err;
      if (::fstatat(pfd.get(), parent.name().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
          st.st_dev != f->dev || st.st_ino != f->ino) {
        // Renamed or replaced behind our back, or unlinked (then pinned, so the
        // leases above succeed): ask the descriptor path.
        FdLease p = path_fd(n, *f, err);
        if (!p) return err;
        if (::fstatat(p.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
      }
    }
    if (f->object) st.st_nlink = 1;  // the other links are other paths' business
    const uint64_t fixed = n->fixed_ino.load(std::memory_order_relaxed);
    st.st_ino = fixed != 0 ? fixed : shown_ino(f->branch, st);
    return 0;
  }
  // A union directory shows its primary branch's attributes, with the newest
  // mtime/ctime of all its branches (so the kernel's readdir cache notices a change
  // in any of them) and, when it spans branches, a link count of 1 ("unknown" to
  // find(1), which must not use the leaf optimisation on a union).
  const BranchIndex primary = shown_branch(n);
  bool have = false;
  int spans = 0;
  for (size_t b = 0; b < slot_count(); ++b) {
    if (!n->dirs[b].known.load(std::memory_order_acquire)) continue;
    FdLease fd = dir_fd(n, static_cast<BranchIndex>(b));
    struct stat bs {};
    if (!fd || ::fstat(fd.get(), &bs) != 0) continue;
    ++spans;
    if (!have || b == primary) {
      const auto mt = have ? st.st_mtim : bs.st_mtim;
      const auto ct = have ? st.st_ctim : bs.st_ctim;
      st = bs;
      st.st_ino = shown_ino(static_cast<BranchIndex>(b), bs);
      if (have) {
        st.st_mtim = mt;
        st.st_ctim = ct;
      }
      have = true;
    }
    auto newer = [](const timespec& a, const timespec& c) {
      return a.tv_sec != c.tv_sec ? a.tv_sec > c.tv_sec : a.tv_nsec > c.tv_nsec;
    };
    if (newer(bs.st_mtim, st.st_mtim)) st.st_mtim = bs.st_mtim;
    if (newer(bs.st_ctim, st.st_ctim)) st.st_ctim = bs.st_ctim;
  }
  if (!have) return ENOENT;
  if (spans > 1) st.st_nlink = 1;
  return 0;
}

void Filesystem::fill_entry(Node* n, const struct stat& st, fuse_entry_param& e) const {
  e = fuse_entry_param{};
  e.ino = const_cast<NodeTable&>(nodes_).ino(n);
  e.attr = st;
  e.attr_timeout = cfg_.attr_timeout;
  e.entry_timeout = cfg_.entry_timeout;
}

UniqueFd Filesystem::open_dir(Node* dir, BranchIndex b, int& err) {
  FdLease fd = dir_fd(dir, b, false, err);
  if (!fd) return UniqueFd();
  UniqueFd real(::openat(fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!real) err = errno;
  return real;
}

int Filesystem::prepare_create(Node* parent, std::string_view name, bool is_dir,
                               BranchIndex& branch, FdLease& parent_fd, bool* over_whiteout) {
  if (read_only()) return EROFS;
  if (!valid_name(name)) return name.size() > NAME_MAX ? ENAMETOOLONG : EINVAL;
  if (discard()) {
    // Everything new goes to the upper layer, over a whiteout if one hides a
    // deleted lower entry of that name.
    branch = upper();
    int err = 0;
    parent_fd = dir_fd(parent, branch, true, err);
    if (!parent_fd) return err;
    const bool had = take_whiteout(parent_fd.get(), std::string(name).c_str());
    if (over_whiteout != nullptr) *over_whiteout = had;
    return 0;
  }
  branch = routes_.create_branch(nodes_.child_path(parent, name, is_dir));
  int err = 0;
  parent_fd = dir_fd(parent, branch, true, err);
  if (!parent_fd) return err;
  if (parent == nodes_.root() && branch == routes_.default_branch()) {
    // The store, when it lives in the default directory, is not part of the view.
    struct stat st {};
    if (::fstatat(parent_fd.get(), std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        is_store(st)) {
      return EPERM;
    }
  }
  return 0;
}

void Filesystem::chown_to_caller(fuse_req_t req, int fd, struct stat& st) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  // The daemon creates as itself; the entry must belong to the caller. A group
  // other than ours means the backing directory is setgid: keep that group.
  static const gid_t ours = ::getegid();  // the daemon never changes its ids
  const gid_t gid = st.st_gid == ours ? ctx->gid : st.st_gid;
  if (st.st_uid == ctx->uid && st.st_gid == gid) return;
  if (::fchownat(fd, "", ctx->uid, gid, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) == 0) {
    // chown clears set-id bits of a regular file, as the kernel would.
    ::fstat(fd, &st);
  }
}

int Filesystem::finish_create(fuse_req_t req, Node* parent, int parent_fd, std::string_view name,
                              BranchIndex branch, UniqueFd rw, fuse_entry_param& e) {
  // A file `create` opened is reached through that descriptor; anything else is
  // opened (O_PATH) by name.
  const bool writable = static_cast<bool>(rw);
  UniqueFd fd = rw ? std::move(rw)
                   : UniqueFd(::openat(parent_fd, std::string(name).c_str(),
                                       O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return errno;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno;
  chown_to_caller(req, fd.get(), st);
  changed(parent);
  Node* n;
  if (S_ISDIR(st.st_mode)) {
    std::vector<NodeTable::Found> found(slot_count());
    found[branch].present = true;
    found[branch].fd = std::move(fd);
    found[branch].st = st;
    n = nodes_.intern_dir(parent, name, found, branch);
    watch_found(n, found);
    if (discard()) {
      // Made in the upper layer where nothing was: no lower directory to ask for.
      for (size_t b = 0; b < branch_count(); ++b) {
        if (!n->dirs[b].known.load(std::memory_order_acquire)) {
          n->dirs[b].absent.store(true, std::memory_order_relaxed);
        }
      }
    }
  } else {
    auto f = std::make_shared<FileBacking>(branch, st);
    (writable ? f->rw : f->path).install(std::move(fd));
    n = nodes_.intern_file(parent, name, std::move(f), st.st_nlink);
    st.st_ino = shown_ino(branch, st);
    enforce_fd_budget();
    fill_entry(n, st, e);
    return 0;
  }
  return entry_for(n, e);
}

}  // namespace cachefs

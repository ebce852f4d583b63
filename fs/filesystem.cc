#include "fs/filesystem.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace cachefs {
namespace {

std::vector<UniqueFd> open_roots(const RouteTable& routes) {
  std::vector<UniqueFd> fds;
  for (size_t b = 0; b < routes.branch_count(); ++b) {
    const std::string& dir = routes.branch_dir(static_cast<BranchIndex>(b));
    UniqueFd fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd) throw UsageError::make("cache directory '{}': {}", dir, std::strerror(errno));
    fds.push_back(std::move(fd));
  }
  return fds;
}

}  // namespace

Filesystem::Filesystem(const MountConfig& cfg)
    : cfg_(cfg),
      routes_(cfg_.routes, cfg_.policy),
      root_fds_(open_roots(routes_)),
      nodes_(routes_.branch_count(), root_fds_) {
  store_fd_.reset(::open(cfg_.store_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!store_fd_) throw UsageError::make("--store '{}': {}", cfg_.store_dir, std::strerror(errno));
  struct stat st {};
  ::fstat(store_fd_.get(), &st);
  store_dev_ = st.st_dev;
  store_ino_ = st.st_ino;
  // Inode numbers are shown as they are when every branch is on one filesystem;
  // otherwise the branch's device gets folded into the high bits so that two
  // branches' files never show the same number (tar and du would take them for
  // hard links).
  std::vector<dev_t> devs;
  for (size_t b = 0; b < branch_count(); ++b) {
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
  if (::access("/proc/self/fd", R_OK) != 0) {
    throw UsageError("/proc is not mounted: cachefs reopens files through /proc/self/fd");
  }
}

bool Filesystem::valid_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.size() <= NAME_MAX &&
         name.find('/') == std::string_view::npos;
}

uint64_t Filesystem::shown_ino(BranchIndex b, const struct stat& st) const {
  if (single_device_) return st.st_ino;
  return static_cast<uint64_t>(st.st_ino) ^ (branch_dev_index_[b] << 56);
}

int Filesystem::dir_fd(Node* dir, BranchIndex b, bool create) {
  const int have = dir->dirs[b].fd.load(std::memory_order_acquire);
  if (have >= 0) return have;
  if (dir == nodes_.root()) return -ENOENT;  // cannot happen: roots are always open
  std::string name;
  Node* parent = nodes_.get_parent(dir, name);
  const int pfd = dir_fd(parent, b, create);
  struct ParentRef {
    NodeTable& t;
    Node* p;
    ~ParentRef() { t.put_parent(p); }
  } ref{nodes_, parent};
  if (pfd < 0) return pfd;
  UniqueFd fd(::openat(pfd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd && errno == ENOENT && create) {
    // Same mode as the directory shows; ownership follows below.
    struct stat shown {};
    const int pf = dir->dirs[dir->primary.load()].fd.load(std::memory_order_acquire);
    mode_t mode = 0755;
    if (pf >= 0 && ::fstat(pf, &shown) == 0) mode = shown.st_mode & 07777;
    if (::mkdirat(pfd, name.c_str(), mode) != 0 && errno != EEXIST) return -errno;
    fd.reset(::openat(pfd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd && pf >= 0) {
      ::fchownat(fd.get(), "", shown.st_uid, shown.st_gid, AT_EMPTY_PATH);
    }
  }
  if (!fd) {
    // ELOOP/ENOTDIR: a symlink or file sits where the directory would be; it is never
    // followed, and the branch simply has no such directory.
    return errno == ELOOP ? -ENOTDIR : -errno;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return -errno;
  return nodes_.publish_dir_fd(dir, b, std::move(fd), st);
}

int Filesystem::probe(Node* parent, std::string_view name, Probe& out, bool all_branches) {
  const size_t nb = branch_count();
  out.found.resize(nb);
  for (auto& f : out.found) f.fd.reset();
  std::vector<bool> asked(nb, false);
  const std::string cname(name);
  auto presence = [&](BranchIndex b) -> Presence {
    asked[b] = true;
    const int pfd = dir_fd(parent, b, false);
    if (pfd < 0) return Presence::kAbsent;
    UniqueFd fd(::openat(pfd, cname.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return Presence::kAbsent;
    struct stat& st = out.found[b].st;
    if (::fstat(fd.get(), &st) != 0 || is_store(st)) return Presence::kAbsent;
    out.found[b].fd = std::move(fd);
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
      if (out.found[b].fd.valid() && !S_ISDIR(out.found[b].st.st_mode)) out.found[b].fd.reset();
    }
  }
  return out.res.kind == Resolution::kNone ? ENOENT : 0;
}

int Filesystem::lookup(Node* parent, std::string_view name, fuse_entry_param& e) {
  if (!valid_name(name)) return name.size() > NAME_MAX ? ENAMETOOLONG : ENOENT;
  Probe p;
  if (int err = probe(parent, name, p, false)) return err;
  Node* n;
  struct stat st {};
  if (p.res.kind == Resolution::kFile) {
    st = p.found[p.res.branch].st;
    n = nodes_.intern_file(
        parent, name,
        std::make_shared<FileBacking>(p.res.branch, std::move(p.found[p.res.branch].fd), false, st),
        st.st_nlink);
  } else {
    // Primary: the first candidate holding the directory, else the first branch.
    Candidates c;
    routes_.candidates(nodes_.child_path(parent, name, true), c);
    int primary = -1;
    for (BranchIndex b : c) {
      if (p.found[b].fd.valid()) {
        primary = b;
        break;
      }
    }
    for (size_t b = 0; primary < 0 && b < p.found.size(); ++b) {
      if (p.found[b].fd.valid()) primary = static_cast<int>(b);
    }
    n = nodes_.intern_dir(parent, name, p.found, static_cast<BranchIndex>(primary));
  }
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
    if (::fstatat(f->fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
    st.st_ino = shown_ino(f->branch, st);
    return 0;
  }
  // A union directory shows its primary branch's attributes, with the newest
  // mtime/ctime of all its branches (so the kernel's readdir cache notices a change
  // in any of them) and, when it spans branches, a link count of 1 ("unknown" to
  // find(1), which must not use the leaf optimisation on a union).
  const BranchIndex primary = n->primary.load(std::memory_order_relaxed);
  bool have = false;
  int spans = 0;
  for (size_t b = 0; b < branch_count(); ++b) {
    const int fd = n->dirs[b].fd.load(std::memory_order_acquire);
    if (fd < 0) continue;
    struct stat bs {};
    if (::fstat(fd, &bs) != 0) continue;
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

int Filesystem::io_fd(FileBacking& n, bool write) {
  if (write && read_only()) return -EROFS;
  if (n.fd_writable) return n.fd.get();
  int fd = n.rw.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  if (!write && (fd = n.ro.load(std::memory_order_acquire)) >= 0) return fd;
  std::lock_guard lock(n.io_mu);
  if ((fd = n.rw.load(std::memory_order_acquire)) >= 0) return fd;
  if (!write && (fd = n.ro.load(std::memory_order_acquire)) >= 0) return fd;
  char proc[64];
  std::snprintf(proc, sizeof proc, "/proc/self/fd/%d", n.fd.get());
  // Through the magic link the open lands on the node's own inode, a regular file
  // (callers check), so there is no symlink to follow. Read-write when possible so
  // one descriptor serves both; read-only when the inode refuses (busy text file,
  // read-only backing filesystem).
  if (!read_only()) {
    fd = ::open(proc, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
      n.rw.store(fd, std::memory_order_release);
      return fd;
    }
    if (write) return -errno;
  }
  fd = ::open(proc, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  n.ro.store(fd, std::memory_order_release);
  return fd;
}

UniqueFd Filesystem::open_dir(Node* dir, BranchIndex b, int flags) {
  const int fd = dir->dirs[b].fd.load(std::memory_order_acquire);
  if (fd < 0) return UniqueFd();
  return UniqueFd(::openat(fd, ".", flags | O_DIRECTORY | O_CLOEXEC));
}

int Filesystem::prepare_create(Node* parent, std::string_view name, bool is_dir,
                               BranchIndex& branch, int& parent_fd) {
  if (read_only()) return EROFS;
  if (!valid_name(name)) return name.size() > NAME_MAX ? ENAMETOOLONG : EINVAL;
  branch = routes_.create_branch(nodes_.child_path(parent, name, is_dir));
  if (parent == nodes_.root() && branch == routes_.default_branch()) {
    // The store, when it lives in the default directory, is not part of the view.
    struct stat st {};
    if (::fstatat(dir_fd(parent, branch, false), std::string(name).c_str(), &st,
                  AT_SYMLINK_NOFOLLOW) == 0 &&
        is_store(st)) {
      return EPERM;
    }
  }
  parent_fd = dir_fd(parent, branch, true);
  return parent_fd < 0 ? -parent_fd : 0;
}

void Filesystem::chown_to_caller(fuse_req_t req, int fd, const char* name, const struct stat& st) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  // The daemon creates as itself; the entry must belong to the caller. A group
  // other than ours means the backing directory is setgid: keep that group.
  const gid_t gid = st.st_gid == ::getegid() ? ctx->gid : st.st_gid;
  if (st.st_uid == ctx->uid && st.st_gid == gid) return;
  ::fchownat(fd, name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW | (name[0] ? 0 : AT_EMPTY_PATH));
}

int Filesystem::finish_create(fuse_req_t req, Node* parent, int parent_fd, std::string_view name,
                              BranchIndex branch, UniqueFd fd, bool fd_writable,
                              fuse_entry_param& e) {
  const std::string cname(name);
  if (!fd) fd.reset(::openat(parent_fd, cname.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return errno;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno;
  chown_to_caller(req, fd.get(), "", st);
  changed(parent);
  Node* n;
  if (S_ISDIR(st.st_mode)) {
    std::vector<NodeTable::Found> found(branch_count());
    found[branch].fd = std::move(fd);
    found[branch].st = st;
    n = nodes_.intern_dir(parent, name, found, branch);
  } else {
    n = nodes_.intern_file(parent, name,
                           std::make_shared<FileBacking>(branch, std::move(fd), fd_writable, st),
                           st.st_nlink);
  }
  if (int err = getattr(n, st)) {
    nodes_.forget(n, 1);
    return err;
  }
  fill_entry(n, st, e);
  return 0;
}

}  // namespace cachefs

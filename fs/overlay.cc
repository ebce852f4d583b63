// Discard mode: the upper layer, copy-up, whiteouts, opaque directories and the
// report of what a mount threw away. See overlay.h for the on-disk layout.
#include "fs/overlay.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "common/units.h"
#include "fs/filesystem.h"
#include "fs/ops.h"
#include "store/object_store.h"

namespace cachefs {
namespace {

constexpr std::string_view kReservedPrefix = "trusted.cachefs.";
constexpr const char* kKeptMarker = "kept";

// Copies the first `len` bytes of `src` into `dst` (empty, same length after):
// a reflink where the filesystem has them, else holes kept as holes and the
// data copied in the kernel (copy_file_range) where it can be.
int copy_data(int src, int dst, uint64_t len, uint64_t src_size) {
  // A whole file on a filesystem with reflinks (btrfs, XFS): share the blocks.
  if (len == src_size && len > 0 && ::ioctl(dst, FICLONE, src) == 0) return 0;
  const auto end = static_cast<off_t>(len);
  off_t pos = 0;
  std::vector<char> buf;
  while (pos < end) {
    off_t data = ::lseek(src, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      data = pos;                 // no SEEK_DATA here: copy everything
    }
    if (data >= end) break;
    off_t hole = ::lseek(src, data, SEEK_HOLE);
    if (hole < 0 || hole > end) hole = end;
    loff_t in = data, out = data;
    while (in < hole) {
      const ssize_t n = ::copy_file_range(src, &in, dst, &out, static_cast<size_t>(hole - in), 0);
      if (n > 0) continue;
      if (n == 0) break;  // shorter than it said
      if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) return errno;
      // Another filesystem that will not copy across: by hand.
      buf.resize(1 << 20);
      const ssize_t r = ::pread(src, buf.data(), std::min<size_t>(buf.size(), hole - in), in);
      if (r < 0) return errno;
      if (r == 0) break;
      if (::pwrite(dst, buf.data(), static_cast<size_t>(r), out) != r) return errno ? errno : EIO;
      in += r;
      out += r;
    }
    pos = hole;
  }
  return ::ftruncate(dst, end) == 0 ? 0 : errno;
}

// Copies the user-visible extended attributes of `src` to `dst` (real fds).
void copy_xattrs(int src, int dst) {
  std::vector<char> names(4096);
  ssize_t len;
  while ((len = ::flistxattr(src, names.data(), names.size())) < 0 && errno == ERANGE) {
    names.resize(names.size() * 4);
  }
  std::vector<char> value;
  for (ssize_t i = 0; i < len;) {
    const char* name = names.data() + i;
    i += static_cast<ssize_t>(std::strlen(name)) + 1;
    if (std::string_view(name).starts_with(kReservedPrefix)) continue;
    const ssize_t vl = ::fgetxattr(src, name, nullptr, 0);
    if (vl < 0) continue;
    value.resize(static_cast<size_t>(vl) + 1);
    const ssize_t got = ::fgetxattr(src, name, value.data(), value.size());
    if (got >= 0) ::fsetxattr(dst, name, value.data(), static_cast<size_t>(got), 0);
  }
}

void remove_contents(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::filesystem::remove_all(e.path(), ec);
    if (ec) spdlog::warn("could not remove {}: {}", e.path().string(), ec.message());
  }
}

struct UpperTally {
  uint64_t created = 0, changed = 0, deleted = 0, bytes = 0, dirs = 0;
};

void tally(int dirfd, UpperTally& t, int depth) {
  if (depth > 4096) return;
  UniqueFd fd(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* dp = fd ? ::fdopendir(fd.get()) : nullptr;
  if (dp == nullptr) return;
  fd.release();
  while (dirent* de = ::readdir(dp)) {
    const std::string_view name(de->d_name);
    if (name == "." || name == "..") continue;
    struct stat st {};
    if (::fstatat(::dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      ++t.dirs;
      UniqueFd sub(::openat(::dirfd(dp), de->d_name,
                            O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub) tally(sub.get(), t, depth + 1);
      continue;
    }
    if (Filesystem::is_whiteout(st)) {
      ++t.deleted;
      continue;
    }
    const std::string path = std::string(ProcFdPath(::dirfd(dp)).c_str()) + "/" + de->d_name;
    char v;
    const bool origin = ::lgetxattr(path.c_str(), kOriginXattr, &v, 1) >= 0;
    ++(origin ? t.changed : t.created);
    if (S_ISREG(st.st_mode)) t.bytes += static_cast<uint64_t>(st.st_size);
  }
  ::closedir(dp);
}

}  // namespace

// ---- the layer itself ----

std::unique_ptr<UpperLayer> UpperLayer::create(const MountConfig& cfg, const RouteTable& routes) {
  if (routes.branch_count() >= kMaxBranches) {
    throw UsageError::make("--write-mode discard: at most {} cache directories", kMaxBranches - 1);
  }
  auto u = std::make_unique<UpperLayer>();
  u->keep = cfg.keep_upper;
  if (!cfg.upper_dir.empty()) {
    u->tree = cfg.upper_dir;
    u->lock.reset(::open(u->tree.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!u->lock || ::flock(u->lock.get(), LOCK_EX | LOCK_NB) != 0) {
      throw UsageError::make("--upper '{}': {}", u->tree,
                             errno == EWOULDBLOCK ? "in use by another mount" : std::strerror(errno));
    }
    return u;
  }
  // The store first: its directory must be one (or empty) before we add to it.
  store::Store::open(cfg.store_dir, true);
  const std::string base = cfg.store_dir + "/upper";
  if (::mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) {
    throw UsageError::make("--store '{}': cannot make {}: {}", cfg.store_dir, base,
                           std::strerror(errno));
  }
  // Layers of mounts that died (nobody holds their lock) and were not kept.
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(base, ec)) {
    UniqueFd d(::open(e.path().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!d || ::flock(d.get(), LOCK_EX | LOCK_NB) != 0) continue;
    if (::faccessat(d.get(), kKeptMarker, F_OK, AT_SYMLINK_NOFOLLOW) == 0) continue;
    std::filesystem::remove_all(e.path(), ec);
    if (!ec) spdlog::info("removed the upper layer of a discard mount that died: {}", e.path().string());
  }
  std::string tmpl = base + "/XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw UsageError::make("--store '{}': cannot make an upper directory: {}", cfg.store_dir,
                           std::strerror(errno));
  }
  u->holder = tmpl;
  u->lock.reset(::open(u->holder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!u->lock || ::flock(u->lock.get(), LOCK_EX) != 0) {
    throw UsageError::make("upper directory '{}': {}", u->holder, std::strerror(errno));
  }
  u->tree = u->holder + "/tree";
  if (::mkdir(u->tree.c_str(), 0755) != 0) {
    throw UsageError::make("upper directory '{}': {}", u->tree, std::strerror(errno));
  }
  return u;
}

void UpperLayer::match_root(int lower_root, int upper_root) const {
  struct stat st {};
  if (::fstat(lower_root, &st) != 0) return;
  ::fchownat(upper_root, "", st.st_uid, st.st_gid, AT_EMPTY_PATH);
  ::chmod(ProcFdPath(upper_root).c_str(), st.st_mode & 07777);
  const timespec times[2] = {st.st_atim, st.st_mtim};
  ::utimensat(upper_root, "", times, AT_EMPTY_PATH);
  UniqueFd lo(::openat(lower_root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  UniqueFd up(::openat(upper_root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (lo && up) copy_xattrs(lo.get(), up.get());
}

void UpperLayer::finish() {
  if (keep) {
    if (!holder.empty()) std::ofstream(holder + "/" + kKeptMarker) << "kept by --keep-upper\n";
    return;
  }
  if (holder.empty()) {
    remove_contents(tree);  // --upper DIR: the directory was the user's
  } else {
    std::error_code ec;
    std::filesystem::remove_all(holder, ec);
    if (ec) spdlog::warn("could not remove the upper layer {}: {}", holder, ec.message());
  }
}

// ---- whiteouts and opaque directories ----

int Filesystem::make_whiteout(int ufd, const char* name) {
  return ::mknodat(ufd, name, S_IFCHR | 0, makedev(0, 0)) == 0 ? 0 : errno;
}

bool Filesystem::take_whiteout(int ufd, const char* name) {
  struct stat st {};
  if (::fstatat(ufd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !is_whiteout(st)) return false;
  return ::unlinkat(ufd, name, 0) == 0;
}

int Filesystem::set_opaque(int ufd, const char* name) {
  UniqueFd d(::openat(ufd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!d) return errno;
  return ::fsetxattr(d.get(), kOpaqueXattr, "y", 1, 0) == 0 ? 0 : errno;
}

void Filesystem::copy_dir_meta(Node* dir, int upper_fd) {
  const BranchIndex lower = dir->primary.load(std::memory_order_relaxed);
  if (is_upper(lower)) return;
  int err = 0;
  UniqueFd lo = open_dir(dir, lower, err);
  UniqueFd up(::openat(upper_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  struct stat st {};
  if (!lo || !up || ::fstat(lo.get(), &st) != 0) return;
  copy_xattrs(lo.get(), up.get());
  const timespec times[2] = {st.st_atim, st.st_mtim};
  ::futimens(up.get(), times);
}

// ---- copy-up ----

int Filesystem::copy_up(Node* n, uint64_t keep) {
  const auto f = n->backing();
  if (!f->lower) return 0;  // another writer was first
  int err = 0;
  FdLease src_path = path_fd(n, *f, err);
  if (!src_path) return err;
  struct stat st {};
  if (::fstatat(src_path.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
  ParentRef parent(nodes_, n);
  if (parent.get() == nullptr) return ESTALE;
  FdLease ufd = dir_fd(parent.get(), upper(), true, err);
  if (!ufd) return err;
  const char* name = parent.name().c_str();
  // The copy takes the name only if the upper layer has nothing there; a
  // whiteout means the name was deleted while the file stayed open: the copy
  // stays nameless, for whoever still has it.
  struct stat there {};
  const bool named = ::fstatat(ufd.get(), name, &there, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT;
  auto nb = std::shared_ptr<FileBacking>();
  if (S_ISREG(st.st_mode)) {
    FdLease src = io_fd(n, *f, false, err);
    if (!src) return err;
    UniqueFd copy(::openat(ufd.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
    if (!copy) return errno;
    const uint64_t len = std::min<uint64_t>(keep, static_cast<uint64_t>(st.st_size));
    if ((err = copy_data(src.get(), copy.get(), len, static_cast<uint64_t>(st.st_size))) != 0) {
      return err;
    }
    copy_xattrs(src.get(), copy.get());
    ::fsetxattr(copy.get(), kOriginXattr, "1", 1, 0);  // for the report; optional
    const timespec times[2] = {st.st_atim, st.st_mtim};
    if (::fchown(copy.get(), st.st_uid, st.st_gid) != 0 ||
        ::fchmod(copy.get(), st.st_mode & 07777) != 0 || ::futimens(copy.get(), times) != 0) {
      return errno;
    }
    if (named && ::linkat(AT_FDCWD, ProcFdPath(copy.get()).c_str(), ufd.get(), name,
                          AT_SYMLINK_FOLLOW) != 0) {
      return errno;
    }
    struct stat cst {};
    if (::fstat(copy.get(), &cst) != 0) return errno;
    nb = std::make_shared<FileBacking>(upper(), cst);
    if (!named) {
      nb->path.install(reopen(copy.get(), O_PATH | O_CLOEXEC));
      nb->path.pin();
    }
    nb->rw.install(std::move(copy));
    if (!named) nb->rw.pin();
  } else {
    // A symlink or special file: no data, made in place.
    if (!named) return ESTALE;
    if (S_ISLNK(st.st_mode)) {
      std::vector<char> target(static_cast<size_t>(st.st_size) + 1);
      const ssize_t l = ::readlinkat(src_path.get(), "", target.data(), target.size());
      if (l < 0) return errno;
      target[static_cast<size_t>(l)] = '\0';
      if (::symlinkat(target.data(), ufd.get(), name) != 0) return errno;
    } else if (::mknodat(ufd.get(), name, st.st_mode, st.st_rdev) != 0) {
      return errno;
    }
    UniqueFd p(::openat(ufd.get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!p) return errno;
    ::fchownat(p.get(), "", st.st_uid, st.st_gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    if (!S_ISLNK(st.st_mode)) ::chmod(ProcFdPath(p.get()).c_str(), st.st_mode & 07777);
    const timespec times[2] = {st.st_atim, st.st_mtim};
    ::utimensat(p.get(), "", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    struct stat cst {};
    if (::fstat(p.get(), &cst) != 0) return errno;
    nb = std::make_shared<FileBacking>(upper(), cst);
    nb->path.install(std::move(p));
  }
  // The inode number the file has shown so far stays its own.
  if (n->fixed_ino.load(std::memory_order_relaxed) == 0) {
    n->fixed_ino.store(shown_ino(f->branch, st), std::memory_order_relaxed);
  }
  n->set_backing(std::move(nb));
  changed(parent.get());
  enforce_fd_budget();
  return 0;
}

int Filesystem::copy_up_tree(Node* dir) {
  int err = 0;
  FdLease ufd = dir_fd(dir, upper(), true, err);
  if (!ufd) return err;
  if (dir->opaque.load(std::memory_order_acquire)) return 0;  // whole already
  const auto listing = ops::dir_listing(*this, dir, err);
  if (!listing) return err;
  for (size_t i = 2; i < listing->entries.size(); ++i) {
    const std::string& name = listing->entries[i].name;
    fuse_entry_param e;
    if (int lerr = lookup(dir, name, e)) {
      if (lerr == ENOENT) continue;  // gone meanwhile
      return lerr;
    }
    Node* c = nodes_.node(e.ino);
    int cerr;
    if (c->is_dir()) {
      cerr = copy_up_tree(c);
    } else {
      std::unique_lock exclusive(io_mutex(c));
      cerr = copy_up(c, UINT64_MAX);
    }
    nodes_.forget(c, 1);
    if (cerr) return cerr;
  }
  // Everything the lower directories showed is in the upper one now.
  if ((err = set_opaque(ufd.get(), ".")) != 0) return err;
  dir->opaque.store(true, std::memory_order_release);
  changed(dir);
  return 0;
}

// ---- the report ----

Json Filesystem::discard_json() {
  UpperTally t;
  if (FdLease root = nodes_.root()->dirs[upper()].slot.lease()) tally(root.get(), t, 0);
  Json d = Json::object();
  d.set("upper", upper_layer_->tree)
      .set("kept", upper_layer_->keep)
      .set("files_created", t.created)
      .set("files_changed", t.changed)
      .set("files_deleted", t.deleted)
      .set("directories", t.dirs)
      .set("bytes", t.bytes);
  return d;
}

void Filesystem::finish_discard() {
  if (!discard()) return;
  const Json d = discard_json();
  auto n = [&](std::string_view k) {
    const Json* v = d.find(k);
    return v != nullptr && v->is_number() ? static_cast<uint64_t>(v->number()) : 0;
  };
  const std::string what =
      fmt::format("{} files created, {} changed, {} deleted ({})", n("files_created"),
                  n("files_changed"), n("files_deleted"), human_bytes(n("bytes")));
  if (upper_layer_->keep) {
    spdlog::info("discard mode: {}; the changes are kept in {}", what, upper_layer_->tree);
  } else {
    spdlog::info("discard mode: {}; discarded", what);
  }
  upper_layer_->finish();
}

}  // namespace cachefs

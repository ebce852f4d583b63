#include "store/object_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"

namespace cachefs::store {
namespace {

bool parse_uint(std::string_view s, unsigned base, uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, static_cast<int>(base));
  return ec == std::errc() && p == s.data() + s.size();
}

UniqueFd open_subdir(int dirfd, const char* name, bool create) {
  if (create && ::mkdirat(dirfd, name, 0700) != 0 && errno != EEXIST) return UniqueFd();
  return UniqueFd(::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

// Directory entries of `dirfd` (a fresh descriptor is used, the original is untouched).
template <typename Fn>
void list_dir(int dirfd, Fn&& fn) {
  const int dup = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return;
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    ::close(dup);
    return;
  }
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    fn(e->d_name);
  }
  ::closedir(d);
}

// CACHEFS_TEST_REPLACE_PAUSE_MS=N: replace() waits N ms between its look at the
// directory's times and the exchange, so that a test can make a change there
// inside that window. Read once.
void pause_for_tests() {
  static const uint64_t ms = [] {
    const char* v = std::getenv("CACHEFS_TEST_REPLACE_PAUSE_MS");
    uint64_t n = 0;
    return v != nullptr && parse_uint(v, 10, n) ? n : 0;
  }();
  if (ms != 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

}  // namespace

std::string ObjectKey::name() const {
  char tail[64];
  std::snprintf(tail, sizeof tail, ".%04o.%u.%u", static_cast<unsigned>(mode), uid, gid);
  return hash.hex() + tail;
}

std::optional<ObjectKey> ObjectKey::parse(std::string_view name) {
  // <32 hex>.<octal mode>.<uid>.<gid>
  std::string_view parts[4];
  size_t n = 0;
  while (n < 4) {
    const size_t dot = name.find('.');
    if (n == 3) {
      if (dot != std::string_view::npos) return std::nullopt;
      parts[n++] = name;
      break;
    }
    if (dot == std::string_view::npos) return std::nullopt;
    parts[n++] = name.substr(0, dot);
    name.remove_prefix(dot + 1);
  }
  ObjectKey k;
  const auto h = Hash128::parse(parts[0]);
  uint64_t mode, uid, gid;
  if (!h || !parse_uint(parts[1], 8, mode) || mode > 07777 || !parse_uint(parts[2], 10, uid) ||
      uid > 0xffffffffu || !parse_uint(parts[3], 10, gid) || gid > 0xffffffffu) {
    return std::nullopt;
  }
  k.hash = *h;
  k.mode = static_cast<mode_t>(mode);
  k.uid = static_cast<uid_t>(uid);
  k.gid = static_cast<gid_t>(gid);
  if (k.name() != std::string(parts[0]) + "." + std::string(parts[1]) + "." +
                      std::string(parts[2]) + "." + std::string(parts[3])) {
    return std::nullopt;  // not in canonical form (leading zeros, upper case)
  }
  return k;
}

const char* to_string(Skip s) {
  switch (s) {
    case Skip::kNone: return "none";
    case Skip::kNotRegular: return "not a regular file";
    case Skip::kEmpty: return "empty";
    case Skip::kHardLinked: return "hard-linked";
    case Skip::kSetId: return "set-id bits";
    case Skip::kXattrs: return "extended attributes";
    case Skip::kOtherDevice: return "other filesystem than the store";
  }
  return "?";
}

WriteLock::WriteLock(int fd) : fd_(fd) {
  while ((err_ = ::flock(fd_, LOCK_EX | LOCK_NB) == 0 ? 0 : errno) == EINTR) {
  }
}

WriteLock::~WriteLock() {
  if (err_ == 0) ::flock(fd_, LOCK_UN);
}

std::optional<std::string> object_name(int fd, const struct stat& st, dev_t store_dev) {
  if (!S_ISREG(st.st_mode) || st.st_nlink < 2 || st.st_dev != store_dev) return std::nullopt;
  char buf[128];
  // A real descriptor answers directly; an O_PATH one (EBADF) through /proc.
  ssize_t n = ::fgetxattr(fd, kObjectXattr, buf, sizeof buf);
  if (n < 0 && errno == EBADF) n = ::getxattr(ProcFdPath(fd).c_str(), kObjectXattr, buf, sizeof buf);
  if (n <= 0) return std::nullopt;
  std::string name(buf, static_cast<size_t>(n));
  if (!ObjectKey::parse(name)) return std::nullopt;
  return name;
}

std::unique_ptr<Store> Store::open(const std::string& dir, bool create) {
  std::unique_ptr<Store> s(new Store());
  s->path_ = dir;
  if (create && ::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    throw UsageError::make("store '{}': {}", dir, std::strerror(errno));
  }
  s->fd_.reset(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!s->fd_) throw UsageError::make("store '{}': {}", dir, std::strerror(errno));
  struct stat st {};
  ::fstat(s->fd_.get(), &st);
  s->dev_ = st.st_dev;

  UniqueFd marker(::openat(s->fd_.get(), kMarker, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!marker) {
    // Another process creating the same store at the same moment (two builds
    // starting on one fresh cache) leaves only layout entries and no marker yet:
    // that is a store being made, not somebody's data, so finish making it too.
    bool empty = true, only_layout = true;
    list_dir(s->fd_.get(), [&](const char* name) {
      empty = false;
      const std::string_view n(name);
      if (n != "objects" && n != "tmp" && n != "quarantine" && n.rfind("cachefs-store.new", 0) != 0) {
        only_layout = false;
      }
    });
    if (!create || !only_layout) {
      throw UsageError::make(
          "store '{}' is not a cachefs store (it has no '{}' file{}); give an empty or new "
          "directory",
          dir, kMarker, empty ? "" : " and is not empty");
    }
    // Build the layout first and write the marker last, so a store with a marker
    // is always complete.
    for (const char* sub : {"objects", "tmp", "quarantine"}) {
      if (::mkdirat(s->fd_.get(), sub, 0700) != 0 && errno != EEXIST) {
        throw UsageError::make("store '{}': cannot create {}: {}", dir, sub, std::strerror(errno));
      }
    }
    const std::string text = "cachefs object store\nformat " + std::to_string(kFormat) + "\n";
    // A name of its own, so concurrent creators do not write one file; each
    // rename installs the same text.
    const std::string tmp_marker = "cachefs-store.new." + std::to_string(::getpid());
    UniqueFd m(::openat(s->fd_.get(), tmp_marker.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                        0644));
    if (!m || ::write(m.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
        ::fsync(m.get()) != 0 ||
        ::renameat(s->fd_.get(), tmp_marker.c_str(), s->fd_.get(), kMarker) != 0) {
      ::unlinkat(s->fd_.get(), tmp_marker.c_str(), 0);
      throw UsageError::make("store '{}': cannot write its marker: {}", dir, std::strerror(errno));
    }
    marker.reset(::openat(s->fd_.get(), kMarker, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  }
  char buf[256] = {};
  const ssize_t n = marker ? ::read(marker.get(), buf, sizeof buf - 1) : -1;
  int format = 0;
  if (n > 0) {
    const char* f = std::strstr(buf, "format ");
    if (f != nullptr) format = std::atoi(f + 7);
  }
  if (format <= 0) {
    throw UsageError::make("store '{}': its '{}' file is damaged (no format line)", dir, kMarker);
  }
  if (format != kFormat) {
    throw UsageError::make("store '{}' has format {}; this cachefs reads format {}", dir, format,
                           kFormat);
  }
  s->objects_ = open_subdir(s->fd_.get(), "objects", create);
  s->tmp_ = open_subdir(s->fd_.get(), "tmp", true);
  s->quarantine_ = open_subdir(s->fd_.get(), "quarantine", true);
  if (!s->objects_ || !s->tmp_ || !s->quarantine_) {
    throw UsageError::make("store '{}': objects/, tmp/ or quarantine/ is missing or unusable: {}",
                           dir, std::strerror(errno));
  }
  return s;
}

Skip Store::skip_reason(int fd, const struct stat& st) const {
  if (!S_ISREG(st.st_mode)) return Skip::kNotRegular;
  if (st.st_size == 0) return Skip::kEmpty;
  if (st.st_nlink != 1) return Skip::kHardLinked;
  if (st.st_mode & (S_ISUID | S_ISGID)) return Skip::kSetId;
  if (st.st_dev != dev_) return Skip::kOtherDevice;
  // Attributes of its own (other than the store's stale marks) would be lost in sharing.
  char names[1024];
  ssize_t n = ::flistxattr(fd, names, sizeof names);
  if (n < 0 && errno == EBADF) n = ::listxattr(ProcFdPath(fd).c_str(), names, sizeof names);
  if (n < 0) return errno == ENOTSUP ? Skip::kNone : Skip::kXattrs;
  for (ssize_t i = 0; i < n;) {
    const char* name = names + i;
    if (std::strcmp(name, kObjectXattr) != 0 && std::strcmp(name, kReplacedXattr) != 0) {
      return Skip::kXattrs;
    }
    i += static_cast<ssize_t>(std::strlen(name)) + 1;
  }
  return Skip::kNone;
}

int Store::fanout_dir(const std::string& fan, UniqueFd& out) const {
  out.reset(::openat(objects_.get(), fan.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!out && errno == ENOENT) out = open_subdir(objects_.get(), fan.c_str(), true);
  return out ? 0 : errno;
}

UniqueFd Store::open_object(const ObjectKey& key, int& err) const {
  const std::string path = key.fanout() + "/" + key.name();
  // O_NOATIME: comparing bytes is not a use (evict orders by atime); it needs
  // the object's owner or CAP_FOWNER, so fall back without it.
  UniqueFd fd(
      ::openat(objects_.get(), path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME));
  if (!fd && errno == EPERM) {
    fd.reset(::openat(objects_.get(), path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  }
  if (!fd) err = errno;
  return fd;
}

int Store::plan(int fd, const struct stat& st, Plan& out) const {
  Hash128 h;
  if (int err = hash_fd(fd, static_cast<uint64_t>(st.st_size), h)) return err;
  struct stat after {};
  if (::fstat(fd, &after) != 0) return errno;
  if (after.st_size != st.st_size || after.st_mtim.tv_sec != st.st_mtim.tv_sec ||
      after.st_mtim.tv_nsec != st.st_mtim.tv_nsec || after.st_ctim.tv_sec != st.st_ctim.tv_sec ||
      after.st_ctim.tv_nsec != st.st_ctim.tv_nsec) {
    return EAGAIN;
  }
  out.key = ObjectKey::of(h, st);
  out.collision = false;
  int err = 0;
  out.object = open_object(out.key, err);
  if (!out.object) return err == ENOENT ? 0 : err;
  if (::fstat(out.object.get(), &out.object_st) != 0) return errno;
  if (out.object_st.st_dev == st.st_dev && out.object_st.st_ino == st.st_ino) {
    out.object.reset();  // it already is that object
    return EEXIST;
  }
  if (out.object_st.st_size != st.st_size ||
      !same_content(fd, out.object.get(), static_cast<uint64_t>(st.st_size), err)) {
    out.object.reset();
    if (err) return err == EAGAIN ? EAGAIN : err;
    out.collision = true;
  }
  return 0;
}

int Store::link_tmp(int fd, std::string& tmpname) const {
  static std::atomic<uint64_t> counter{0};
  tmpname = std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  // The very inode behind fd, no name of it involved: directly where we may
  // (CAP_DAC_READ_SEARCH), else through the magic link.
  if (::linkat(fd, "", tmp_.get(), tmpname.c_str(), AT_EMPTY_PATH) == 0) return 0;
  if (errno != ENOENT && errno != EPERM) return errno;
  if (::linkat(AT_FDCWD, ProcFdPath(fd).c_str(), tmp_.get(), tmpname.c_str(), AT_SYMLINK_FOLLOW) !=
      0) {
    return errno;
  }
  return 0;
}

int Store::adopt(int fd, const ObjectKey& key) const {
  const std::string name = key.name();
  // objects/<ab>/<name>, the fan-out directory made on first use (the store's own
  // directories, root's and 0700, so a relative two-component path is safe).
  const std::string rel = key.fanout() + "/" + name;
  if (::fsetxattr(fd, kObjectXattr, name.data(), name.size(), 0) != 0) return errno;
  // A replaced-mark left by a dedup that died before its exchange means nothing.
  ::fremovexattr(fd, kReplacedXattr);
  // The file is complete and unchanged (the caller checked), so linking it
  // under its final name is the one atomic step; a link never replaces, so the
  // first process to store a content wins and others get EEXIST.
  auto link_final = [&]() -> int {
    if (::linkat(fd, "", objects_.get(), rel.c_str(), AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOENT && errno != EPERM) return errno;
    const int first = errno;
    // ENOENT: no fan-out directory yet, or (like EPERM) no CAP_DAC_READ_SEARCH
    // for AT_EMPTY_PATH: the magic link needs neither.
    if (first == ENOENT) {
      UniqueFd made;
      fanout_dir(key.fanout(), made);
    }
    if (::linkat(AT_FDCWD, ProcFdPath(fd).c_str(), objects_.get(), rel.c_str(), AT_SYMLINK_FOLLOW) ==
        0) {
      return 0;
    }
    return errno;
  };
  const int err = link_final();
  if (err) ::fremovexattr(fd, kObjectXattr);
  return err;
}

int Store::replace(int dirfd, const char* name, dev_t dev, ino_t ino, int fd,
                   std::shared_mutex* dir_lock) const {
  // The name's current file may have been fsync'ed by its writer; what takes its
  // place must be on disk first, or a power cut after the exchange reached the
  // journal could leave the name on unwritten blocks.
  if (::fdatasync(fd) != 0) return errno;
  std::string tmp;
  if (int err = link_tmp(fd, tmp)) return err;
  // The exchange is the store's business, not a change to the directory: its
  // times are put back after it. The caller's own changes to the directory wait
  // for that (dir_lock); another process's made in the same instant may lose
  // its mtime update (its ctime moves anyway).
  std::unique_lock<std::shared_mutex> exclusive;
  if (dir_lock != nullptr) exclusive = std::unique_lock(*dir_lock);
  struct stat dir {};
  const bool keep_times = ::fstat(dirfd, &dir) == 0;
  const auto put_back_times = [&] {
    const struct timespec times[2] = {dir.st_atim, dir.st_mtim};
    if (keep_times) ::utimensat(AT_FDCWD, ProcFdPath(dirfd).c_str(), times, 0);
  };
  pause_for_tests();
  if (::renameat2(tmp_.get(), tmp.c_str(), dirfd, name, RENAME_EXCHANGE) != 0) {
    const int err = errno;
    ::unlinkat(tmp_.get(), tmp.c_str(), 0);
    return err;
  }
  // tmp now holds what the name held: it must be the file we meant to replace.
  struct stat st {};
  if (::fstatat(tmp_.get(), tmp.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != dev ||
      st.st_ino != ino) {
    ::renameat2(tmp_.get(), tmp.c_str(), dirfd, name, RENAME_EXCHANGE);
    ::unlinkat(tmp_.get(), tmp.c_str(), 0);
    put_back_times();
    return ESTALE;
  }
  ::unlinkat(tmp_.get(), tmp.c_str(), 0);
  put_back_times();
  return 0;
}

int Store::replace_by_object(int dirfd, const char* name, int file, const struct stat& st,
                             int object, const ObjectKey& key, std::shared_mutex* dir_lock) const {
  const std::string mark = key.name();
  if (::fsetxattr(file, kReplacedXattr, mark.data(), mark.size(), 0) != 0) return errno;
  const int err = replace(dirfd, name, st.st_dev, st.st_ino, object, dir_lock);
  if (err != 0) ::fremovexattr(file, kReplacedXattr);  // it keeps its name, or lost it to another
  return err;
}

void Store::drop_if_unused(int fd) const {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_dev != dev_) return;
  char buf[128];
  ssize_t n = ::fgetxattr(fd, kObjectXattr, buf, sizeof buf);
  if (n < 0 && errno == EBADF) n = ::getxattr(ProcFdPath(fd).c_str(), kObjectXattr, buf, sizeof buf);
  if (n <= 0) return;
  const std::string name(buf, static_cast<size_t>(n));
  const auto key = ObjectKey::parse(name);
  if (!key) return;
  const std::string rel = key->fanout() + "/" + name;
  // Only if that name is this very inode (the mark is the daemon's; the name could
  // have been removed and stored again by now).
  struct stat obj {};
  if (::fstatat(objects_.get(), rel.c_str(), &obj, AT_SYMLINK_NOFOLLOW) != 0 ||
      obj.st_dev != st.st_dev || obj.st_ino != st.st_ino || obj.st_nlink != 1) {
    return;
  }
  ::unlinkat(objects_.get(), rel.c_str(), 0);
}

UniqueFd Store::private_copy(int dirfd, int src, const struct stat& st, uint64_t len, int& err) {
  UniqueFd out(::openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!out) {
    err = errno;
    return out;
  }
  const uint64_t want = std::min<uint64_t>(len, static_cast<uint64_t>(st.st_size));
  loff_t in_off = 0, out_off = 0;
  while (static_cast<uint64_t>(in_off) < want) {
    const ssize_t n = ::copy_file_range(src, &in_off, out.get(), &out_off,
                                        static_cast<size_t>(want - static_cast<uint64_t>(in_off)), 0);
    if (n < 0) {
      err = errno;
      return UniqueFd();
    }
    if (n == 0) break;  // the source is shorter than it said: copy what there is
  }
  const timespec times[2] = {st.st_atim, st.st_mtim};
  if (::fchown(out.get(), st.st_uid, st.st_gid) != 0 ||
      ::fchmod(out.get(), st.st_mode & 07777) != 0 || ::futimens(out.get(), times) != 0) {
    err = errno;
    return UniqueFd();
  }
  return out;
}

void Store::for_each_object(
    const std::function<void(int, const char*, const std::optional<ObjectKey>&)>& fn) const {
  for_each_entry([&](int dirfd, const std::string& fan, const char* name,
                     const std::optional<ObjectKey>& key) {
    if (!fan.empty()) fn(dirfd, name, key);
  });
}

void Store::for_each_entry(const std::function<void(int, const std::string&, const char*,
                                                    const std::optional<ObjectKey>&)>& fn) const {
  std::vector<std::string> fans;
  list_dir(objects_.get(), [&](const char* n) { fans.emplace_back(n); });
  std::sort(fans.begin(), fans.end());
  for (const std::string& fan : fans) {
    UniqueFd dir(
        ::openat(objects_.get(), fan.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) {
      if (errno == ENOTDIR || errno == ELOOP) fn(objects_.get(), "", fan.c_str(), std::nullopt);
      continue;
    }
    list_dir(dir.get(), [&](const char* n) {
      auto key = ObjectKey::parse(n);
      if (key && key->fanout() != fan) key.reset();
      fn(dir.get(), fan, n, key);
    });
  }
}

int Store::quarantine(int dirfd, const char* name) const {
  std::string target = name;
  for (int i = 1; ::renameat2(dirfd, name, quarantine_.get(), target.c_str(), RENAME_NOREPLACE) != 0;
       ++i) {
    if (errno != EEXIST) return errno;
    target = std::string(name) + "." + std::to_string(i);
  }
  return 0;
}

void Store::clean_tmp(std::chrono::seconds age) const {
  const auto now = std::chrono::system_clock::now();
  list_dir(tmp_.get(), [&](const char* n) {
    const long pid = std::atol(n);
    struct stat st {};
    if (::fstatat(tmp_.get(), n, &st, AT_SYMLINK_NOFOLLOW) != 0) return;
    const bool gone = pid <= 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH);
    const auto changed = std::chrono::system_clock::from_time_t(st.st_ctim.tv_sec);
    if (gone || now - changed > age) ::unlinkat(tmp_.get(), n, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
  });
}

}  // namespace cachefs::store

#include "fs/backing_watch.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <optional>

#include "common/error.h"
#include "common/log.h"
#include "common/signals.h"
#include "fs/filesystem.h"

namespace cachefs {
namespace {

constexpr uint64_t kEntryEvents = FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO;
constexpr uint64_t kEvents = kEntryEvents | FAN_MODIFY | FAN_ATTRIB | FAN_ONDIR;
// How long the watch lets events gather before it reads them: what a change
// made behind the mount's back may take to show, at most, beyond its handling.
constexpr std::chrono::milliseconds kGather{2};

std::string fd_path(int fd) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink(ProcFdPath(fd).c_str(), buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// `path` relative to `root` ("" for the root itself), if it lies there.
std::optional<std::string> relative_to(const std::string& path, const std::string& root) {
  if (path == root) return std::string();
  if (root == "/") return path.size() > 1 ? std::optional(path.substr(1)) : std::nullopt;
  if (path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
      path[root.size()] == '/') {
    return path.substr(root.size() + 1);
  }
  return std::nullopt;
}

// The filesystem id as fanotify reports it: statfs's f_fsid, the same 8 bytes.
std::string fsid_key(const fsid_t& fsid) {
  static_assert(sizeof(fsid_t) == sizeof(__kernel_fsid_t));
  return std::string(reinterpret_cast<const char*>(&fsid), sizeof fsid);
}

// A file handle for `fd` (a struct file_handle and its bytes), or nothing if
// its filesystem gives none.
std::vector<unsigned char> file_handle_of(int fd) {
  alignas(file_handle) unsigned char h[sizeof(file_handle) + MAX_HANDLE_SZ] = {};
  auto* fh = reinterpret_cast<file_handle*>(h);
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (::name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH) != 0) return {};
  return {h, h + sizeof(file_handle) + fh->handle_bytes};
}

file_handle* as_handle(std::vector<unsigned char>& h) {
  return reinterpret_cast<file_handle*>(h.data());
}

}  // namespace

BackingWatch::BackingWatch(Filesystem& fs) : fs_(fs) {
  // An unlimited queue: the daemon's own changes are events too (a few per file
  // an untar writes), read and dropped; a bounded queue could overflow behind a
  // busy mount and lose someone else's. Unlimited marks: one per directory.
  fan_.reset(::fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME | FAN_UNLIMITED_QUEUE |
                                 FAN_UNLIMITED_MARKS | FAN_CLOEXEC | FAN_NONBLOCK,
                             O_RDONLY | O_CLOEXEC | O_LARGEFILE));
  if (!fan_)
    throw UsageError::make("--watch-backing: fanotify: {} (it needs root and Linux 5.9 or later)",
                           std::strerror(errno));
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) throw UsageError::make("--watch-backing: eventfd: {}", std::strerror(errno));
  for (size_t b = 0; b < fs.branch_count(); ++b) {
    const std::string& dir = fs.routes().branch_dir(static_cast<BranchIndex>(b));
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct statfs sfs {};
    if (!fd || ::fstatfs(fd.get(), &sfs) != 0)
      throw UsageError::make("--watch-backing: '{}': {}", dir, std::strerror(errno));
    if (const int err = add_mark(fd.get()); err != 0) {
      throw UsageError::make(
          "--watch-backing: cannot watch '{}': {} (it needs a filesystem whose files the "
          "kernel can name by handle)",
          dir, std::strerror(err));
    }
    // Events name directories by handle, which must lead back to them.
    std::vector<unsigned char> h = file_handle_of(fd.get());
    UniqueFd back;
    if (!h.empty()) back.reset(::open_by_handle_at(fd.get(), as_handle(h), O_PATH | O_CLOEXEC));
    if (!back) {
      throw UsageError::make(
          "--watch-backing: cannot watch '{}': the kernel cannot find its directories by "
          "handle ({})",
          dir, std::strerror(errno));
    }
    roots_.push_back(fd_path(fd.get()));
    struct stat st {};
    ::fstat(fd.get(), &st);
    root_devs_.push_back(st.st_dev);
    // The roots stay marked for as long as the mount lives.
    marks_[Inode{st.st_dev, st.st_ino}].nodes = 1;
    std::string key = fsid_key(sfs.f_fsid);
    const auto known =
        std::find_if(mounts_.begin(), mounts_.end(), [&](const auto& m) { return m.first == key; });
    branch_mount_.push_back(known != mounts_.end() ? known->second.get() : fd.get());
    if (known == mounts_.end()) mounts_.emplace_back(std::move(key), std::move(fd));
  }
  fs.counters.watch_marks.store(marks_.size(), std::memory_order_relaxed);
}

int BackingWatch::add_mark(int dir_fd) {
  // "." from the descriptor: an O_PATH one cannot name the inode by itself here.
  if (::fanotify_mark(fan_.get(), FAN_MARK_ADD | FAN_MARK_ONLYDIR, kEvents | FAN_EVENT_ON_CHILD,
                      dir_fd, ".") == 0) {
    return 0;
  }
  return errno;
}

void BackingWatch::watch(const BranchDir& who, BranchIndex b, int dir_fd, const struct stat& st) {
  const Inode dir{st.st_dev, st.st_ino};
  std::lock_guard lock(marks_mu_);
  const auto [shown, first] = shown_.try_emplace(&who, dir);
  if (!first) {
    if (shown->second == dir) return;
    release_locked(shown->second);  // the node shows another directory now
    shown->second = dir;
  }
  // A mark already there (even one waiting to be removed, at 0 nodes) is kept
  // by the count.
  const auto [it, fresh] = marks_.try_emplace(dir);
  ++it->second.nodes;
  if (!fresh) return;
  if (const int err = add_mark(dir_fd); err != 0) {
    marks_.erase(dir);
    fs_.counters.watch_unmarked.fetch_add(1, std::memory_order_relaxed);
    if (!warned_.exchange(true)) {
      spdlog::warn(
          "--watch-backing: cannot watch a directory ({}): changes others make in it "
          "show only after the timeouts (counted in watch_unmarked)",
          std::strerror(err));
    }
    return;
  }
  Mark& m = it->second;
  m.branch = b;
  // Kept to remove the mark by, once no node shows the directory. One under
  // another filesystem mounted inside the branch could not be opened by it: its
  // mark stays until the mount ends.
  if (b < root_devs_.size() && st.st_dev == root_devs_[b]) m.handle = file_handle_of(dir_fd);
  fs_.counters.watch_marks.store(marks_.size(), std::memory_order_relaxed);
}

void BackingWatch::unwatch(const BranchDir& who) {
  std::lock_guard lock(marks_mu_);
  if (auto it = shown_.find(&who); it != shown_.end()) {
    release_locked(it->second);
    shown_.erase(it);
  }
}

void BackingWatch::release_locked(const Inode& i) {
  auto it = marks_.find(i);
  if (it == marks_.end() || it->second.nodes == 0 || --it->second.nodes != 0) return;
  unwatched_.push_back(i);
  if (unwatched_.size() == 1) {  // wake the thread for the first of a batch
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_.get(), &one, sizeof one);
  }
}

void BackingWatch::drop_unwatched() {
  std::lock_guard lock(marks_mu_);
  for (const Inode& i : unwatched_) {
    auto it = marks_.find(i);
    if (it == marks_.end() || it->second.nodes != 0) continue;  // shown again meanwhile
    Mark& m = it->second;
    if (!m.handle.empty()) {
      // Gone already (deleted): the kernel dropped its mark with the inode.
      UniqueFd dir(
          ::open_by_handle_at(branch_mount_[m.branch], as_handle(m.handle), O_PATH | O_CLOEXEC));
      if (dir) {
        ::fanotify_mark(fan_.get(), FAN_MARK_REMOVE, kEvents | FAN_EVENT_ON_CHILD, dir.get(), ".");
      }
      marks_.erase(it);
    }
  }
  unwatched_.clear();
  fs_.counters.watch_marks.store(marks_.size(), std::memory_order_relaxed);
}

BackingWatch::~BackingWatch() {
  stop();
}

void BackingWatch::start(fuse_session* se) {
  se_ = se;
  const SignalsBlocked blocked;
  thread_ = std::thread([this] { run(); });
}

void BackingWatch::stop() {
  if (!thread_.joinable()) return;
  stopping_.store(true, std::memory_order_release);
  const uint64_t one = 1;
  if (::write(wake_.get(), &one, sizeof one) < 0) {
    spdlog::warn("--watch-backing: cannot wake the watch: {}", std::strerror(errno));
  }
  thread_.join();
}

void BackingWatch::run() {
  // Aligned for the event structures read into it.
  alignas(fanotify_event_metadata) static thread_local char buf[64 * 1024];
  const pid_t self = ::getpid();
  pollfd fds[2] = {{fan_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("--watch-backing: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) {
      uint64_t woken = 0;
      [[maybe_unused]] const ssize_t n = ::read(wake_.get(), &woken, sizeof woken);
      if (stopping_.load(std::memory_order_acquire)) return;
    }
    // Let events (and forgotten nodes) gather: woken for each one, this thread
    // cost an untar through the mount more than the events themselves (most
    // are the mount's own).
    std::this_thread::sleep_for(kGather);
    drop_unwatched();
    for (;;) {
      const ssize_t n = ::read(fan_.get(), buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        spdlog::error("--watch-backing: read: {}", std::strerror(errno));
        return;
      }
      // Events are 4-byte aligned in the buffer, their metadata wants 8 (a
      // 64-bit mask): each is copied out, never read in place.
      const auto size = static_cast<size_t>(n);
      for (size_t off = 0; off + sizeof(fanotify_event_metadata) <= size;) {
        fanotify_event_metadata m;
        std::memcpy(&m, buf + off, sizeof m);
        if (m.event_len < sizeof m || off + m.event_len > size) break;
        handle(m, buf + off, self);
        off += m.event_len;
      }
    }
  }
}

void BackingWatch::handle(const fanotify_event_metadata& m, const char* event, pid_t self) {
  if (m.vers != FANOTIFY_METADATA_VERSION) return;
  if ((m.mask & FAN_Q_OVERFLOW) != 0) {  // not with an unlimited queue
    spdlog::warn(
        "--watch-backing: events were lost; changes behind the mount's back may "
        "stay unseen for the entry and attribute timeouts");
    return;
  }
  // A directory moved (by anyone): paths below it are no longer what we cached.
  if ((m.mask & FAN_ONDIR) != 0 && (m.mask & (FAN_MOVED_FROM | FAN_MOVED_TO)) != 0) {
    paths_.clear();
  }
  if (m.pid == self) return;  // made through the mount: the kernel knows
  // Info records: a header, the directory's fsid and file handle, and (DFID_NAME)
  // the entry's name. Read by copying, like the metadata.
  const char* p = event + m.metadata_len;
  const char* end = event + m.event_len;
  constexpr size_t kFsidAt = offsetof(fanotify_event_info_fid, fsid);
  constexpr size_t kHandleAt = offsetof(fanotify_event_info_fid, handle);
  while (p + kHandleAt + sizeof(file_handle) <= end) {
    fanotify_event_info_header hdr;
    std::memcpy(&hdr, p, sizeof hdr);
    if (hdr.len == 0 || p + hdr.len > end) return;
    if (hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME ||
        hdr.info_type == FAN_EVENT_INFO_TYPE_DFID) {
      const char* handle = p + kHandleAt;
      file_handle fh;
      std::memcpy(&fh, handle, sizeof fh);
      const char* after = handle + sizeof(file_handle) + fh.handle_bytes;
      if (after > p + hdr.len) return;
      std::string_view name;
      if (hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME) {
        name = std::string_view(after, ::strnlen(after, static_cast<size_t>(p + hdr.len - after)));
        if (name == ".") name = {};
      }
      fs_.counters.watch_events.fetch_add(1, std::memory_order_relaxed);
      const bool entry = (m.mask & kEntryEvents) != 0;
      for (const std::string& rel : where(p + kFsidAt, handle, fh.handle_bytes)) {
        invalidate(rel, name, entry);
      }
    }
    p += hdr.len;
  }
}

const std::vector<std::string>& BackingWatch::where(const char* fsid, const char* handle,
                                                    uint32_t handle_bytes) {
  const size_t handle_len = sizeof(file_handle) + handle_bytes;
  std::string key(fsid, sizeof(__kernel_fsid_t));
  key.append(handle, handle_len);
  if (auto it = paths_.find(key); it != paths_.end()) return it->second;
  if (paths_.size() >= 65536) paths_.clear();
  std::vector<std::string> rels;
  const auto mount = std::find_if(mounts_.begin(), mounts_.end(), [&](const auto& m) {
    return m.first.compare(0, m.first.size(), fsid, sizeof(__kernel_fsid_t)) == 0;
  });
  if (mount != mounts_.end()) {
    // open_by_handle_at wants the handle aligned as a file_handle.
    std::vector<unsigned char> copy(handle_len);
    std::memcpy(copy.data(), handle, handle_len);
    // Gone already (no descriptor): its removal is an event of its parent.
    UniqueFd dir(::open_by_handle_at(mount->second.get(), as_handle(copy), O_PATH | O_CLOEXEC));
    const std::string path = dir ? fd_path(dir.get()) : std::string();
    for (const std::string& root : roots_) {
      if (auto rel = relative_to(path, root)) rels.push_back(std::move(*rel));
    }
  }
  return paths_.emplace(std::move(key), std::move(rels)).first->second;
}

void BackingWatch::invalidate(std::string_view rel, std::string_view name, bool entry) {
  const NodeTable::WatchHit hit = fs_.nodes().find_for_watch(rel, name);
  if (hit.dir == 0) return;  // the kernel has nothing cached there
  auto sent = [this](int rc) {
    // -ENOENT: the kernel had forgotten that inode or name already.
    if (rc == 0) fs_.counters.watch_invalidations.fetch_add(1, std::memory_order_relaxed);
  };
  if (name.empty()) {  // the directory itself
    sent(fuse_lowlevel_notify_inval_inode(se_, hit.dir, 0, 0));
    return;
  }
  // A file the kernel is writing through a passthrough handle of this mount is
  // changed by the writing process, not by the daemon; this mount's kernel
  // made that change itself. (A stranger writing the same file meanwhile goes
  // unseen until the next change after the handle is released.)
  if (hit.child != 0 && (entry || !hit.child_kernel_written)) {
    sent(fuse_lowlevel_notify_inval_inode(se_, hit.child, 0, 0));
  }
  if (entry) {
    sent(fuse_lowlevel_notify_inval_entry(se_, hit.dir, name.data(), name.size()));
    sent(fuse_lowlevel_notify_inval_inode(se_, hit.dir, 0, 0));
  }
}

}  // namespace cachefs

#include "fs/kernel_io.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "common/log.h"
#include "fs/filesystem.h"
#include "fs/fuse_abi.h"
#include "fs/request_loop.h"

namespace cachefs {
namespace {

using fuse_abi::InHeader;
using fuse_abi::kOpInit;
using fuse_abi::kOpSetattr;
using fuse_abi::kOpWrite;
using fuse_abi::OutHeader;

// The rest of the protocol read here (linux/fuse.h).
struct InitIn {
  uint32_t major, minor, max_readahead, flags;
  uint32_t flags2;  // protocol 7.36, with FUSE_INIT_EXT in flags
};
struct InitOut {
  uint32_t major, minor, max_readahead, flags;
  uint16_t max_background, congestion_threshold;
  uint32_t max_write, time_gran;
  uint16_t max_pages, map_alignment;
  uint32_t flags2;  // read by the kernel when FUSE_INIT_EXT is in flags
  uint32_t max_stack_depth;  // protocol 7.40, with FUSE_PASSTHROUGH
};
static_assert(offsetof(InitOut, flags2) == 32);
static_assert(offsetof(InitOut, max_stack_depth) == 36);
struct EntryOut {
  unsigned char bytes[128];
};
struct OpenOut {
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;  // protocol 7.40, with FOPEN_PASSTHROUGH
};
static_assert(sizeof(OpenOut) == 16);
struct BackingMap {  // FUSE_DEV_IOC_BACKING_OPEN's argument
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
struct WriteIn {
  uint64_t fh, offset;
  uint32_t size, write_flags;
};
struct SetattrIn {
  uint32_t valid;
};

constexpr uint32_t kHandleKillprivV2 = 1u << 28;  // FUSE_HANDLE_KILLPRIV_V2, protocol 7.33
constexpr uint32_t kInitExt = 1u << 30;           // FUSE_INIT_EXT: flags2 is valid
constexpr uint32_t kDirectIoAllowMmap = 1u << 4;  // flags2: FUSE_DIRECT_IO_ALLOW_MMAP, 7.39
constexpr uint32_t kPassthrough = 1u << 5;        // flags2: FUSE_PASSTHROUGH, 7.40
constexpr uint32_t kOverIoUring = 1u << 9;        // flags2: FUSE_OVER_IO_URING, 7.42
constexpr uint32_t kMaxPages = 1u << 22;          // FUSE_MAX_PAGES
constexpr uint32_t kWritebackCache = 1u << 16;    // FUSE_WRITEBACK_CACHE
constexpr uint32_t kOpenPassthrough = 1u << 7;    // FOPEN_PASSTHROUGH
// Backing files live on plain filesystems (depth 0): one level of stacking
// keeps the mount usable as an overlayfs lower layer.
constexpr uint32_t kMaxStackDepth = 1;
constexpr unsigned long kIocBackingOpen = _IOW(229, 1, BackingMap);  // FUSE_DEV_IOC_BACKING_OPEN
constexpr unsigned long kIocBackingClose = _IOW(229, 2, uint32_t);   // FUSE_DEV_IOC_BACKING_CLOSE
constexpr uint32_t kWriteKillSuidgid = 1u << 2;   // FUSE_WRITE_KILL_SUIDGID
constexpr uint32_t kFattrKillSuidgid = 1u << 11;  // FATTR_KILL_SUIDGID

// Each worker thread reads a request and handles it before it reads the next,
// so what the read saw is what the handler on this thread is answering.
thread_local bool t_kill_suidgid = false;
// The backing id the CREATE reply this thread is about to send must carry
// (-1: none), and whether the reply went out with it.
thread_local int t_backing_id = -1;
thread_local bool t_backing_sent = false;

KernelIo& io_of(void* userdata) { return static_cast<Filesystem*>(userdata)->kernel_io(); }

}  // namespace

bool KernelIo::install(fuse_session* se) {
  static const fuse_custom_io io = {
      .writev = &KernelIo::writev,
      .read = &KernelIo::read,
      .splice_receive = nullptr,  // requests are read into buffers (no SPLICE_READ)
      .splice_send = &KernelIo::splice_send,  // replies keep their splice
  };
  dev_fd_ = fuse_session_fd(se);
  se_ = se;
  return fuse_session_custom_io(se, &io, dev_fd_) == 0;
}

int KernelIo::backing_open(int fd) {
  if (!passthrough()) return -EOPNOTSUPP;
  BackingMap map{fd, 0, 0};
  const int id = ::ioctl(dev_fd_, kIocBackingOpen, &map);
  if (id >= 0) return id;
  const int err = errno;
  // Out of memory or descriptors is for this file only; anything else (EPERM:
  // not CAP_SYS_ADMIN; ENOTTY; ELOOP: backing files on a stacked filesystem)
  // will not change.
  if (err != ENOMEM && err != EMFILE && err != ENFILE && err != EINTR &&
      passthrough_.exchange(false, std::memory_order_acq_rel)) {
    spdlog::info("kernel passthrough off: registering a backing file failed: {}",
                 std::strerror(err));
  }
  return -err;
}

void KernelIo::backing_close(int id) {
  uint32_t arg = static_cast<uint32_t>(id);
  ::ioctl(dev_fd_, kIocBackingClose, &arg);
}

KernelIo::PassthroughReply::PassthroughReply(int backing_id) {
  t_backing_id = backing_id;
  t_backing_sent = false;
}

KernelIo::PassthroughReply::~PassthroughReply() {
  t_backing_id = -1;
  t_backing_sent = false;
}

bool KernelIo::PassthroughReply::sent() const {
  return t_backing_sent;
}

bool KernelIo::kill_suidgid() {
  return t_kill_suidgid;
}

int KernelIo::kill_suidgid(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno;
  if (!S_ISREG(st.st_mode)) return 0;
  mode_t mode = st.st_mode & 07777;
  mode &= ~static_cast<mode_t>(S_ISUID);
  if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)) mode &= ~static_cast<mode_t>(S_ISGID);
  if (mode == (st.st_mode & 07777)) return 0;
  // Through the magic link, so an O_PATH descriptor works too.
  return ::chmod(ProcFdPath(fd).c_str(), mode) == 0 ? 0 : errno;
}

void KernelIo::note_request(const void* buf, size_t n) {
  t_kill_suidgid = false;
  if (n < sizeof(InHeader)) return;
  const auto* in = static_cast<const unsigned char*>(buf);
  const auto& h = *reinterpret_cast<const InHeader*>(in);
  const size_t body = n - sizeof(InHeader);
  const unsigned char* arg = in + sizeof(InHeader);
  if (h.opcode == kOpWrite && body >= sizeof(WriteIn)) {
    t_kill_suidgid = (reinterpret_cast<const WriteIn*>(arg)->write_flags & kWriteKillSuidgid) != 0;
  } else if (h.opcode == kOpSetattr && body >= sizeof(SetattrIn)) {
    t_kill_suidgid = (reinterpret_cast<const SetattrIn*>(arg)->valid & kFattrKillSuidgid) != 0;
  }
}

ssize_t KernelIo::read(int fd, void* buf, size_t len, void* userdata) {
  RequestLoop* loop = io_of(userdata).loop_;
  const ssize_t n = loop != nullptr ? loop->read_request(fd, buf, len) : ::read(fd, buf, len);
  if (n < 0) {
    t_kill_suidgid = false;
    return n;
  }
  note_request(buf, static_cast<size_t>(n));
  if (n < static_cast<ssize_t>(sizeof(InHeader))) return n;
  const auto* in = static_cast<const unsigned char*>(buf);
  const auto& h = *reinterpret_cast<const InHeader*>(in);
  const size_t body = static_cast<size_t>(n) - sizeof(InHeader);
  const unsigned char* arg = in + sizeof(InHeader);
  if (h.opcode == kOpInit && body >= offsetof(InitIn, flags2)) {
    const auto& init = *reinterpret_cast<const InitIn*>(arg);
    KernelIo& self = io_of(userdata);
    // 7.33 brought the flag; a kernel that offers it says so in its flags.
    self.offered_.store(init.major == 7 && init.minor >= 33 && (init.flags & kHandleKillprivV2),
                        std::memory_order_release);
    const bool ext = (init.flags & kInitExt) != 0 && body >= sizeof(InitIn);
    self.mmap_offered_.store(init.major == 7 && ext && (init.flags2 & kDirectIoAllowMmap),
                             std::memory_order_release);
    self.passthrough_offered_.store(init.major == 7 && init.minor >= 40 && ext &&
                                        (init.flags2 & kPassthrough),
                                    std::memory_order_release);
    self.uring_offered_.store(
        init.major == 7 && init.minor >= 42 && ext && (init.flags2 & kOverIoUring),
        std::memory_order_release);
    self.init_unique_.store(h.unique, std::memory_order_release);
  }
  return n;
}

ssize_t KernelIo::writev(int fd, struct iovec* iov, int count, void* userdata) {
  ssize_t n = 0;
  if (t_backing_id >= 0 && count == 2 && iov[0].iov_len >= sizeof(OutHeader) &&
      iov[1].iov_len == sizeof(EntryOut) + sizeof(OpenOut) &&
      static_cast<const OutHeader*>(iov[0].iov_base)->error == 0) {
    // The CREATE reply (libfuse's buffer: entry, then open parameters).
    auto* open = reinterpret_cast<OpenOut*>(static_cast<unsigned char*>(iov[1].iov_base) +
                                            sizeof(EntryOut));
    open->open_flags |= kOpenPassthrough;
    open->backing_id = t_backing_id;
    t_backing_id = -1;
    if (!UringLoop::take_reply(iov, count, &n)) n = ::writev(fd, iov, count);
    t_backing_sent = n >= 0;
    return n;
  }
  if (UringLoop::take_reply(iov, count, &n)) return n;
  KernelIo& self = io_of(userdata);
  const uint64_t init = self.init_unique_.load(std::memory_order_acquire);
  if (init != 0 && count >= 2 && iov[0].iov_len >= sizeof(OutHeader) &&
      iov[1].iov_len >= offsetof(InitOut, max_stack_depth)) {
    const auto& oh = *static_cast<const OutHeader*>(iov[0].iov_base);
    if (oh.unique == init) {
      self.init_unique_.store(0, std::memory_order_release);
      auto& out = *static_cast<InitOut*>(iov[1].iov_base);
      if (oh.error == 0 && self.offered_.load(std::memory_order_acquire)) {
        // libfuse's own reply buffer: add the flags it does not know.
        out.flags |= kHandleKillprivV2;
        self.negotiated_.store(true, std::memory_order_release);
      }
      if (oh.error == 0 && self.mmap_offered_.load(std::memory_order_acquire) &&
          (out.flags & kInitExt) != 0) {
        out.flags2 |= kDirectIoAllowMmap;
        self.direct_io_mmap_.store(true, std::memory_order_release);
      }
      // The kernel refuses passthrough beside the write-back cache.
      if (oh.error == 0 && self.want_passthrough_ &&
          self.passthrough_offered_.load(std::memory_order_acquire) &&
          (out.flags & kInitExt) != 0 && (out.flags & kWritebackCache) == 0 &&
          iov[1].iov_len >= offsetof(InitOut, max_stack_depth) + sizeof(uint32_t)) {
        out.flags2 |= kPassthrough;
        out.max_stack_depth = kMaxStackDepth;
        self.passthrough_.store(true, std::memory_order_release);
      }
      bool uring = false;
      if (oh.error == 0 && self.want_uring_ &&
          self.uring_offered_.load(std::memory_order_acquire) && (out.flags & kInitExt) != 0) {
        if (UringLoop::usable()) {
          out.flags2 |= kOverIoUring;
          uring = true;
        } else {
          spdlog::warn("io_uring offered by the kernel but not usable here: serving /dev/fuse");
        }
      }
      n = ::writev(fd, iov, count);
      if (uring && n >= 0) {
        // The kernel now holds every request until each CPU's queue has an
        // entry: register them (from this worker, which the loop can spare).
        const size_t pages =
            (out.flags & kMaxPages) != 0 ? std::max<uint16_t>(out.max_pages, 1) : 32;
        const size_t payload = std::max<size_t>({8192, out.max_write, pages * 4096});
        self.uring_ = std::make_unique<UringLoop>(self.se_, *self.uring_served_);
        self.uring_->start(self.uring_per_queue_, payload);
        if (self.loop_ != nullptr) self.loop_->stop_polling();
      }
      return n;
    }
  }
  return ::writev(fd, iov, count);
}

void KernelIo::stop_uring() {
  if (uring_) uring_->stop();
}

ssize_t KernelIo::splice_send(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                              unsigned int flags, void*) {
  return ::splice(fdin, offin, fdout, offout, len, flags);
}

}  // namespace cachefs

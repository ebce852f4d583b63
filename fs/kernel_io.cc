#include "fs/kernel_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>

#include "fs/filesystem.h"
#include "fs/request_loop.h"

namespace cachefs {
namespace {

// The few pieces of the FUSE protocol (linux/fuse.h, a stable ABI) read here;
// libfuse does not install its copy of the header.
struct InHeader {
  uint32_t len;
  uint32_t opcode;
  uint64_t unique;
  uint64_t nodeid;
  uint32_t uid, gid, pid;
  uint16_t total_extlen, padding;
};
static_assert(sizeof(InHeader) == 40);
struct OutHeader {
  uint32_t len;
  int32_t error;
  uint64_t unique;
};
static_assert(sizeof(OutHeader) == 16);
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
};
static_assert(offsetof(InitOut, flags2) == 32);
struct WriteIn {
  uint64_t fh, offset;
  uint32_t size, write_flags;
};
struct SetattrIn {
  uint32_t valid;
};

constexpr uint32_t kOpSetattr = 4;
constexpr uint32_t kOpWrite = 16;
constexpr uint32_t kOpInit = 26;
constexpr uint32_t kHandleKillprivV2 = 1u << 28;  // FUSE_HANDLE_KILLPRIV_V2, protocol 7.33
constexpr uint32_t kInitExt = 1u << 30;           // FUSE_INIT_EXT: flags2 is valid
constexpr uint32_t kDirectIoAllowMmap = 1u << 4;  // flags2: FUSE_DIRECT_IO_ALLOW_MMAP, 7.39
constexpr uint32_t kWriteKillSuidgid = 1u << 2;   // FUSE_WRITE_KILL_SUIDGID
constexpr uint32_t kFattrKillSuidgid = 1u << 11;  // FATTR_KILL_SUIDGID

// Each worker thread reads a request and handles it before it reads the next,
// so what the read saw is what the handler on this thread is answering.
thread_local bool t_kill_suidgid = false;

KernelIo& io_of(void* userdata) { return static_cast<Filesystem*>(userdata)->kernel_io(); }

}  // namespace

bool KernelIo::install(fuse_session* se) {
  static const fuse_custom_io io = {
      .writev = &KernelIo::writev,
      .read = &KernelIo::read,
      .splice_receive = nullptr,  // requests are read into buffers (no SPLICE_READ)
      .splice_send = &KernelIo::splice_send,  // replies keep their splice
  };
  return fuse_session_custom_io(se, &io, fuse_session_fd(se)) == 0;
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

ssize_t KernelIo::read(int fd, void* buf, size_t len, void* userdata) {
  RequestLoop* loop = io_of(userdata).loop_;
  const ssize_t n = loop != nullptr ? loop->read_request(fd, buf, len) : ::read(fd, buf, len);
  t_kill_suidgid = false;
  if (n < static_cast<ssize_t>(sizeof(InHeader))) return n;
  const auto* in = static_cast<const unsigned char*>(buf);
  const auto& h = *reinterpret_cast<const InHeader*>(in);
  const size_t body = static_cast<size_t>(n) - sizeof(InHeader);
  const unsigned char* arg = in + sizeof(InHeader);
  if (h.opcode == kOpWrite && body >= sizeof(WriteIn)) {
    t_kill_suidgid = (reinterpret_cast<const WriteIn*>(arg)->write_flags & kWriteKillSuidgid) != 0;
  } else if (h.opcode == kOpSetattr && body >= sizeof(SetattrIn)) {
    t_kill_suidgid = (reinterpret_cast<const SetattrIn*>(arg)->valid & kFattrKillSuidgid) != 0;
  } else if (h.opcode == kOpInit && body >= offsetof(InitIn, flags2)) {
    const auto& init = *reinterpret_cast<const InitIn*>(arg);
    KernelIo& self = io_of(userdata);
    // 7.33 brought the flag; a kernel that offers it says so in its flags.
    self.offered_.store(init.major == 7 && init.minor >= 33 && (init.flags & kHandleKillprivV2),
                        std::memory_order_release);
    const bool ext = (init.flags & kInitExt) != 0 && body >= sizeof(InitIn);
    self.mmap_offered_.store(init.major == 7 && ext && (init.flags2 & kDirectIoAllowMmap),
                             std::memory_order_release);
    self.init_unique_.store(h.unique, std::memory_order_release);
  }
  return n;
}

ssize_t KernelIo::writev(int fd, struct iovec* iov, int count, void* userdata) {
  KernelIo& self = io_of(userdata);
  const uint64_t init = self.init_unique_.load(std::memory_order_acquire);
  if (init != 0 && count >= 2 && iov[0].iov_len >= sizeof(OutHeader) &&
      iov[1].iov_len >= sizeof(InitOut)) {
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
    }
  }
  return ::writev(fd, iov, count);
}

ssize_t KernelIo::splice_send(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                              unsigned int flags, void*) {
  return ::splice(fdin, offin, fdout, offout, len, flags);
}

}  // namespace cachefs

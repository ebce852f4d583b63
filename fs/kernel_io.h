// The daemon's own reads and writes of /dev/fuse (libfuse's custom I/O), for
// what libfuse 3.14 cannot negotiate that the kernel offers:
// FUSE_HANDLE_KILLPRIV_V2 and FUSE_DIRECT_IO_ALLOW_MMAP, and for the request
// loop's busy-polling read (request_loop.h).
//
// Without it the kernel must ask, before every write() to a file, whether the
// file carries security.capability (a GETXATTR round trip per write call: a
// third of the requests of an untar), because FUSE otherwise never lets an
// inode be marked "nothing to kill" (S_NOSEC). With it the kernel asks once per
// inode, and leaves killing set-user/group-id bits to the filesystem: it flags
// the requests that must (FUSE_WRITE_KILL_SUIDGID on a WRITE, FATTR_KILL_SUIDGID
// on a SETATTR), and the handlers ask kill_suidgid().
//
// The INIT reply's flags get the bit added on the way out when the kernel
// offered it; the flags of each request are read on the way in, by the worker
// thread that then handles that request.
//
// It also negotiates FUSE passthrough (6.9+, FUSE_PASSTHROUGH): a CREATE reply
// may name a backing file, registered beforehand on /dev/fuse, and the kernel
// then reads and writes that file itself for the handle's whole life, with no
// READ or WRITE request. ops::create says when it is used.
//
// And FUSE over io_uring (6.14+, FUSE_OVER_IO_URING): when it is wanted and
// offered, the INIT reply asks for it and the ring threads start
// (uring_loop.h); from then on a reply to a request served from a ring goes
// back into that ring instead of to /dev/fuse.
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "fs/uring_loop.h"

namespace cachefs {

class RequestLoop;

class KernelIo {
 public:
  // After fuse_session_mount, before the session loop. False (and libfuse's own
  // I/O kept) if libfuse refuses.
  bool install(fuse_session* se);

  // Requests are read through the loop's read_request (busy-poll, then sleep)
  // from now on. Before the loop's workers start.
  void use_loop(RequestLoop* loop) { loop_ = loop; }

  // The kernel accepted FUSE_HANDLE_KILLPRIV_V2.
  bool killpriv_v2() const { return negotiated_.load(std::memory_order_acquire); }

  // The kernel accepted FUSE_DIRECT_IO_ALLOW_MMAP (6.6+): a handle opened with
  // direct I/O may still be mapped shared, so one can be given to files a build
  // creates (ops::create says why).
  bool direct_io_mmap() const { return direct_io_mmap_.load(std::memory_order_acquire); }

  // Called from init, before the INIT reply: ask for passthrough if offered.
  void want_passthrough(bool on) { want_passthrough_ = on; }
  // The kernel accepted FUSE_PASSTHROUGH and registering backing files works.
  bool passthrough() const { return passthrough_.load(std::memory_order_acquire); }
  // Registers the open file `fd` as a backing file: its id (>= 0), or -errno.
  // A refusal that no later call would change (no CAP_SYS_ADMIN, a kernel
  // without the ioctl) turns passthrough off for the mount, logged once.
  int backing_open(int fd);
  // The kernel lets go of the id (files opened with it keep their own hold).
  void backing_close(int id);
  // While it lives, the CREATE reply this thread sends carries FOPEN_PASSTHROUGH
  // and `backing_id` (libfuse 3.14 cannot say either).
  class PassthroughReply {
   public:
    explicit PassthroughReply(int backing_id);
    ~PassthroughReply();
    PassthroughReply(const PassthroughReply&) = delete;
    PassthroughReply& operator=(const PassthroughReply&) = delete;
    // The reply went out with the backing id in it.
    bool sent() const;
  };

  // Called from init, before the INIT reply: serve requests over io_uring
  // (uring_loop.h) if the kernel offers it, with `per_queue` threads per CPU;
  // `served` counts the requests served that way.
  void want_uring(bool on, unsigned per_queue, std::atomic<uint64_t>* served) {
    want_uring_ = on;
    uring_per_queue_ = per_queue;
    uring_served_ = served;
  }
  // Joins the ring threads. After unmounting, before the session is destroyed.
  void stop_uring();

  // Notes what the handler of this request, about to run on this thread, must
  // know (kill_suidgid). `buf`: the request as read from /dev/fuse.
  static void note_request(const void* buf, size_t len);

  // The request this thread is handling asks the filesystem to clear the
  // set-user-id bit, and the set-group-id bit if group execution is allowed.
  static bool kill_suidgid();

  // Clears them on the file behind `fd` as the kernel would; 0 or an errno.
  static int kill_suidgid(int fd);

 private:
  // libfuse passes the session's userdata, the Filesystem, which owns this.
  static ssize_t read(int fd, void* buf, size_t len, void* userdata);
  static ssize_t writev(int fd, struct iovec* iov, int count, void* userdata);
  static ssize_t splice_send(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                             unsigned int flags, void* userdata);

  RequestLoop* loop_ = nullptr;
  std::atomic<uint64_t> init_unique_{0};  // the INIT request, until it is answered
  std::atomic<bool> offered_{false};
  std::atomic<bool> negotiated_{false};
  std::atomic<bool> mmap_offered_{false};
  std::atomic<bool> direct_io_mmap_{false};
  std::atomic<bool> passthrough_offered_{false};
  bool want_passthrough_ = false;
  std::atomic<bool> passthrough_{false};
  int dev_fd_ = -1;  // the session's /dev/fuse descriptor, for the backing ioctls
  fuse_session* se_ = nullptr;
  bool want_uring_ = false;
  unsigned uring_per_queue_ = 1;
  std::atomic<uint64_t>* uring_served_ = nullptr;
  std::atomic<bool> uring_offered_{false};
  std::unique_ptr<UringLoop> uring_;  // set once, by the INIT reply
};

}  // namespace cachefs

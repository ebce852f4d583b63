// FUSE over io_uring (Linux 6.14+): the kernel hands requests to the daemon
// through io_uring commands instead of read(2) on /dev/fuse, one queue per CPU.
//
// Why: a build's metadata bursts (untar, rm -rf) are bound by the round trip,
// and on /dev/fuse each one crosses CPUs twice: the caller sleeps on its CPU
// while a worker on the other reads, answers, and wakes it with an IPI. Over
// io_uring a request is queued for the caller's own CPU and served by a thread
// pinned there, so the round trip is two context switches on one CPU, and the
// answer and the fetch of the next request are one system call.
//
// libfuse 3.14 knows nothing of it. The INIT reply gets FUSE_OVER_IO_URING from
// KernelIo; this class then registers, for every possible CPU, `per_queue`
// threads, each with its own ring and one entry (a header block and a payload
// buffer). The kernel gives a request to the entry made available last, so the
// thread that just answered takes the next one while the others sleep, and a
// request that blocks (a cold disk, an fsync) leaves the others to serve its
// CPU. Each request is laid out as libfuse expects it from read(2) and handed to
// fuse_session_process_buf; KernelIo's writev hook passes the reply back here
// (take_reply), and the thread commits it and fetches the next request in one
// io_uring_enter. FORGETs and INTERRUPTs still come through /dev/fuse, to the
// RequestLoop.
//
// Until every queue has an entry the kernel holds all requests; if one cannot
// be registered, a deliberately invalid registration makes the kernel give up
// io_uring for the connection, and /dev/fuse serves everything as before.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

namespace cachefs {

class UringLoop {
 public:
  UringLoop(fuse_session* se, std::atomic<uint64_t>& served);
  ~UringLoop();
  UringLoop(const UringLoop&) = delete;
  UringLoop& operator=(const UringLoop&) = delete;

  // Whether this process can set up a ring of 128-byte entries (io_uring may be
  // disabled by sysctl, or the kernel too old). Before the INIT reply.
  static bool usable();

  // The number of queues the kernel expects: one per possible CPU (0 if
  // /sys does not say).
  static unsigned queue_count();

  // After the INIT reply went out with FUSE_OVER_IO_URING: starts the threads,
  // which register their entries. `payload` is the connection's largest
  // request or reply body.
  void start(unsigned per_queue, size_t payload);

  // Wakes and joins the threads; their rings' exit cancels what the kernel still
  // holds. Before the session is destroyed.
  void stop();

  // Called with each reply (libfuse's iovec, out header first). True if it
  // answered the request this thread is serving from its ring; `*n` then
  // gets writev(2)'s result.
  static bool take_reply(const iovec* iov, int count, ssize_t* n);
  // Where a READ served from a ring can put its data so the reply needs no
  // copy (empty if this thread is not serving one).
  static std::span<unsigned char> reply_buffer();

  struct Entry;  // one registered request slot (uring_loop.cc)

 private:
  void serve(unsigned qid, unsigned slot);
  void give_up(const char* why, int err);

  fuse_session* se_;
  std::atomic<uint64_t>& served_;
  int dev_fd_ = -1;
  int stop_fd_ = -1;
  size_t payload_ = 0;
  // CACHEFS_TEST_URING_FAIL_QUEUE=N: queue N fails to set up, as one whose ring
  // cannot be made would (tests of give_up); -1: none.
  long fail_queue_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> given_up_{false};
  std::atomic<bool> serving_logged_{false};
  std::vector<std::thread> threads_;
};

}  // namespace cachefs

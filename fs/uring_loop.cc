#include "fs/uring_loop.h"

#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "common/log.h"
#include "common/signals.h"
#include "fs/fuse_abi.h"
#include "fs/kernel_io.h"

namespace cachefs {
namespace {

// The FUSE-over-io_uring ABI (linux/fuse.h, protocol 7.42).
constexpr size_t kInOutSize = 128;                    // FUSE_URING_IN_OUT_HEADER_SZ
constexpr size_t kOpInSize = 128;                     // FUSE_URING_OP_IN_OUT_SZ
constexpr size_t kEntInOut = kInOutSize + kOpInSize;  // struct fuse_uring_ent_in_out
constexpr size_t kPayloadSzAt = kEntInOut + 16;       // its payload_sz
constexpr size_t kHeaderSize = kEntInOut + 32;        // struct fuse_uring_req_header
constexpr uint32_t kCmdRegister = 1;                  // FUSE_IO_URING_CMD_REGISTER
constexpr uint32_t kCmdCommitAndFetch = 2;            // FUSE_IO_URING_CMD_COMMIT_AND_FETCH
struct CmdReq {                                       // struct fuse_uring_cmd_req
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};
static_assert(sizeof(CmdReq) == 24);

using fuse_abi::InHeader;
using fuse_abi::kOpWrite;
using fuse_abi::OutHeader;

constexpr uint64_t kTagEntry = 1;
constexpr uint64_t kTagStop = 2;
// Room before the payload for the request's headers, so a WRITE's data is
// handed to libfuse where the kernel put it.
constexpr size_t kLead = 4096;

void prep_cmd(io_uring_sqe* sqe, int fd, uint32_t op, uint16_t qid, uint64_t commit_id,
              const iovec* iov) {
  // A 128-byte entry: the command area runs past struct io_uring_sqe, which
  // the compiler must not be allowed to assume.
  void* raw = sqe;
  asm("" : "+r"(raw));
  std::memset(raw, 0, 2 * sizeof(io_uring_sqe));
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = fd;
  sqe->cmd_op = op;
  if (iov != nullptr) {
    sqe->addr = reinterpret_cast<uint64_t>(iov);
    sqe->len = 2;
  }
  CmdReq req{};
  req.commit_id = commit_id;
  req.qid = qid;
  std::memcpy(static_cast<unsigned char*>(raw) + offsetof(io_uring_sqe, cmd), &req, sizeof req);
  sqe->user_data = kTagEntry;
}

}  // namespace

#if defined(__SANITIZE_THREAD__)
// liburing maps its rings with raw system calls, which ThreadSanitizer does not
// see: a ring mapped where another thread's ring was unmapped looks like that
// thread's memory, raced on. Each ring is only ever touched by the thread that
// owns it, so accesses to ring memory (liburing's inline functions, and
// prep_cmd here) are left out of the reports.
extern "C" const char* __tsan_default_suppressions() {
  return "race:liburing.h\nrace:prep_cmd\n";
}
#endif

struct UringLoop::Entry {
  alignas(64) unsigned char headers[kHeaderSize]{};
  unsigned char* area = nullptr;  // kLead bytes, then the payload
  unsigned char* payload = nullptr;
  size_t payload_size = 0;
  iovec iov[2]{};
  uint64_t unique = 0;  // of the request being served
  bool replied = false;
  std::vector<unsigned char> scratch;  // requests other than WRITE are copied here

  explicit Entry(size_t size) : payload_size(size) {
    void* p = nullptr;
    if (::posix_memalign(&p, 4096, kLead + size) != 0) throw std::bad_alloc();
    area = static_cast<unsigned char*>(p);
    payload = area + kLead;
    iov[0] = {headers, sizeof headers};
    iov[1] = {payload, size};
  }
  ~Entry() { std::free(area); }
  Entry(const Entry&) = delete;
  Entry& operator=(const Entry&) = delete;

  void set_payload_size(uint32_t n) { std::memcpy(headers + kPayloadSzAt, &n, sizeof n); }
};

namespace {
thread_local UringLoop::Entry* t_entry = nullptr;
}  // namespace

UringLoop::UringLoop(fuse_session* se, std::atomic<uint64_t>& served)
    : se_(se), served_(served), dev_fd_(fuse_session_fd(se)) {
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

UringLoop::~UringLoop() {
  stop();
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

bool UringLoop::usable() {
  // The kernel holds every request until each queue has an entry: without
  // knowing how many it expects, do not ask for it.
  if (queue_count() == 0) return false;
  io_uring ring{};
  if (io_uring_queue_init(2, &ring, IORING_SETUP_SQE128) != 0) return false;
  io_uring_queue_exit(&ring);
  return true;
}

unsigned UringLoop::queue_count() {
  // "0-3" or "0,2-5": the highest CPU number plus one (the kernel's
  // num_possible_cpus() on the usual contiguous numbering).
  std::ifstream f("/sys/devices/system/cpu/possible");
  std::string s;
  if (!std::getline(f, s) || s.empty()) return 0;
  unsigned highest = 0;
  unsigned cur = 0;
  bool digits = false;
  for (char c : s) {
    if (c >= '0' && c <= '9') {
      cur = cur * 10 + static_cast<unsigned>(c - '0');
      digits = true;
    } else {
      if (digits && cur > highest) highest = cur;
      cur = 0;
      digits = false;
    }
  }
  if (digits && cur > highest) highest = cur;
  // A numbering with gaps makes this larger than the kernel's count: the
  // registration for the highest queue then fails, and the kernel gives
  // io_uring up for the connection (served through /dev/fuse).
  return highest + 1;
}

void UringLoop::start(unsigned per_queue, size_t payload) {
  if (stop_fd_ < 0) {
    give_up("eventfd", errno);
    return;
  }
  payload_ = payload;
  if (const char* v = std::getenv("CACHEFS_TEST_URING_FAIL_QUEUE"); v != nullptr && *v != '\0') {
    fail_queue_ = std::strtol(v, nullptr, 10);
  }
  const unsigned queues = queue_count();
  if (per_queue == 0) per_queue = 1;
  const SignalsBlocked blocked;
  try {
    for (unsigned q = 0; q < queues; ++q) {
      for (unsigned s = 0; s < per_queue; ++s) threads_.emplace_back([this, q, s] { serve(q, s); });
    }
  } catch (const std::system_error& e) {
    // A queue without a thread would hold every request: give io_uring up
    // (threads already started are stopped with the loop).
    give_up("cannot start a thread", e.code().value());
  }
  spdlog::debug("io_uring: {} queue(s), {} thread(s) each, payload {} bytes", queues, per_queue,
                payload);
}

void UringLoop::stop() {
  if (stopping_.exchange(true)) return;
  const uint64_t one = 1;
  if (stop_fd_ >= 0) [[maybe_unused]]
    const ssize_t n = ::write(stop_fd_, &one, sizeof one);
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void UringLoop::give_up(const char* why, int err) {
  if (given_up_.exchange(true)) return;
  spdlog::warn("io_uring: {}: {}; requests go through /dev/fuse", why, std::strerror(err));
  // An invalid queue number makes the kernel drop io_uring for the connection
  // and release the requests it holds until every queue is registered.
  io_uring ring{};
  if (const int r = io_uring_queue_init(2, &ring, IORING_SETUP_SQE128); r != 0) {
    spdlog::error("io_uring: cannot release the kernel's queues ({}): unmounting",
                  std::strerror(-r));
    fuse_session_exit(se_);
    return;
  }
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  prep_cmd(sqe, dev_fd_, kCmdRegister, 0xffff, 0, nullptr);
  io_uring_submit_and_wait(&ring, 1);
  io_uring_queue_exit(&ring);
}

void UringLoop::serve(unsigned qid, unsigned slot) {
  // Requests from tasks on CPU `qid` come to this queue: serving them there
  // keeps the round trip on one CPU. Outside the allowed CPUs, unpinned.
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(qid, &cpus);
  ::pthread_setaffinity_np(::pthread_self(), sizeof cpus, &cpus);
  // Sharing the CPU with the callers, a woken thread must not preempt a caller
  // that is still running (for a RELEASE or another request nobody waits for):
  // it runs when the caller next waits, which for most requests is at once.
  sched_param batch{};
  ::sched_setscheduler(0, SCHED_BATCH, &batch);

  if (static_cast<long>(qid) == fail_queue_) {
    if (slot == 0) give_up("queue failed on purpose (CACHEFS_TEST_URING_FAIL_QUEUE)", ECANCELED);
    return;
  }
  io_uring ring{};
  // One submitter, and completions run when it waits: no signal to this thread.
  int r = io_uring_queue_init(
      4, &ring, IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  if (r == -EINVAL) r = io_uring_queue_init(4, &ring, IORING_SETUP_SQE128);
  if (r != 0) {
    if (slot == 0) give_up("cannot set up a ring", -r);
    return;
  }
  std::unique_ptr<Entry> entry;
  try {
    entry = std::make_unique<Entry>(payload_);
  } catch (const std::bad_alloc&) {
    io_uring_queue_exit(&ring);
    if (slot == 0) give_up("no memory for a ring entry", ENOMEM);
    return;
  }
  Entry& e = *entry;
  if (given_up_.load()) {
    io_uring_queue_exit(&ring);
    return;
  }
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_poll_add(sqe, stop_fd_, POLLIN);
  io_uring_sqe_set_data64(sqe, kTagStop);
  prep_cmd(io_uring_get_sqe(&ring), dev_fd_, kCmdRegister, static_cast<uint16_t>(qid), 0, e.iov);
  io_uring_submit(&ring);

  fuse_buf buf{};
  while (!stopping_.load(std::memory_order_relaxed)) {
    io_uring_cqe* cqe = nullptr;
    r = io_uring_wait_cqe(&ring, &cqe);
    if (r == -EINTR) continue;
    if (r != 0) {
      spdlog::error("io_uring: waiting on queue {}: {}", qid, std::strerror(-r));
      break;
    }
    const uint64_t tag = cqe->user_data;
    const int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    if (tag == kTagStop) break;
    if (res < 0) {
      // ENOTCONN/ECANCELED: the connection is going away. Anything else: the
      // kernel refused the entry and serves through /dev/fuse.
      if (res != -ENOTCONN && res != -ECANCELED) {
        spdlog::warn("io_uring: queue {}: {}; requests go through /dev/fuse", qid,
                     std::strerror(-res));
      }
      break;
    }
    if (!serving_logged_.exchange(true)) spdlog::info("io_uring: serving requests");

    // The request, laid out as read(2) would give it: header, the opcode's own
    // arguments, then the payload (names, data).
    InHeader in{};
    std::memcpy(&in, e.headers, sizeof in);
    uint32_t payload_sz = 0;
    std::memcpy(&payload_sz, e.headers + kPayloadSzAt, sizeof payload_sz);
    e.unique = in.unique;
    e.replied = false;
    // The opcode's own arguments are what the length leaves after the payload.
    const bool sane = payload_sz <= e.payload_size && in.len >= sizeof in + payload_sz &&
                      in.len - sizeof in - payload_sz <= kOpInSize;
    const size_t fixed = sane ? in.len - payload_sz : 0;  // header + the opcode's arguments
    if (!sane) {
      spdlog::error("io_uring: malformed request (opcode {}, length {})", in.opcode, in.len);
    } else {
      unsigned char* start;
      if (in.opcode == kOpWrite) {
        start = e.payload - fixed;  // the data stays where it is
      } else {
        if (e.scratch.size() < fixed + payload_sz) e.scratch.resize(fixed + payload_sz);
        start = e.scratch.data();
        std::memcpy(start + fixed, e.payload, payload_sz);
      }
      std::memcpy(start, &in, sizeof in);
      std::memcpy(start + sizeof in, e.headers + kInOutSize, fixed - sizeof in);
      buf.mem = start;
      buf.size = in.len;
      buf.flags = fuse_buf_flags{};
      KernelIo::note_request(start, in.len);
      t_entry = &e;
      fuse_session_process_buf(se_, &buf);
      t_entry = nullptr;
      served_.fetch_add(1, std::memory_order_relaxed);
    }
    if (!e.replied) {
      // Every request that comes this way expects an answer; one that libfuse
      // sent elsewhere (spliced to /dev/fuse, which knows nothing of it) or
      // never sent gets an error rather than holding the entry.
      const OutHeader out{sizeof(OutHeader), -EIO, in.unique};
      std::memcpy(e.headers, &out, sizeof out);
      e.set_payload_size(0);
    }
    prep_cmd(io_uring_get_sqe(&ring), dev_fd_, kCmdCommitAndFetch, static_cast<uint16_t>(qid),
             in.unique, nullptr);
    io_uring_submit_and_wait(&ring, 1);
  }
  io_uring_queue_exit(&ring);
}

bool UringLoop::take_reply(const iovec* iov, int count, ssize_t* n) {
  Entry* e = t_entry;
  if (e == nullptr || e->replied || count < 1 || iov[0].iov_len < sizeof(OutHeader)) return false;
  OutHeader out{};
  std::memcpy(&out, iov[0].iov_base, sizeof out);
  if (out.unique != e->unique) return false;
  size_t body = iov[0].iov_len - sizeof out;
  for (int i = 1; i < count; ++i) body += iov[i].iov_len;
  if (body > e->payload_size) {
    out.error = -EIO;
    body = 0;
  } else {
    unsigned char* to = e->payload;
    auto put = [&to](const void* from, size_t len) {
      if (from != to && len > 0) std::memmove(to, from, len);
      to += len;
    };
    put(static_cast<const unsigned char*>(iov[0].iov_base) + sizeof out,
        iov[0].iov_len - sizeof out);
    for (int i = 1; i < count; ++i) put(iov[i].iov_base, iov[i].iov_len);
  }
  out.len = static_cast<uint32_t>(sizeof out + body);
  std::memcpy(e->headers, &out, sizeof out);
  e->set_payload_size(static_cast<uint32_t>(body));
  e->replied = true;
  // As writev(2) would have: everything libfuse handed over was taken.
  *n = 0;
  for (int i = 0; i < count; ++i) *n += static_cast<ssize_t>(iov[i].iov_len);
  return true;
}

std::span<unsigned char> UringLoop::reply_buffer() {
  Entry* e = t_entry;
  if (e == nullptr || e->replied) return {};
  return {e->payload, e->payload_size};
}

}  // namespace cachefs

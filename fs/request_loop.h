// The daemon's request loop, in place of libfuse's fuse_session_loop_mt.
//
// A FUSE round trip is dominated by wake-ups. With libfuse's loop every idle
// worker sleeps in read(2) on /dev/fuse, and each request wakes one of them,
// usually on the other CPU: a GETATTR round trip costs ~20 µs on the 2-vCPU
// test machines, ~11 µs when a worker is already running and finds the request
// waiting (bench/README.md). Here:
//
// * One worker is the listener. After each request it busy-polls the device
//   for up to --busy-poll µs before it sleeps in poll(2), and it spins only
//   while requests keep arriving inside that window (a build's metadata
//   bursts: untar, rm -rf), so an idle or slowly used mount costs no CPU.
// * The other workers wait in user space, not in the kernel's queue, so a
//   request wakes nobody. When a listener finds requests already queued (more
//   than one client at work), it calls one more worker to listen beside it, so
//   a parallel build is served by as many workers as it keeps busy; a worker
//   that then finds nothing within its window goes back to waiting, and at
//   most one ever sleeps in poll(2).
// * One waiting worker, the watch, looks every kWatchPeriod: when one request
//   has held the only listener for a whole kTakeover (a cold disk, an fsync)
//   and nobody listens, the watch becomes a listener. Slow requests still
//   overlap, up to --threads at once.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "common/json.h"

namespace cachefs {

// How the listener came by each request it read (the mount's stats, so an
// operator can see whether --busy-poll fits the host): the request was already
// waiting, came while it busy-polled, or came after it had gone to sleep in
// poll(2). For the last two, how long after the listener finished its previous
// request the next one arrived: requests that keep coming a little later than
// the window (on a host whose round trips are slower) are the ones a wider
// --busy-poll would catch; gaps of a millisecond and more are pauses, which no
// window should span.
struct ListenerCounters {
  static constexpr std::array<unsigned, 6> kGapBoundsUs{25, 50, 100, 200, 500, 1000};

  // The busy-poll window in force (0 over io_uring): the one the loop polls by.
  std::atomic<unsigned> window_us{0};
  std::atomic<uint64_t> called{0};     // workers called to listen beside the others
  std::atomic<uint64_t> watch_looks{0};  // times the watch woke to look (RequestLoop::standby)
  std::atomic<uint64_t> found_waiting{0};
  std::atomic<uint64_t> caught_polling{0};
  std::atomic<uint64_t> after_sleep{0};
  std::array<std::atomic<uint64_t>, kGapBoundsUs.size() + 1> gaps{};  // the last: longer

  // One more request of `kind` (caught_polling or after_sleep), which came
  // `gap_ns` after the listener's previous one.
  void count(std::atomic<uint64_t>& kind, int64_t gap_ns);
  Json json() const;
};

class RequestLoop {
 public:
  // The period after which a listener busy with one request is replaced, and
  // how often the watch looks for one (so a stuck request waits for a worker
  // kTakeover to kWatchPeriod + kTakeover).
  static constexpr std::chrono::microseconds kTakeover{200};
  static constexpr std::chrono::microseconds kWatchPeriod{2000};

  RequestLoop(fuse_session* se, unsigned threads, unsigned busy_poll_us,
              ListenerCounters& counters);
  ~RequestLoop();
  RequestLoop(const RequestLoop&) = delete;
  RequestLoop& operator=(const RequestLoop&) = delete;

  // Serves requests until the filesystem is unmounted or a signal asks the
  // session to exit. 0, or -1 if a worker could not be started or the device
  // failed.
  int run();

  // Stops busy-polling for good: requests now come over io_uring, and only
  // FORGETs and INTERRUPTs through the device, which are not worth a CPU.
  void stop_polling() { counters_.window_us.store(0, std::memory_order_relaxed); }

  // The listener's read of the device (KernelIo::read calls it): busy-poll, then
  // sleep in poll(2) until a request or the stop event. read(2)'s contract.
  ssize_t read_request(int fd, void* buf, size_t len);

 private:
  int64_t spin_ns() const;  // the window in force, from the counters that report it
  void worker();
  void standby();  // until this thread should try to listen again
  bool may_listen();
  void call_one();  // wakes a waiting worker
  void stop();

  fuse_session* se_;
  const unsigned threads_;
  ListenerCounters& counters_;
  int stop_fd_ = -1;  // eventfd, readable once stopping

  std::atomic<bool> stopping_{false};
  std::atomic<bool> failed_{false};
  std::atomic<int> listeners_{0};   // workers in read_request
  std::atomic<int> recruits_{0};    // workers called to listen beside the others
  std::atomic<int> waiting_{0};     // workers waiting to be called
  std::atomic<bool> sleeper_{false};  // a listener sleeps in poll(2)
  std::atomic<bool> watching_{false};   // a worker is the watch
  std::atomic<uint64_t> served_{0};     // requests read so far
  std::atomic<bool> quick_{true};       // the last request came within the spin window
  // 1 while the listener sleeps in poll(2): the mount is idle, the watch sleeps too.
  std::atomic<uint32_t> idle_{0};
  std::atomic<uint32_t> standby_seq_{0};  // bumped to call a waiting worker
};

}  // namespace cachefs

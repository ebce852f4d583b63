#include "fs/request_loop.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/signals.h"

namespace cachefs {
namespace {

int64_t now_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

void ListenerCounters::count(std::atomic<uint64_t>& kind, int64_t gap_ns) {
  kind.fetch_add(1, std::memory_order_relaxed);
  size_t i = 0;
  while (i < kGapBoundsUs.size() && gap_ns > int64_t{kGapBoundsUs[i]} * 1000) ++i;
  gaps[i].fetch_add(1, std::memory_order_relaxed);
}

int64_t RequestLoop::spin_ns() const {
  return int64_t{counters_.window_us.load(std::memory_order_relaxed)} * 1000;
}

Json ListenerCounters::json() const {
  auto c = [](const std::atomic<uint64_t>& v) { return v.load(std::memory_order_relaxed); };
  Json g = Json::object();
  for (size_t i = 0; i < kGapBoundsUs.size(); ++i) {
    g.set("up_to_" + std::to_string(kGapBoundsUs[i]) + "us", c(gaps[i]));
  }
  g.set("longer", c(gaps[kGapBoundsUs.size()]));
  Json j = Json::object();
  j.set("busy_poll_us", window_us.load(std::memory_order_relaxed))
      .set("found_waiting", c(found_waiting))
      .set("caught_polling", c(caught_polling))
      .set("after_sleep", c(after_sleep))
      .set("gap_before_request", std::move(g))
      .set("workers_called", c(called))
      .set("watch_looks", c(watch_looks));
  return j;
}

RequestLoop::RequestLoop(fuse_session* se, unsigned threads, unsigned busy_poll_us,
                         ListenerCounters& counters)
    : se_(se), threads_(threads == 0 ? 1 : threads), counters_(counters) {
  counters_.window_us.store(busy_poll_us, std::memory_order_relaxed);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

RequestLoop::~RequestLoop() {
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

int RequestLoop::run() {
  if (stop_fd_ < 0) {
    spdlog::error("request loop: eventfd: {}", std::strerror(errno));
    return -1;
  }
  // The listener polls; replies from any worker are writes, which never block.
  const int fd = fuse_session_fd(se_);
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    spdlog::error("request loop: cannot make /dev/fuse non-blocking: {}", std::strerror(errno));
    return -1;
  }
  // Workers take no signals: SIGTERM/SIGINT reach this thread, whose wait below
  // they interrupt (libfuse's handlers only mark the session as exited).
  std::vector<std::thread> workers;
  {
    const SignalsBlocked blocked;
    try {
      for (unsigned i = 0; i < threads_; ++i) workers.emplace_back([this] { worker(); });
    } catch (const std::system_error& e) {
      spdlog::error("request loop: cannot start worker {}: {}", workers.size() + 1, e.what());
      failed_ = true;
    }
  }
  while (!failed_.load() && !stopping_.load() && !fuse_session_exited(se_)) {
    pollfd p{stop_fd_, POLLIN, 0};
    ::poll(&p, 1, 1000);  // a signal ends it early (EINTR); the timeout is a backstop
  }
  stop();
  for (std::thread& t : workers) t.join();
  return failed_.load() ? -1 : 0;
}

void RequestLoop::stop() {
  stopping_ = true;
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(stop_fd_, &one, sizeof one);
  idle_ = 0;
  idle_.notify_all();
  ++standby_seq_;
  standby_seq_.notify_all();
}

// The first listener needs no invitation; more listen only when called.
bool RequestLoop::may_listen() {
  if (listeners_.load() == 0) return true;
  int r = recruits_.load();
  while (r > 0) {
    if (recruits_.compare_exchange_weak(r, r - 1)) return true;
  }
  return false;
}

void RequestLoop::call_one() {
  ++standby_seq_;
  standby_seq_.notify_one();
}

void RequestLoop::worker() {
  fuse_buf buf{};
  while (!stopping_.load()) {
    if (may_listen()) {
      ++listeners_;
      const int res = fuse_session_receive_buf(se_, &buf);
      --listeners_;
      if (res > 0) {
        ++served_;
        fuse_session_process_buf(se_, &buf);
        continue;
      }
      if (res == -EINTR) continue;  // the stop event, or a signal
      if (res != -EAGAIN) {
        // 0: unmounted (ENODEV) or the session exited; below 0: the device failed.
        if (res < 0) {
          spdlog::error("request loop: reading /dev/fuse: {}", std::strerror(-res));
          failed_ = true;
        }
        fuse_session_exit(se_);
        stop();
        break;
      }
      // EAGAIN: nothing came and another listener sleeps in poll(2): wait.
    }
    standby();
  }
  std::free(buf.mem);
}

void RequestLoop::standby() {
  if (watching_.exchange(true)) {
    // Somebody watches: wait until called (to listen, or to watch).
    const uint32_t seq = standby_seq_.load();
    ++waiting_;
    if (watching_.load() && recruits_.load() == 0 && !stopping_.load()) standby_seq_.wait(seq);
    --waiting_;
    return;
  }
  // The watch: take over when one request has held the listener for a whole
  // kTakeover with nobody listening. It looks every kWatchPeriod, and a look
  // that finds nobody listening looks again after kTakeover. (Looking every
  // kTakeover made five times the timer wake-ups in a burst, on CPUs the
  // clients need: an untar or rm -rf took a few per cent longer on average.)
  const auto look_after = [this](std::chrono::microseconds wait) {
    std::this_thread::sleep_for(wait);
    counters_.watch_looks.fetch_add(1, std::memory_order_relaxed);
  };
  while (!stopping_.load()) {
    if (idle_.load() == 1) {  // a listener sleeps: nothing is being served
      idle_.wait(1);
      continue;
    }
    look_after(kWatchPeriod);
    if (listeners_.load() != 0) continue;
    const uint64_t at = served_.load();
    look_after(kTakeover);
    if (listeners_.load() == 0 && served_.load() == at) break;
  }
  watching_ = false;
  call_one();  // a waiting worker becomes the next watch
}

ssize_t RequestLoop::read_request(int fd, void* buf, size_t len) {
  const int64_t start = now_ns();
  // Requests already queued twice running (not just a FORGET or RELEASE the
  // kernel sent behind a request): more than this worker is needed.
  thread_local int backlog = 0;
  ssize_t n = ::read(fd, buf, len);
  if (n >= 0 || errno != EAGAIN) {
    if (n > 0) counters_.found_waiting.fetch_add(1, std::memory_order_relaxed);
    if (n > 0 && ++backlog >= 2 && waiting_.load() > 0 && recruits_.load() == 0) {
      backlog = 0;
      ++recruits_;
      counters_.called.fetch_add(1, std::memory_order_relaxed);
      call_one();
    }
    return n;
  }
  backlog = 0;
  // Only a lone listener spins, while requests keep coming.
  const int64_t window = spin_ns();
  if (window > 0 && quick_.load(std::memory_order_relaxed) && listeners_.load() == 1) {
    do {
      cpu_relax();
      n = ::read(fd, buf, len);
      if (n >= 0 || errno != EAGAIN) {
        if (n > 0) counters_.count(counters_.caught_polling, now_ns() - start);
        return n;
      }
    } while (now_ns() - start < window);
  }
  // Nothing within the window: sleep in poll(2), unless another listener does.
  if (sleeper_.exchange(true)) {
    errno = EAGAIN;
    return -1;
  }
  for (;;) {
    pollfd p[2] = {{fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    idle_ = 1;
    const int r = ::poll(p, 2, -1);
    idle_ = 0;
    idle_.notify_all();
    if (r < 0 || p[1].revents != 0) {
      sleeper_ = false;
      if (r >= 0) errno = EINTR;  // the stop event: the worker loop looks at stopping_
      return -1;
    }
    n = ::read(fd, buf, len);
    if (n >= 0 || errno != EAGAIN) {
      sleeper_ = false;
      const int64_t gap = now_ns() - start;
      quick_.store(gap < spin_ns(), std::memory_order_relaxed);
      if (n > 0) counters_.count(counters_.after_sleep, gap);
      return n;
    }
  }
}

}  // namespace cachefs

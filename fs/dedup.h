// Background dedup of what builds write through the mount. A file changed
// through the mount is queued; once it has gone unchanged for --dedup-delay it
// is hashed off the request path and either linked to an identical object
// (bytes compared first) or made a new one. No close event is needed (the
// kernel never sends OPEN/RELEASE here): a file still being written simply
// changes again, which either defers the attempt or, after it, turns the path
// back into a private copy on its next write.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <atomic>
#include <deque>
#include <mutex>
#include <thread>

namespace cachefs {

class Filesystem;
struct Node;

class Deduper {
 public:
  Deduper(Filesystem& fs, double delay_seconds);
  ~Deduper();
  Deduper(const Deduper&) = delete;
  Deduper& operator=(const Deduper&) = delete;

  void start();
  // Queues `n` (holding a lookup on it) unless it is queued already.
  void schedule(Node* n);
  // A change was made through the mount. Dedup waits for the whole mount to be
  // quiet for the delay (an untar's metadata work and dedup's share one journal
  // and two CPUs), but never defers a file longer than kMaxDefer.
  void note_write() {
    last_write_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                         std::memory_order_relaxed);
  }
  static constexpr std::chrono::seconds kMaxDefer{30};
  // A file another descriptor is writing (it holds the write lock) is looked at
  // again after this, or --dedup-delay if longer.
  static constexpr std::chrono::seconds kBusyBackoff{1};
  // Processes what is queued without waiting (for at most `budget`), drops the
  // rest, and stops the worker.
  void stop(std::chrono::seconds budget = std::chrono::seconds(20));

 private:
  struct Entry {
    Node* node;
    uint64_t gen;  // write_gen when queued or last looked at
    std::chrono::steady_clock::time_point due;
    std::chrono::steady_clock::time_point queued;
    int attempts = 0;
  };
  void run();
  void finish(Entry& e);

  Filesystem& fs_;
  const std::chrono::nanoseconds delay_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Entry> queue_;  // in order of `due`
  bool stopping_ = false;
  std::chrono::steady_clock::time_point stop_deadline_;
  std::thread worker_;
  std::atomic<int64_t> last_write_ns_{0};
};

}  // namespace cachefs

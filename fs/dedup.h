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
  // Processes what is queued without waiting (for at most `budget`), drops the
  // rest, and stops the worker.
  void stop(std::chrono::seconds budget = std::chrono::seconds(20));

 private:
  struct Entry {
    Node* node;
    uint64_t gen;  // write_gen when queued or last looked at
    std::chrono::steady_clock::time_point due;
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
};

}  // namespace cachefs

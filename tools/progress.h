// A progress line on stderr for long work, drawn only when stderr is a terminal
// (so logs, pipes and tests see nothing of it).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace cachefs::tools {

class Progress {
 public:
  // `unit` names what is counted ("files", "objects"). Totals of 0 are unknown.
  Progress(std::string label, std::string unit, uint64_t total_items = 0, uint64_t total_bytes = 0);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  bool shown() const { return shown_; }
  void add(uint64_t items, uint64_t bytes) {
    items_.fetch_add(items, std::memory_order_relaxed);
    bytes_.fetch_add(bytes, std::memory_order_relaxed);
  }
  void set_totals(uint64_t items, uint64_t bytes) {
    total_items_.store(items, std::memory_order_relaxed);
    total_bytes_.store(bytes, std::memory_order_relaxed);
  }
  // Stops drawing and clears the line (also done by the destructor).
  void finish();

 private:
  void draw();

  const std::string label_, unit_;
  const bool shown_;
  std::atomic<uint64_t> items_{0}, bytes_{0}, total_items_, total_bytes_;
  const std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread ticker_;
};

}  // namespace cachefs::tools

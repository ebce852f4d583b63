// A bounded queue feeding a fixed set of worker threads.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace cachefs::tools {

template <typename T>
class WorkQueue {
 public:
  // Starts `threads` workers, each calling `fn(item)` for items as they come.
  WorkQueue(unsigned threads, size_t capacity, std::function<void(T&)> fn)
      : capacity_(capacity), fn_(std::move(fn)) {
    for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { run(); });
  }
  ~WorkQueue() { close(); }

  // Blocks while the queue is full.
  void push(T item) {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [this] { return q_.size() < capacity_; });
    q_.push_back(std::move(item));
    not_empty_.notify_one();
  }
  // No more items: workers finish what is queued; returns when they are done.
  void close() {
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
    }
    not_empty_.notify_all();
    for (auto& w : workers_) w.join();
  }

 private:
  void run() {
    for (;;) {
      std::optional<T> item;
      {
        std::unique_lock lock(mu_);
        not_empty_.wait(lock, [this] { return closed_ || !q_.empty(); });
        if (q_.empty()) return;
        item.emplace(std::move(q_.front()));
        q_.pop_front();
        not_full_.notify_one();
      }
      fn_(*item);
    }
  }

  const size_t capacity_;
  std::function<void(T&)> fn_;
  std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<T> q_;
  bool closed_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace cachefs::tools

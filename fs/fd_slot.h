// Descriptors the daemon may close while nobody uses them.
//
// A cache can hold far more entries than a process may have open files (20,000
// here), so no node owns a descriptor for good: each lives in an FdSlot, an
// operation holds an FdLease while it uses it, and when the process holds more
// than its budget the least recently used idle slots are closed. The owner of a
// slot knows how to reopen it (by name from the parent directory's slot, checked
// against the inode it had). A pinned slot is never closed: the name it was
// reached by is gone (unlinked or replaced through the mount), so it could not be
// reopened.
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

#include "common/unique_fd.h"

namespace cachefs {

class FdSlot;

class FdLease {
 public:
  FdLease() = default;
  FdLease(FdSlot* s, int fd) : slot_(s), fd_(fd) {}
  FdLease(FdLease&& o) noexcept
      : slot_(std::exchange(o.slot_, nullptr)), fd_(std::exchange(o.fd_, -1)) {}
  FdLease& operator=(FdLease&& o) noexcept;
  FdLease(const FdLease&) = delete;
  FdLease& operator=(const FdLease&) = delete;
  ~FdLease();

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // Whether this descriptor holds a flock(2) the daemon took on it (see
  // FdSlot::flocked); a lease keeps the descriptor, and so the lock, open.
  bool flocked() const;
  void set_flocked(bool held) const;

 private:
  FdSlot* slot_ = nullptr;
  int fd_ = -1;
};

class FdSlot {
 public:
  FdSlot() = default;
  FdSlot(const FdSlot&) = delete;
  FdSlot& operator=(const FdSlot&) = delete;
  ~FdSlot();

  // A lease on the open descriptor, or an empty lease if the slot is closed.
  FdLease lease();
  // Installs `fd` unless the slot already holds one (then `fd` is closed); returns a
  // lease on whichever is installed.
  FdLease install(UniqueFd fd);
  // Closes the descriptor if it is open, unused and not pinned.
  bool evict();
  // Never close this descriptor again (it stays open until the slot dies).
  void pin();
  // Its owner is gone: unpin, and close the descriptor now unless it is in use.
  void retire();
  bool open() const;
  // The descriptor holds a flock(2) of the daemon's: set by whoever took it,
  // cleared when the descriptor is closed (closing the last descriptor of an
  // open file description releases its locks, so a reopened one holds none).
  bool flocked() const;
  void set_flocked(bool held);
  uint64_t last_use() const { return last_use_.load(std::memory_order_relaxed); }

  // Descriptors held by all slots, and the budget above which callers should evict.
  static int64_t open_count() { return open_count_.load(std::memory_order_relaxed); }

 private:
  friend class FdLease;
  void lock() const {
    while (locked_.exchange(true, std::memory_order_acquire)) {
    }
  }
  void unlock() const { locked_.store(false, std::memory_order_release); }
  void release();
  void touch();

  mutable std::atomic<bool> locked_{false};
  int fd_ = -1;           // guarded by locked_
  uint32_t users_ = 0;    // guarded by locked_
  bool pinned_ = false;   // guarded by locked_
  bool flocked_ = false;  // guarded by locked_
  std::atomic<uint64_t> last_use_{0};
  static std::atomic<int64_t> open_count_;
  static std::atomic<uint64_t> clock_;
};

}  // namespace cachefs

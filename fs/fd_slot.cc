#include "fs/fd_slot.h"

namespace cachefs {

std::atomic<int64_t> FdSlot::open_count_{0};
std::atomic<uint64_t> FdSlot::clock_{0};

FdLease& FdLease::operator=(FdLease&& o) noexcept {
  if (this != &o) {
    if (slot_ != nullptr) slot_->release();
    slot_ = std::exchange(o.slot_, nullptr);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

FdLease::~FdLease() {
  if (slot_ != nullptr) slot_->release();
}

bool FdLease::flocked() const {
  return slot_ != nullptr && slot_->flocked();
}

void FdLease::set_flocked(bool held) const {
  if (slot_ != nullptr) slot_->set_flocked(held);
}

FdSlot::~FdSlot() {
  if (fd_ >= 0) {
    ::close(fd_);
    open_count_.fetch_sub(1, std::memory_order_relaxed);
  }
}

void FdSlot::touch() {
  last_use_.store(clock_.fetch_add(1, std::memory_order_relaxed), std::memory_order_relaxed);
}

FdLease FdSlot::lease() {
  lock();
  if (fd_ < 0) {
    unlock();
    return {};
  }
  ++users_;
  const int fd = fd_;
  unlock();
  touch();
  return {this, fd};
}

FdLease FdSlot::install(UniqueFd fd) {
  lock();
  if (fd_ < 0) {
    fd_ = fd.release();
    open_count_.fetch_add(1, std::memory_order_relaxed);
  }
  ++users_;
  const int have = fd_;
  unlock();
  touch();
  return {this, have};  // a losing `fd` closes here
}

void FdSlot::release() {
  lock();
  --users_;
  unlock();
}

bool FdSlot::evict() {
  lock();
  if (fd_ < 0 || users_ > 0 || pinned_) {
    unlock();
    return false;
  }
  const int fd = fd_;
  fd_ = -1;
  flocked_ = false;  // the close below releases it
  unlock();
  ::close(fd);
  open_count_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

void FdSlot::retire() {
  lock();
  pinned_ = false;
  unlock();
  evict();
}

void FdSlot::pin() {
  lock();
  pinned_ = true;
  unlock();
}

bool FdSlot::flocked() const {
  lock();
  const bool f = flocked_;
  unlock();
  return f;
}

void FdSlot::set_flocked(bool held) {
  lock();
  flocked_ = held && fd_ >= 0;
  unlock();
}

bool FdSlot::open() const {
  lock();
  const bool o = fd_ >= 0;
  unlock();
  return o;
}

}  // namespace cachefs

// Owning file descriptor: the one way the project holds an fd it must close.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <utility>

namespace cachefs {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// "/proc/self/fd/N": the path that reaches fd's own inode (an O_PATH
// descriptor's too) without resolving any name, for calls that take a path.
// Kept in a buffer: request handlers use it, and it does not allocate.
class ProcFdPath {
 public:
  explicit ProcFdPath(int fd) { std::snprintf(buf_, sizeof buf_, "/proc/self/fd/%d", fd); }
  const char* c_str() const { return buf_; }

 private:
  char buf_[32];
};

// Opens fd's inode anew with `flags`: an O_PATH descriptor becomes one that
// reads or writes, and the open cannot land anywhere else.
inline UniqueFd reopen(int fd, int flags) {
  return UniqueFd(::open(ProcFdPath(fd).c_str(), flags));
}

}  // namespace cachefs

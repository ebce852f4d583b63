#include "store/hash.h"

#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace cachefs::store {
namespace {

constexpr size_t kChunk = 1 << 20;

struct StateFree {
  void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
};

Hash128 from_xxh(XXH128_hash_t h) {
  return Hash128{h.high64, h.low64};
}

// A per-thread read buffer: allocating 1 MiB per file (an mmap and its page
// faults) cost more than hashing a small file.
char* thread_buffer(int which) {
  thread_local std::unique_ptr<char[]> bufs[2];
  if (!bufs[which]) bufs[which].reset(new char[kChunk]);
  return bufs[which].get();
}

// Reads exactly `len` bytes at `off`; false with `err` set (EAGAIN: end of file).
bool read_full(int fd, char* buf, size_t len, uint64_t off, int& err) {
  size_t got = 0;
  while (got < len) {
    const ssize_t n = ::pread(fd, buf + got, len - got, static_cast<off_t>(off + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : EAGAIN;
      return false;
    }
    got += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

bool collide_for_tests() {
  static const bool on = [] {
    const char* v = std::getenv("CACHEFS_TEST_HASH_COLLIDE");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

std::string Hash128::hex() const {
  static const char* digits = "0123456789abcdef";
  std::string s(32, '0');
  for (int i = 0; i < 16; ++i) {
    s[15 - i] = digits[(hi >> (4 * i)) & 0xf];
    s[31 - i] = digits[(lo >> (4 * i)) & 0xf];
  }
  return s;
}

std::optional<Hash128> Hash128::parse(std::string_view hex) {
  if (hex.size() != 32) return std::nullopt;
  Hash128 h;
  for (size_t i = 0; i < 32; ++i) {
    const char c = hex[i];
    uint64_t v;
    if (c >= '0' && c <= '9')
      v = static_cast<uint64_t>(c - '0');
    else if (c >= 'a' && c <= 'f')
      v = static_cast<uint64_t>(c - 'a' + 10);
    else
      return std::nullopt;
    uint64_t& half = i < 16 ? h.hi : h.lo;
    half = (half << 4) | v;
  }
  return h;
}

Hash128 hash_bytes(const void* data, size_t len) {
  if (collide_for_tests()) return Hash128{0, len};
  return from_xxh(XXH3_128bits(data, len));
}

int hash_fd(int fd, uint64_t size, Hash128& out) {
  if (collide_for_tests()) {
    out = Hash128{0, size};
    return 0;
  }
  thread_local std::unique_ptr<XXH3_state_t, StateFree> state(XXH3_createState());
  if (!state || XXH3_128bits_reset(state.get()) != XXH_OK) return ENOMEM;
  char* buf = thread_buffer(0);
  uint64_t done = 0;
  while (done < size) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, size - done));
    const ssize_t n = ::pread(fd, buf, want, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EAGAIN;  // shrank while we read
    XXH3_128bits_update(state.get(), buf, static_cast<size_t>(n));
    done += static_cast<uint64_t>(n);
  }
  out = from_xxh(XXH3_128bits_digest(state.get()));
  return 0;
}

bool same_content(int a, int b, uint64_t size, int& err) {
  err = 0;
  char* ba = thread_buffer(0);
  char* bb = thread_buffer(1);
  uint64_t done = 0;
  while (done < size) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, size - done));
    if (!read_full(a, ba, want, done, err) || !read_full(b, bb, want, done, err)) {
      return false;
    }
    if (std::memcmp(ba, bb, want) != 0) return false;
    done += want;
  }
  return true;
}

}  // namespace cachefs::store

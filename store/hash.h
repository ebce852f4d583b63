// Content hashing for the store: XXH3-128 over a whole file, and a byte-for-byte
// comparison — a hash match alone never makes two files one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cachefs::store {

struct Hash128 {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool operator==(const Hash128&) const = default;
  std::string hex() const;  // 32 lowercase hex digits, high half first
  static std::optional<Hash128> parse(std::string_view hex);
};

// Hashes `size` bytes of `fd` from offset 0 (pread; the file offset is untouched).
// Returns 0 or an errno; EAGAIN when the file turned out shorter than `size`.
int hash_fd(int fd, uint64_t size, Hash128& out);

// Hashes a buffer (the same function hash_fd applies to a file's bytes).
Hash128 hash_bytes(const void* data, size_t len);

// True if the first `size` bytes of `a` and `b` are identical; errors are false
// with `err` set.
bool same_content(int a, int b, uint64_t size, int& err);

// Test hook: with CACHEFS_TEST_HASH_COLLIDE=1 in the environment every content of
// the same size hashes alike, so tests can prove that a collision never merges
// two different files. Read once per process.
bool collide_for_tests();

}  // namespace cachefs::store

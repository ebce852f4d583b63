// A directory's union listing, as readdir serves it.
//
// Entries are ordered by a cookie derived from the name, and a readdir offset is
// the cookie of the last entry returned, the way hash-ordered directories (ext4)
// do it. An offset therefore means the same thing in every listing of the
// directory, old or new, so the kernel can mix replies from several open handles
// into its readdir cache without duplicating or losing names.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

namespace cachefs {

struct DirListing {
  struct Entry {
    std::string name;
    uint64_t cookie;  // also the offset after this entry
    uint64_t ino;
    uint8_t type;  // DT_*
  };
  std::vector<Entry> entries;    // ".", "..", then by cookie
  uint64_t gen = 0;              // the directory's change generation it was built at
  std::vector<timespec> mtimes;  // per branch directory ({-1,-1}: absent)

  // Offsets "." and ".." use; cookies of names start above them.
  static constexpr uint64_t kDot = 1, kDotDot = 2, kFirst = 3;
  static uint64_t cookie_of(std::string_view name);
  // Sorts by cookie and makes cookies unique (a collision takes the next free one).
  void finish();
  // Index of the first entry after offset `off`.
  size_t after(uint64_t off) const;
};

}  // namespace cachefs

#include "fs/dir_listing.h"

#include <algorithm>
#include <functional>
#include <string_view>

namespace cachefs {

uint64_t DirListing::cookie_of(std::string_view name) {
  // Any hash stable for the daemon's lifetime will do: offsets never outlive the
  // kernel connection. 62 bits keep offsets positive and clear of kFirst.
  return (std::hash<std::string_view>()(name) >> 2) + kFirst;
}

void DirListing::finish() {
  auto names = entries.begin() + 2;  // "." and ".." stay first
  std::sort(names, entries.end(), [](const Entry& a, const Entry& b) {
    return a.cookie != b.cookie ? a.cookie < b.cookie : a.name < b.name;
  });
  for (auto it = names; it != entries.end(); ++it) {
    if (it != names && it->cookie <= (it - 1)->cookie) it->cookie = (it - 1)->cookie + 1;
  }
}

size_t DirListing::after(uint64_t off) const {
  return static_cast<size_t>(
      std::upper_bound(entries.begin(), entries.end(), off,
                       [](uint64_t o, const Entry& e) { return o < e.cookie; }) -
      entries.begin());
}

}  // namespace cachefs

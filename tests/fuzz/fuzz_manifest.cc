// A manifest comes from a remote store: untrusted. Whatever the bytes,
// Manifest::parse gives a manifest whose every path is safe, or throws
// RemoteError — never another exception, a crash or undefined behaviour. What
// it accepts must survive a round trip through to_json().
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "remote/manifest.h"
#include "remote/remote.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  cachefs::remote::Manifest m;
  try {
    m = cachefs::remote::Manifest::parse(text);
  } catch (const cachefs::remote::RemoteError&) {
    return 0;
  }
  for (const auto& e : m.entries) {
    if (!cachefs::remote::safe_relative_path(e.path)) __builtin_trap();
  }
  const cachefs::remote::Manifest again = cachefs::remote::Manifest::parse(m.to_json());
  if (again.entries.size() != m.entries.size()) __builtin_trap();
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const auto &a = m.entries[i], &b = again.entries[i];
    if (a.path != b.path || a.type != b.type || a.mode != b.mode || a.size != b.size ||
        !(a.hash == b.hash) || a.target != b.target)
      __builtin_trap();
  }
  return 0;
}

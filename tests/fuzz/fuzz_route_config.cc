// Routes and the --config file are the daemon's (root's) input from users:
// whatever the bytes, parsing either gives settings or throws UsageError —
// never another exception, a crash or undefined behaviour. Parsed routes are
// compiled into a RouteTable (RE2) and asked for candidates, as at mount time.
//
// The first byte picks the entry point: even → parse_route_spec (the
// --define-cache-directories / CACHEFS_DEFINE_CACHE_DIRECTORIES syntax), odd →
// parse_config_yaml (the --config file).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"
#include "fs/mount_config.h"
#include "fs/route_table.h"

namespace {

void exercise(std::vector<cachefs::RouteSpec> routes, std::string_view probe) {
  routes.push_back({"/default", ""});  // a catch-all, as --cache-directory adds
  try {
    const cachefs::RouteTable table(routes, cachefs::ResolutionPolicy::kWeak);
    cachefs::Candidates c;
    table.candidates("/", c);
    table.candidates(std::string("/") + std::string(probe), c);
    table.candidates(std::string("/") + std::string(probe) + "/", c);
    if (c.empty()) __builtin_trap();  // the catch-all always matches
  } catch (const cachefs::UsageError&) {
    // an invalid regex or too many branches: named, as intended
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool yaml = (data[0] & 1) != 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (yaml) {
      const cachefs::ConfigFileSettings s = cachefs::parse_config_yaml(text, "fuzz.yaml");
      if (!s.resolution_policy.empty()) {
        try {
          cachefs::parse_resolution_policy(s.resolution_policy, "resolution-policy");
        } catch (const cachefs::UsageError&) {
        }
      }
      exercise(s.routes, s.cache_directory);
    } else {
      exercise(cachefs::parse_route_spec(text), text);
    }
  } catch (const cachefs::UsageError&) {
    // the intended outcome for bad input
  }
  return 0;
}

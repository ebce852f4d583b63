// The one list of cache environment variables a build gets (DESIGN.md, "launch —
// observable contract"): each is set only when the build file and the user leave
// it unset or empty — the user's value wins.
#pragma once

#include <array>
#include <map>
#include <string>
#include <string_view>

namespace cachefs::launcher {

// Where the cache is mounted inside every build.
inline constexpr std::string_view kCacheRoot = "/var/cache/melange";
// The build's home and working directory.
inline constexpr std::string_view kBuildHome = "/home/build";
// Where outputs are written: <kOutDir>/<package>.
inline constexpr std::string_view kOutDir = "/home/build/melange-out";

struct EnvDefault {
  std::string_view name;
  std::string_view value;
};

inline constexpr std::array<EnvDefault, 6> kCacheEnvironment = {{
    {"GOMODCACHE", "/var/cache/melange/gomodcache"},
    {"UV_CACHE_DIR", "/var/cache/melange/uv"},
    {"PIP_CACHE_DIR", "/var/cache/melange/pip"},
    {"COMPOSER_CACHE_DIR", "/var/cache/melange/composer"},
    {"npm_config_cache", "/var/cache/melange/npm"},
    {"HOME", "/home/build"},
}};

// Fills in every kCacheEnvironment entry, and SOURCE_DATE_EPOCH, that `env` has
// unset or empty.
void apply_cache_environment(std::map<std::string, std::string>& env,
                             std::string_view source_date_epoch = "0");

}  // namespace cachefs::launcher

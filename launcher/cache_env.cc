#include "launcher/cache_env.h"

namespace cachefs::launcher {

void apply_cache_environment(std::map<std::string, std::string>& env,
                             std::string_view source_date_epoch) {
  auto set_if_empty = [&](std::string_view name, std::string_view value) {
    std::string& v = env[std::string(name)];
    if (v.empty()) v = value;
  };
  for (const EnvDefault& d : kCacheEnvironment) set_if_empty(d.name, d.value);
  set_if_empty("SOURCE_DATE_EPOCH", source_date_epoch.empty() ? "0" : source_date_epoch);
}

}  // namespace cachefs::launcher

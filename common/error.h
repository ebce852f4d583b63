// The project's one error type for fatal, user-facing problems (bad flags, bad
// config, unusable directories). Its message is a single line that names what is
// wrong; the caller prefixes the program name. Expected failures inside the daemon
// are errno values, not exceptions.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace cachefs {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;

  template <typename... Args>
  static UsageError make(fmt::format_string<Args...> f, Args&&... args) {
    return UsageError(fmt::format(f, std::forward<Args>(args)...));
  }
};

}  // namespace cachefs

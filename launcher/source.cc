#include "launcher/source.h"

#include <fmt/format.h>

#include "common/error.h"

namespace cachefs::launcher {

std::string Location::str() const {
  return fmt::format("{}:{}:{}", file, line, column);
}

Location Text::at(std::size_t offset) const {
  if (first_line == 0 || offset > value.size()) return where;
  Location l = where;
  if (!block) {
    if (value.find('\n') != std::string::npos) return where;
    l.line = first_line;
    l.column = first_column + static_cast<int>(offset);
    return l;
  }
  int line = first_line;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < offset; ++i) {
    if (value[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  l.line = line;
  l.column = first_column + static_cast<int>(offset - line_start);
  return l;
}

void fail(const Location& where, std::string_view field, std::string_view message) {
  throw UsageError(fmt::format("{}: {}: {}", where.str(), field, message));
}

}  // namespace cachefs::launcher

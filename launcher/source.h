// Where a piece of a build or pipeline file came from, so that every mistake can be
// reported as `FILE:LINE:COLUMN: FIELD: what is wrong` (a UsageError, one line).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cachefs::launcher {

struct Location {
  std::string file;
  int line = 0;             // 1-based
  int column = 0;           // 1-based
  std::string str() const;  // "file:line:column"
};

// A string value read from YAML, with its location. For a single-line scalar and a
// literal block scalar (`|`), at(offset) names the exact line and column of a byte of
// `value`; otherwise it falls back to where the scalar starts.
struct Text {
  std::string value;
  Location where;
  int first_line = 0;    // line of value[0] when known exactly (0: not known)
  int first_column = 0;  // column of the first byte of each line (block) / of value[0]
  bool block = false;    // a literal block: every line starts at first_column

  Location at(std::size_t offset) const;
};

// Throws UsageError("<where>: <field>: <message>").
[[noreturn]] void fail(const Location& where, std::string_view field, std::string_view message);

}  // namespace cachefs::launcher

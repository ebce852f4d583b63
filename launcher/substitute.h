// melange's `${{name}}` substitutions and `if` conditions.
#pragma once

#include <cstddef>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "launcher/source.h"

namespace cachefs::launcher {

// The substitutions visible at one point of a build: "package.name" → "zlib", ...
// (names are kept without the surrounding `${{ }}`).
class Scope {
 public:
  void set(const std::string& name, std::string value) { values_[name] = std::move(value); }
  const std::string* find(std::string_view name) const;
  // Names starting with `prefix`, sorted (for "defined: ..." hints).
  std::vector<std::string> names_with_prefix(std::string_view prefix) const;

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

// A mistake in an expression, at a byte offset into it.
class ExpressionError : public std::runtime_error {
 public:
  ExpressionError(std::size_t offset, const std::string& message)
      : std::runtime_error(message), offset_(offset) {}
  std::size_t offset() const { return offset_; }

 private:
  std::size_t offset_;
};

// Replaces every `${{name}}` in `text`. Throws ExpressionError for an undefined
// name or a malformed reference.
std::string substitute(std::string_view text, const Scope& scope);

// Evaluates a condition in melange's grammar:
//   expr  := atom (('&&' | '||') atom)*      (left to right, as melange does)
//   atom  := '(' expr ')' | value ('==' | '!=') value
//   value := 'single' | "double" | a bare word; `${{name}}` is substituted anywhere in it
// Throws ExpressionError.
bool evaluate_condition(std::string_view expr, const Scope& scope);

// The same two, reporting mistakes as UsageError at the exact location in the
// file: "<file:line:col>: <field>: <message><context>".
std::string substitute(const Text& text, const Scope& scope, std::string_view field,
                       std::string_view context = {});
bool evaluate_condition(const Text& text, const Scope& scope, std::string_view field,
                        std::string_view context = {});

}  // namespace cachefs::launcher

// A small JSON value: cachectl's reports (--json), the live counters a mount
// returns (written by the daemon, read by cachectl and launch). Objects keep their
// keys in insertion order so a report reads the same way as its human form.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace cachefs {

class Json {
 public:
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  Json() = default;  // null
  Json(std::nullptr_t) {}
  Json(bool b) : v_(b) {}
  Json(int i) : v_(static_cast<int64_t>(i)) {}
  Json(long i) : v_(static_cast<int64_t>(i)) {}
  Json(long long i) : v_(static_cast<int64_t>(i)) {}
  Json(unsigned i) : v_(static_cast<uint64_t>(i)) {}
  Json(unsigned long i) : v_(static_cast<uint64_t>(i)) {}
  Json(unsigned long long i) : v_(static_cast<uint64_t>(i)) {}
  Json(double d) : v_(d) {}
  Json(const char* s) : v_(std::string(s)) {}
  Json(std::string s) : v_(std::move(s)) {}
  Json(std::string_view s) : v_(std::string(s)) {}
  Json(Array a) : v_(std::move(a)) {}
  Json(Object o) : v_(std::move(o)) {}

  static Json object() { return Json(Object{}); }
  static Json array() { return Json(Array{}); }

  bool is_null() const { return std::holds_alternative<std::monostate>(v_); }
  bool is_object() const { return std::holds_alternative<Object>(v_); }
  bool is_array() const { return std::holds_alternative<Array>(v_); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_number() const {
    return std::holds_alternative<int64_t>(v_) || std::holds_alternative<uint64_t>(v_) ||
           std::holds_alternative<double>(v_);
  }

  // Object: sets (or replaces) key; returns *this for chaining.
  Json& set(std::string_view key, Json value);
  // Object: the value of key, or nullptr.
  const Json* find(std::string_view key) const;
  // Array: appends.
  void push(Json value);

  const Object& members() const { return std::get<Object>(v_); }
  const Array& items() const { return std::get<Array>(v_); }
  const std::string& str() const { return std::get<std::string>(v_); }
  double number() const;
  // A number that is a whole value in uint64_t's range (1e3 is, -1, 1.5 and
  // 1e30 are not): std::nullopt otherwise. For counts and sizes from untrusted
  // text, where a cast of number() would be undefined for out-of-range values.
  std::optional<uint64_t> as_uint() const;
  bool boolean() const { return std::get<bool>(v_); }

  // Compact (indent < 0) or pretty (indent spaces per level) text.
  std::string dump(int indent = -1) const;
  // Scalar as plain text (strings unquoted), for `key: value` lines.
  std::string scalar_text() const;

  // Parses a whole document; std::nullopt (and `error` set) on bad input.
  static std::optional<Json> parse(std::string_view text, std::string* error = nullptr);

 private:
  void dump_to(std::string& out, int indent, int depth) const;
  std::variant<std::monostate, bool, int64_t, uint64_t, double, std::string, Array, Object> v_;
};

}  // namespace cachefs

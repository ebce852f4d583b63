#include "common/units.h"

#include <cctype>
#include <cmath>
#include <cstdio>

namespace cachefs {
namespace {

// Splits "1.5G" into a non-negative decimal number and its suffix.
bool split_number(std::string_view text, double& value, std::string_view& suffix, bool& integral) {
  size_t i = 0, digits = 0;
  integral = true;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i, ++digits;
  if (i < text.size() && text[i] == '.') {
    integral = false;
    ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i, ++digits;
  }
  if (digits == 0) return false;
  const std::string number(text.substr(0, i));
  value = std::strtod(number.c_str(), nullptr);
  suffix = text.substr(i);
  return std::isfinite(value);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<uint64_t> scaled(double value, double unit) {
  const double v = value * unit;
  if (v >= 18446744073709551615.0) return std::nullopt;
  return static_cast<uint64_t>(std::llround(std::floor(v)));
}

}  // namespace

std::optional<uint64_t> parse_size(std::string_view text) {
  double value = 0;
  std::string_view suffix;
  bool integral = true;
  if (!split_number(text, value, suffix, integral)) return std::nullopt;
  std::string s = lower(suffix);
  if (s.empty()) {
    if (!integral) return std::nullopt;  // a fraction of a byte means a typo
    return scaled(value, 1);
  }
  if (s.ends_with("ib"))
    s.resize(s.size() - 2);
  else if (s.ends_with("i") || s.ends_with("b"))
    s.resize(s.size() - 1);
  if (s.size() != 1) return std::nullopt;
  double unit = 1;
  switch (s[0]) {
    case 'k':
      unit = 1024.0;
      break;
    case 'm':
      unit = 1024.0 * 1024;
      break;
    case 'g':
      unit = 1024.0 * 1024 * 1024;
      break;
    case 't':
      unit = 1024.0 * 1024 * 1024 * 1024;
      break;
    default:
      return std::nullopt;
  }
  return scaled(value, unit);
}

std::optional<uint64_t> parse_age(std::string_view text) {
  double value = 0;
  std::string_view suffix;
  bool integral = true;
  if (!split_number(text, value, suffix, integral) || suffix.size() != 1) return std::nullopt;
  double unit = 1;
  switch (suffix[0]) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    case 'w':
      unit = 7 * 86400;
      break;
    default:
      return std::nullopt;
  }
  return scaled(value, unit);
}

std::string human_bytes(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

}  // namespace cachefs

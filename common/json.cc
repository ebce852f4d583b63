#include "common/json.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace cachefs {
namespace {

void escape(std::string& out, const std::string& s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;  // UTF-8 (or whatever bytes a file name has) passes through
        }
    }
  }
  out += '"';
}

class Parser {
 public:
  explicit Parser(std::string_view t) : t_(t) {}

  std::optional<Json> document(std::string* error) {
    auto v = value(0);
    ws();
    if (v && i_ != t_.size()) {
      err_ = "trailing text";
      v.reset();
    }
    if (!v && error != nullptr) *error = err_ + " at offset " + std::to_string(i_);
    return v;
  }

 private:
  void ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\n' || t_[i_] == '\r' || t_[i_] == '\t'))
      ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < t_.size() && t_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool literal(std::string_view w) {
    if (t_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }
  std::optional<Json> fail(const char* what) {
    err_ = what;
    return std::nullopt;
  }

  std::optional<Json> value(int depth) {
    if (depth > 64) return fail("nested too deeply");
    ws();
    if (i_ >= t_.size()) return fail("unexpected end");
    const char c = t_[i_];
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') {
      auto s = string();
      if (!s) return std::nullopt;
      return Json(std::move(*s));
    }
    if (literal("true")) return Json(true);
    if (literal("false")) return Json(false);
    if (literal("null")) return Json();
    return number();
  }

  std::optional<Json> object(int depth) {
    ++i_;
    Json o = Json::object();
    if (eat('}')) return o;
    do {
      ws();
      if (i_ >= t_.size() || t_[i_] != '"') return fail("expected a key");
      auto k = string();
      if (!k) return std::nullopt;
      if (!eat(':')) return fail("expected ':'");
      auto v = value(depth + 1);
      if (!v) return std::nullopt;
      o.set(*k, std::move(*v));
    } while (eat(','));
    if (!eat('}')) return fail("expected ',' or '}'");
    return o;
  }

  std::optional<Json> array(int depth) {
    ++i_;
    Json a = Json::array();
    if (eat(']')) return a;
    do {
      auto v = value(depth + 1);
      if (!v) return std::nullopt;
      a.push(std::move(*v));
    } while (eat(','));
    if (!eat(']')) return fail("expected ',' or ']'");
    return a;
  }

  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  std::optional<unsigned> hex4() {
    if (i_ + 4 > t_.size()) return std::nullopt;
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = t_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9')
        v |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f')
        v |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        v |= static_cast<unsigned>(h - 'A' + 10);
      else
        return std::nullopt;
    }
    return v;
  }

  std::optional<std::string> string() {
    ++i_;  // opening quote
    std::string s;
    while (i_ < t_.size()) {
      const char c = t_[i_++];
      if (c == '"') return s;
      if (static_cast<unsigned char>(c) < 0x20) {
        err_ = "control character in a string";
        return std::nullopt;
      }
      if (c != '\\') {
        s += c;
        continue;
      }
      if (i_ >= t_.size()) break;
      const char e = t_[i_++];
      switch (e) {
        case '"':
          s += '"';
          break;
        case '\\':
          s += '\\';
          break;
        case '/':
          s += '/';
          break;
        case 'b':
          s += '\b';
          break;
        case 'f':
          s += '\f';
          break;
        case 'n':
          s += '\n';
          break;
        case 'r':
          s += '\r';
          break;
        case 't':
          s += '\t';
          break;
        case 'u': {
          auto cp = hex4();
          if (!cp) {
            err_ = "bad \\u escape";
            return std::nullopt;
          }
          if (*cp >= 0xd800 && *cp < 0xdc00 && literal("\\u")) {
            auto lo = hex4();
            if (!lo || *lo < 0xdc00 || *lo > 0xdfff) {
              err_ = "bad surrogate pair";
              return std::nullopt;
            }
            *cp = 0x10000 + ((*cp - 0xd800) << 10) + (*lo - 0xdc00);
          }
          utf8(s, *cp);
          break;
        }
        default:
          err_ = "bad escape";
          return std::nullopt;
      }
    }
    err_ = "unterminated string";
    return std::nullopt;
  }

  std::optional<Json> number() {
    const size_t start = i_;
    if (i_ < t_.size() && t_[i_] == '-') ++i_;
    bool integral = true, digits = false;
    while (i_ < t_.size()) {
      const char c = t_[i_];
      if (c >= '0' && c <= '9') {
        digits = true;
      } else if (c == '.' || c == 'e' || c == 'E' || ((c == '+' || c == '-') && i_ > start)) {
        integral = false;
      } else {
        break;
      }
      ++i_;
    }
    if (!digits) return fail("expected a value");
    const std::string text(t_.substr(start, i_ - start));
    char* end = nullptr;
    errno = 0;
    if (integral) {
      if (text[0] == '-') {
        const long long v = std::strtoll(text.c_str(), &end, 10);
        if (errno == 0 && *end == '\0') return Json(v);
      } else {
        const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
        if (errno == 0 && *end == '\0') return Json(v);
      }
    }
    const double d = std::strtod(text.c_str(), &end);
    if (*end != '\0') return fail("bad number");
    return Json(d);
  }

  std::string_view t_;
  size_t i_ = 0;
  std::string err_;
};

}  // namespace

Json& Json::set(std::string_view key, Json value) {
  auto& o = std::get<Object>(v_);
  for (auto& kv : o) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return *this;
    }
  }
  o.emplace_back(std::string(key), std::move(value));
  return *this;
}

const Json* Json::find(std::string_view key) const {
  if (!is_object()) return nullptr;
  for (const auto& kv : members())
    if (kv.first == key) return &kv.second;
  return nullptr;
}

void Json::push(Json value) {
  std::get<Array>(v_).push_back(std::move(value));
}

double Json::number() const {
  if (auto* i = std::get_if<int64_t>(&v_)) return static_cast<double>(*i);
  if (auto* u = std::get_if<uint64_t>(&v_)) return static_cast<double>(*u);
  return std::get<double>(v_);
}

std::optional<uint64_t> Json::as_uint() const {
  if (auto* u = std::get_if<uint64_t>(&v_)) return *u;
  if (auto* i = std::get_if<int64_t>(&v_)) {
    if (*i < 0) return std::nullopt;
    return static_cast<uint64_t>(*i);
  }
  if (auto* d = std::get_if<double>(&v_)) {
    // 2^64 is exactly representable; every double below it converts.
    if (!(*d >= 0.0) || !(*d < 18446744073709551616.0) || std::trunc(*d) != *d) return std::nullopt;
    return static_cast<uint64_t>(*d);
  }
  return std::nullopt;
}

std::string Json::scalar_text() const {
  if (is_string()) return str();
  return dump();
}

std::string Json::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

void Json::dump_to(std::string& out, int indent, int depth) const {
  auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent * d), ' ');
  };
  if (std::holds_alternative<std::monostate>(v_)) {
    out += "null";
  } else if (auto* b = std::get_if<bool>(&v_)) {
    out += *b ? "true" : "false";
  } else if (auto* i = std::get_if<int64_t>(&v_)) {
    out += std::to_string(*i);
  } else if (auto* u = std::get_if<uint64_t>(&v_)) {
    out += std::to_string(*u);
  } else if (auto* d = std::get_if<double>(&v_)) {
    if (!std::isfinite(*d)) {
      out += "null";
    } else {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6g", *d);
      out += buf;
    }
  } else if (auto* s = std::get_if<std::string>(&v_)) {
    escape(out, *s);
  } else if (auto* a = std::get_if<Array>(&v_)) {
    out += '[';
    for (size_t k = 0; k < a->size(); ++k) {
      if (k) out += ',';
      newline(depth + 1);
      (*a)[k].dump_to(out, indent, depth + 1);
    }
    if (!a->empty()) newline(depth);
    out += ']';
  } else if (auto* o = std::get_if<Object>(&v_)) {
    out += '{';
    for (size_t k = 0; k < o->size(); ++k) {
      if (k) out += ',';
      newline(depth + 1);
      escape(out, (*o)[k].first);
      out += indent < 0 ? ":" : ": ";
      (*o)[k].second.dump_to(out, indent, depth + 1);
    }
    if (!o->empty()) newline(depth);
    out += '}';
  }
}

std::optional<Json> Json::parse(std::string_view text, std::string* error) {
  return Parser(text).document(error);
}

}  // namespace cachefs

#include "launcher/substitute.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace cachefs::launcher {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

std::string undefined_message(std::string_view name, const Scope& scope) {
  std::string hint;
  for (std::string_view prefix : {"vars.", "inputs."}) {
    if (name.substr(0, prefix.size()) != prefix) continue;
    std::vector<std::string> known = scope.names_with_prefix(prefix);
    hint = known.empty() ? fmt::format(" (no {}* defined here)", prefix)
                         : fmt::format(" (defined: {})", fmt::join(known, ", "));
  }
  return fmt::format("undefined substitution '${{{{{}}}}}'{}", name, hint);
}

// Reads the reference starting at text[pos] == "${{"; returns its value and moves
// pos past it.
std::string reference(std::string_view text, std::size_t& pos, const Scope& scope) {
  const std::size_t start = pos;
  pos += 3;
  while (pos < text.size() && is_space(text[pos])) ++pos;
  const std::size_t name_start = pos;
  while (pos < text.size() && is_name_char(text[pos])) ++pos;
  const std::string_view name = text.substr(name_start, pos - name_start);
  while (pos < text.size() && is_space(text[pos])) ++pos;
  if (name.empty() || text.substr(pos, 2) != "}}") {
    throw ExpressionError(start,
                          "malformed substitution: '${{' must be followed by a name and '}}'");
  }
  pos += 2;
  const std::string* value = scope.find(name);
  if (value == nullptr) throw ExpressionError(start, undefined_message(name, scope));
  return *value;
}

class ConditionParser {
 public:
  ConditionParser(std::string_view in, const Scope& scope) : in_(in), scope_(scope) {}

  bool parse() {
    const bool result = expr();
    skip();
    if (pos_ != in_.size())
      throw ExpressionError(pos_,
                            fmt::format("unexpected '{}' after the condition", in_.substr(pos_)));
    return result;
  }

 private:
  void skip() {
    while (pos_ < in_.size() && is_space(in_[pos_])) ++pos_;
  }

  bool at(std::string_view s) {
    skip();
    return in_.substr(pos_, s.size()) == s;
  }

  bool expr() {
    bool result = atom();
    for (;;) {
      if (at("&&")) {
        pos_ += 2;
        const bool rhs = atom();
        result = result && rhs;
      } else if (at("||")) {
        pos_ += 2;
        const bool rhs = atom();
        result = result || rhs;
      } else {
        return result;
      }
    }
  }

  bool atom() {
    if (at("(")) {
      const std::size_t open = pos_++;
      const bool result = expr();
      if (!at(")")) throw ExpressionError(open, "'(' is never closed");
      ++pos_;
      return result;
    }
    const std::string lhs = value();
    bool equal;
    if (at("==")) {
      equal = true;
    } else if (at("!=")) {
      equal = false;
    } else {
      throw ExpressionError(
          pos_, pos_ < in_.size() ? fmt::format("expected '==' or '!=' at '{}'", in_.substr(pos_))
                                  : std::string("expected '==' or '!=' at the end"));
    }
    pos_ += 2;
    const std::string rhs = value();
    return (lhs == rhs) == equal;
  }

  static bool ends_word(char c) {
    return is_space(c) || c == '(' || c == ')' || c == '=' || c == '!' || c == '&' || c == '|' ||
           c == '\'' || c == '"';
  }

  std::string value() {
    skip();
    if (pos_ >= in_.size()) throw ExpressionError(pos_, "expected a value at the end");
    const char c = in_[pos_];
    std::string out;
    if (c == '\'' || c == '"') {
      const std::size_t open = pos_++;
      for (;;) {
        if (pos_ >= in_.size()) throw ExpressionError(open, "unterminated string");
        const char d = in_[pos_];
        if (d == c) break;
        if (d == '\\' && pos_ + 1 < in_.size()) {
          const char e = in_[pos_ + 1];
          if (e == '\\' || e == '\'' || e == '"') {
            out += e;
          } else if (e == 'n') {
            out += '\n';
          } else if (e == 't') {
            out += '\t';
          } else {
            out += d;
            out += e;
          }
          pos_ += 2;
        } else if (in_.substr(pos_, 3) == "${{") {
          out += reference(in_, pos_, scope_);
        } else {
          out += d;
          ++pos_;
        }
      }
      ++pos_;
      return out;
    }
    const std::size_t start = pos_;
    while (pos_ < in_.size()) {
      if (in_.substr(pos_, 3) == "${{") {
        out += reference(in_, pos_, scope_);
      } else if (ends_word(in_[pos_])) {
        break;
      } else {
        out += in_[pos_++];
      }
    }
    if (pos_ == start)
      throw ExpressionError(pos_, fmt::format("expected a value at '{}'", in_.substr(pos_)));
    return out;
  }

  std::string_view in_;
  const Scope& scope_;
  std::size_t pos_ = 0;
};

}  // namespace

const std::string* Scope::find(std::string_view name) const {
  auto it = values_.find(name);
  return it == values_.end() ? nullptr : &it->second;
}

std::vector<std::string> Scope::names_with_prefix(std::string_view prefix) const {
  std::vector<std::string> out;
  for (auto it = values_.lower_bound(prefix);
       it != values_.end() && std::string_view(it->first).substr(0, prefix.size()) == prefix;
       ++it) {
    out.push_back(it->first.substr(prefix.size()));
  }
  return out;
}

std::string substitute(std::string_view text, const Scope& scope) {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  for (;;) {
    const std::size_t next = text.find("${{", pos);
    if (next == std::string_view::npos) {
      out.append(text.substr(pos));
      return out;
    }
    out.append(text.substr(pos, next - pos));
    pos = next;
    out += reference(text, pos, scope);
  }
}

bool evaluate_condition(std::string_view expr, const Scope& scope) {
  return ConditionParser(expr, scope).parse();
}

std::string substitute(const Text& text, const Scope& scope, std::string_view field,
                       std::string_view context) {
  try {
    return substitute(text.value, scope);
  } catch (const ExpressionError& e) {
    fail(text.at(e.offset()), field, fmt::format("{}{}", e.what(), context));
  }
}

bool evaluate_condition(const Text& text, const Scope& scope, std::string_view field,
                        std::string_view context) {
  try {
    return evaluate_condition(text.value, scope);
  } catch (const ExpressionError& e) {
    fail(text.at(e.offset()), field,
         fmt::format("in condition \"{}\": {}{}", text.value, e.what(), context));
  }
}

}  // namespace cachefs::launcher

// ${{...}} substitution and melange's `if` grammar.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "launcher/substitute.h"

namespace cachefs::launcher::testing {
namespace {

using ::testing::HasSubstr;

Scope sample_scope() {
  Scope s;
  s.set("package.name", "hello");
  s.set("build.arch", "x86_64");
  s.set("vars.empty", "");
  s.set("vars.spaced", "a b");
  s.set("vars.x", "1");
  return s;
}

std::size_t offset_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ExpressionError& e) {
    return e.offset();
  }
  return std::string::npos;
}

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ExpressionError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Substitute, ReplacesReferences) {
  const Scope s = sample_scope();
  EXPECT_EQ(substitute("${{package.name}}-${{build.arch}}", s), "hello-x86_64");
  EXPECT_EQ(substitute("${{ package.name }}", s), "hello");
  EXPECT_EQ(substitute("no refs ${HOME} $1 ${1} {{x}}", s), "no refs ${HOME} $1 ${1} {{x}}");
  EXPECT_EQ(substitute("[${{vars.empty}}]", s), "[]");
  EXPECT_EQ(substitute("", s), "");
}

TEST(Substitute, UndefinedNameIsAnErrorAtItsOffset) {
  const Scope s = sample_scope();
  EXPECT_EQ(offset_of([&] { substitute("abc ${{vars.nope}}", s); }), 4u);
  EXPECT_THAT(message_of([&] { substitute("${{vars.nope}}", s); }),
              HasSubstr("undefined substitution '${{vars.nope}}' (defined: empty, spaced, x)"));
  EXPECT_THAT(message_of([&] { substitute("${{inputs.uri}}", s); }),
              HasSubstr("(no inputs.* defined here)"));
}

TEST(Substitute, MalformedReferences) {
  const Scope s = sample_scope();
  EXPECT_THAT(message_of([&] { substitute("x ${{ }}", s); }), HasSubstr("malformed substitution"));
  EXPECT_THAT(message_of([&] { substitute("${{package.name", s); }),
              HasSubstr("malformed substitution"));
  EXPECT_THAT(message_of([&] { substitute("${{package name}}", s); }),
              HasSubstr("malformed substitution"));
}

TEST(Condition, Comparisons) {
  const Scope s = sample_scope();
  EXPECT_TRUE(evaluate_condition("'a' == 'a'", s));
  EXPECT_FALSE(evaluate_condition("'a' == \"b\"", s));
  EXPECT_TRUE(evaluate_condition("a != b", s));
  EXPECT_TRUE(evaluate_condition("${{build.arch}} == 'x86_64'", s));
  EXPECT_TRUE(evaluate_condition("${{build.arch}}==x86_64", s));
  EXPECT_FALSE(evaluate_condition("${{build.arch}} == aarch64", s));
  EXPECT_TRUE(evaluate_condition("${{vars.empty}} == ''", s));
  EXPECT_TRUE(evaluate_condition("${{vars.spaced}} == 'a b'", s));
  EXPECT_TRUE(evaluate_condition("'${{package.name}}-dev' == hello-dev", s));
  EXPECT_TRUE(evaluate_condition("v${{vars.x}} == v1", s));
  EXPECT_TRUE(evaluate_condition("'it\\'s' == \"it's\"", s));
}

TEST(Condition, LogicAndGrouping) {
  const Scope s = sample_scope();
  EXPECT_TRUE(evaluate_condition("a == a && b == b", s));
  EXPECT_FALSE(evaluate_condition("a == a && b == c", s));
  EXPECT_TRUE(evaluate_condition("a == b || b == b", s));
  EXPECT_TRUE(evaluate_condition("(a == b || b == b) && c == c", s));
  EXPECT_FALSE(evaluate_condition("a == b || (b == b && c == d)", s));
  // melange chains && and || left to right.
  EXPECT_FALSE(evaluate_condition("a == a || a == a && a == b", s));
  EXPECT_TRUE(evaluate_condition(" ( ( a == a ) ) ", s));
}

TEST(Condition, Malformed) {
  const Scope s = sample_scope();
  EXPECT_THAT(message_of([&] { evaluate_condition("a", s); }), HasSubstr("expected '==' or '!='"));
  EXPECT_THAT(message_of([&] { evaluate_condition("a = b", s); }), HasSubstr("expected '=='"));
  EXPECT_THAT(message_of([&] { evaluate_condition("a == 'b", s); }),
              HasSubstr("unterminated string"));
  EXPECT_EQ(offset_of([&] { evaluate_condition("a == 'b", s); }), 5u);
  EXPECT_THAT(message_of([&] { evaluate_condition("(a == b", s); }), HasSubstr("never closed"));
  EXPECT_THAT(message_of([&] { evaluate_condition("a == b c", s); }), HasSubstr("unexpected 'c'"));
  EXPECT_THAT(message_of([&] { evaluate_condition("a == b &&", s); }),
              HasSubstr("expected a value"));
  EXPECT_THAT(message_of([&] { evaluate_condition("== b", s); }), HasSubstr("expected a value"));
  EXPECT_THAT(message_of([&] { evaluate_condition("${{vars.nope}} == a", s); }),
              HasSubstr("undefined substitution"));
}

}  // namespace
}  // namespace cachefs::launcher::testing

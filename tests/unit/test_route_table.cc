#include <gtest/gtest.h>

#include <map>

#include "common/error.h"
#include "fs/route_table.h"

namespace cachefs {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> dirs_of(const RouteTable& t, std::string_view path) {
  Candidates c;
  t.candidates(path, c);
  std::vector<std::string> out;
  for (BranchIndex b : c) out.push_back(t.branch_dir(b));
  return out;
}

using V = std::vector<std::string>;

TEST(RouteSpec, ParsesGolemSyntaxInOrder) {
  const auto r = parse_route_spec("/go=^/gomodcache/|/m2=\\.jar$|/all=");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0], (RouteSpec{"/go", "^/gomodcache/"}));
  EXPECT_EQ(r[1], (RouteSpec{"/m2", "\\.jar$"}));
  EXPECT_EQ(r[2], (RouteSpec{"/all", ""}));
}

TEST(RouteSpec, SplitsAtFirstEqualsSoRegexMayHoldOne) {
  const auto r = parse_route_spec("/d=a=b");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].regex, "a=b");
}

TEST(RouteSpec, MissingEqualsNamesTheEntry) {
  EXPECT_EQ(error_of([] { parse_route_spec("/a=x|/b"); }),
            "--define-cache-directories: entry 2 '/b' has no '=' (expected DIR=REGEX; an empty "
            "REGEX is a catch-all)");
}

TEST(RouteSpec, EmptySegmentIsAnError) {
  EXPECT_EQ(error_of([] { parse_route_spec("/a=x||/b=y"); }),
            "--define-cache-directories: entry 2 is empty (expected 'DIR=REGEX|DIR=REGEX')");
}

TEST(RouteSpec, TrailingBarIsAnError) {
  EXPECT_EQ(error_of([] { parse_route_spec("/a=x|"); }),
            "--define-cache-directories: entry 2 is empty (trailing '|') (expected "
            "'DIR=REGEX|DIR=REGEX')");
}

TEST(RouteSpec, EmptySpecAndEmptyDirectory) {
  EXPECT_NE(error_of([] { parse_route_spec(""); }).find("entry 1 is empty"), std::string::npos);
  EXPECT_NE(
      error_of([] { parse_route_spec("=^/x"); }).find("entry 1 '=^/x' has an empty directory"),
      std::string::npos);
}

TEST(RouteTable, InvalidRegexNamesTheRoute) {
  const std::string msg = error_of([] {
    RouteTable t({{"/a", "^/ok"}, {"/b", "(unclosed"}, {"/c", ""}}, ResolutionPolicy::kStrict);
  });
  EXPECT_EQ(msg.rfind("route 2 '/b=(unclosed': invalid regex: missing ): (unclosed", 0), 0u) << msg;
}

TEST(RouteTable, NeedsACatchAll) {
  EXPECT_NE(error_of([] {
              RouteTable t({{"/a", "x"}}, ResolutionPolicy::kStrict);
            }).find("no default cache directory"),
            std::string::npos);
}

TEST(RouteTable, EmptyRegexIsCatchAll) {
  RouteTable t({{"/all", ""}}, ResolutionPolicy::kStrict);
  EXPECT_EQ(dirs_of(t, "/anything/at/all"), V{"/all"});
  EXPECT_EQ(t.default_branch(), 0);
}

TEST(RouteTable, MatchingRoutesInDefinitionOrderThenCatchAlls) {
  RouteTable t({{"/c1", ""}, {"/jar", "\\.jar$"}, {"/m2", "^/m2repository/"}, {"/c2", ""}},
               ResolutionPolicy::kStrict);
  EXPECT_EQ(dirs_of(t, "/m2repository/org/x.jar"), (V{"/jar", "/m2", "/c1", "/c2"}));
  EXPECT_EQ(dirs_of(t, "/m2repository/org/x.pom"), (V{"/m2", "/c1", "/c2"}));
  EXPECT_EQ(dirs_of(t, "/pip/x.jar"), (V{"/jar", "/c1", "/c2"}));
  EXPECT_EQ(dirs_of(t, "/other"), (V{"/c1", "/c2"}));
  EXPECT_EQ(t.branch_dir(t.default_branch()), "/c1");
  EXPECT_EQ(t.branch_dir(t.create_branch("/m2repository/a.pom")), "/m2");
}

TEST(RouteTable, RegexIsSearchedUnanchored) {
  RouteTable t({{"/g", "gomodcache"}, {"/d", ""}}, ResolutionPolicy::kStrict);
  EXPECT_EQ(dirs_of(t, "/x/gomodcache/y")[0], "/g");
  RouteTable anchored({{"/g", "^/gomodcache"}, {"/d", ""}}, ResolutionPolicy::kStrict);
  EXPECT_EQ(dirs_of(anchored, "/x/gomodcache/y")[0], "/d");
}

TEST(RouteTable, DirectoriesMatchWithTrailingSlash) {
  RouteTable t({{"/g", "^/gomodcache/"}, {"/d", ""}}, ResolutionPolicy::kStrict);
  EXPECT_EQ(dirs_of(t, "/gomodcache/")[0], "/g");  // the directory itself
  EXPECT_EQ(dirs_of(t, "/gomodcache")[0], "/d");   // a file of that name
  EXPECT_EQ(dirs_of(t, "/gomodcache/x")[0], "/g");
}

TEST(RouteTable, SameDirectoryTwiceIsOneBranch) {
  RouteTable t({{"/a", "x"}, {"/a", "y"}, {"/b", ""}}, ResolutionPolicy::kStrict);
  EXPECT_EQ(t.branch_count(), 2u);
  EXPECT_EQ(dirs_of(t, "/xy"), (V{"/a", "/b"}));
}

TEST(RouteTable, LinearTimeOnHostileNames) {
  // A pattern that makes backtracking engines explode; RE2 stays linear.
  RouteTable t({{"/a", "^(a+)+$"}, {"/b", ""}}, ResolutionPolicy::kStrict);
  const std::string path = "/" + std::string(4000, 'a') + "!";
  EXPECT_EQ(dirs_of(t, path)[0], "/b");
}

TEST(ResolutionPolicy, Parses) {
  EXPECT_EQ(parse_resolution_policy("strict", "x"), ResolutionPolicy::kStrict);
  EXPECT_EQ(parse_resolution_policy("weak", "x"), ResolutionPolicy::kWeak);
  EXPECT_EQ(error_of([] { parse_resolution_policy("loose", "--resolution-policy"); }),
            "--resolution-policy: unknown resolution policy 'loose' (use strict or weak)");
}

// resolve(): the one rule lookup and readdir share.
struct World {
  std::map<BranchIndex, Presence> at;
  Presence operator()(BranchIndex b) const {
    auto it = at.find(b);
    return it == at.end() ? Presence::kAbsent : it->second;
  }
};

Candidates cands(std::initializer_list<BranchIndex> bs) {
  Candidates c;
  for (auto b : bs) c.push_unique(b);
  return c;
}

TEST(Resolve, StrictSeesOnlyTheFirstCandidate) {
  World w{{{1, Presence::kOther}}};
  auto r = resolve(cands({0, 1}), ResolutionPolicy::kStrict, 3, w);
  EXPECT_EQ(r.kind, Resolution::kNone);
  w.at[0] = Presence::kOther;
  r = resolve(cands({0, 1}), ResolutionPolicy::kStrict, 3, w);
  EXPECT_EQ(r.kind, Resolution::kFile);
  EXPECT_EQ(r.branch, 0);
}

TEST(Resolve, WeakTakesTheFirstCandidateHoldingIt) {
  World w{{{1, Presence::kOther}, {2, Presence::kOther}}};
  auto r = resolve(cands({0, 1, 2}), ResolutionPolicy::kWeak, 3, w);
  EXPECT_EQ(r.kind, Resolution::kFile);
  EXPECT_EQ(r.branch, 1);
}

TEST(Resolve, DirectoriesExistWhereverTheyExist) {
  World w{{{2, Presence::kDirectory}}};
  EXPECT_EQ(resolve(cands({0, 1}), ResolutionPolicy::kStrict, 3, w).kind, Resolution::kDirectory);
}

TEST(Resolve, FileInItsHomeBranchBeatsDirectoryElsewhere) {
  World w{{{0, Presence::kOther}, {1, Presence::kDirectory}}};
  const auto r = resolve(cands({0}), ResolutionPolicy::kStrict, 2, w);
  EXPECT_EQ(r.kind, Resolution::kFile);
  EXPECT_EQ(r.branch, 0);
}

TEST(Resolve, NonDirectoriesOutsideTheCandidatesAreInvisible) {
  World w{{{1, Presence::kOther}}};
  EXPECT_EQ(resolve(cands({0}), ResolutionPolicy::kWeak, 2, w).kind, Resolution::kNone);
}

TEST(Resolve, AsksEachBranchAtMostOnce) {
  int calls[3] = {0, 0, 0};
  resolve(cands({0, 1}), ResolutionPolicy::kWeak, 3, [&](BranchIndex b) {
    ++calls[b];
    return Presence::kAbsent;
  });
  EXPECT_EQ(calls[0], 1);
  EXPECT_EQ(calls[1], 1);
  EXPECT_EQ(calls[2], 1);
}

}  // namespace
}  // namespace cachefs

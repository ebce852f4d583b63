// Routes: which backing directory ("branch") a path in the mount lives in.
//
// Pure logic, no I/O: the daemon asks `candidates()` for a path and feeds what it
// finds on disk to `resolve()`. The rules are DESIGN.md "Routes" (golem's model).
#pragma once

#include <re2/re2.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cachefs {

// One user-defined route: DIR=REGEX. An empty regex is a catch-all.
struct RouteSpec {
  std::string directory;
  std::string regex;
  bool operator==(const RouteSpec&) const = default;
};

enum class ResolutionPolicy { kStrict, kWeak };

// Parses "strict" / "weak"; throws UsageError naming `what` otherwise.
ResolutionPolicy parse_resolution_policy(std::string_view text, std::string_view what);
std::string_view to_string(ResolutionPolicy p);

// Parses golem's 'DIR1=REGEX1|DIR2=REGEX2|...'. Each entry splits at its first '='.
// Throws UsageError naming the offending entry (1-based) for an empty entry, a
// missing '=', or an empty directory. Regexes are checked by RouteTable.
std::vector<RouteSpec> parse_route_spec(std::string_view spec);

using BranchIndex = uint8_t;
inline constexpr size_t kMaxBranches = 32;

// Ordered, de-duplicated list of branches a path may live in.
class Candidates {
 public:
  void clear() { n_ = 0; }
  void push_unique(BranchIndex b) {
    for (size_t i = 0; i < n_; ++i)
      if (b_[i] == b) return;
    b_[n_++] = b;
  }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  BranchIndex operator[](size_t i) const { return b_[i]; }
  const BranchIndex* begin() const { return b_.data(); }
  const BranchIndex* end() const { return b_.data() + n_; }
  bool contains(BranchIndex b) const {
    for (size_t i = 0; i < n_; ++i)
      if (b_[i] == b) return true;
    return false;
  }

 private:
  std::array<BranchIndex, kMaxBranches> b_{};
  size_t n_ = 0;
};

class RouteTable {
 public:
  // Builds the table from routes in definition order. Directories naming the same
  // path share one branch. Throws UsageError for an invalid regex (naming the route),
  // more than kMaxBranches directories, or no catch-all route at all.
  explicit RouteTable(const std::vector<RouteSpec>& routes, ResolutionPolicy policy);

  ResolutionPolicy policy() const { return policy_; }
  size_t branch_count() const { return branches_.size(); }
  const std::string& branch_dir(BranchIndex b) const { return branches_[b]; }
  // The branch of the first catch-all route: default directory and home of the store.
  BranchIndex default_branch() const { return default_branch_; }

  // `path` is relative to the mount with a leading '/'; a directory's path ends in
  // '/'. Regex routes that match (searched, unanchored) come first in definition
  // order, then catch-all routes in order.
  void candidates(std::string_view path, Candidates& out) const;

  // Where a new entry at `path` is created: the first candidate.
  BranchIndex create_branch(std::string_view path) const;

 private:
  struct Route {
    BranchIndex branch;
    std::unique_ptr<RE2> re;  // null for a catch-all
  };
  ResolutionPolicy policy_;
  std::vector<std::string> branches_;
  std::vector<Route> regex_routes_;
  std::vector<BranchIndex> catch_alls_;
  BranchIndex default_branch_ = 0;
};

// What a name resolves to, given where it is present.
enum class Presence : uint8_t { kAbsent, kDirectory, kOther };

struct Resolution {
  enum Kind : uint8_t { kNone, kFile, kDirectory } kind = kNone;
  BranchIndex branch = 0;  // for kFile: the branch holding it
};

// The one resolution rule, shared by lookup and readdir:
//  * strict looks only at the first candidate, weak at every candidate in order;
//    the first one holding the name decides: a non-directory is a file there, a
//    directory makes the name a (union) directory;
//  * otherwise a directory of that name in any branch makes it a directory
//    (directories are namespaces and exist wherever they exist);
//  * non-directories outside the candidates are invisible.
// `presence(b)` is called lazily, at most once per branch.
template <typename PresenceFn>
Resolution resolve(const Candidates& c, ResolutionPolicy policy, size_t branch_count,
                   PresenceFn&& presence) {
  std::array<Presence, kMaxBranches> seen{};
  std::array<bool, kMaxBranches> asked{};
  auto get = [&](BranchIndex b) {
    if (!asked[b]) {
      seen[b] = presence(b);
      asked[b] = true;
    }
    return seen[b];
  };
  const size_t look =
      policy == ResolutionPolicy::kStrict ? std::min<size_t>(1, c.size()) : c.size();
  for (size_t i = 0; i < look; ++i) {
    switch (get(c[i])) {
      case Presence::kOther:
        return {Resolution::kFile, c[i]};
      case Presence::kDirectory:
        return {Resolution::kDirectory, 0};
      case Presence::kAbsent:
        break;
    }
  }
  for (size_t b = 0; b < branch_count; ++b) {
    if (get(static_cast<BranchIndex>(b)) == Presence::kDirectory)
      return {Resolution::kDirectory, 0};
  }
  return {};
}

}  // namespace cachefs

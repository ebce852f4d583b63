#include "fs/route_table.h"

#include <algorithm>

#include "common/error.h"

namespace cachefs {

ResolutionPolicy parse_resolution_policy(std::string_view text, std::string_view what) {
  if (text == "strict") return ResolutionPolicy::kStrict;
  if (text == "weak") return ResolutionPolicy::kWeak;
  throw UsageError::make("{}: unknown resolution policy '{}' (use strict or weak)", what, text);
}

std::string_view to_string(ResolutionPolicy p) {
  return p == ResolutionPolicy::kStrict ? "strict" : "weak";
}

std::vector<RouteSpec> parse_route_spec(std::string_view spec) {
  std::vector<RouteSpec> out;
  size_t index = 0;
  size_t start = 0;
  while (true) {
    const size_t bar = spec.find('|', start);
    const std::string_view entry =
        spec.substr(start, bar == std::string_view::npos ? std::string_view::npos : bar - start);
    ++index;
    if (entry.empty()) {
      const bool trailing = bar == std::string_view::npos && index > 1;
      throw UsageError::make(
          "--define-cache-directories: entry {} is empty{} (expected 'DIR=REGEX|DIR=REGEX')", index,
          trailing ? " (trailing '|')" : "");
    }
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos) {
      throw UsageError::make(
          "--define-cache-directories: entry {} '{}' has no '=' (expected DIR=REGEX; an empty "
          "REGEX is a catch-all)",
          index, entry);
    }
    if (eq == 0) {
      throw UsageError::make("--define-cache-directories: entry {} '{}' has an empty directory",
                             index, entry);
    }
    out.push_back({std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1))});
    if (bar == std::string_view::npos) break;
    start = bar + 1;
  }
  return out;
}

RouteTable::RouteTable(const std::vector<RouteSpec>& routes, ResolutionPolicy policy)
    : policy_(policy) {
  bool have_default = false;
  size_t index = 0;
  for (const RouteSpec& r : routes) {
    ++index;
    auto it = std::find(branches_.begin(), branches_.end(), r.directory);
    if (it == branches_.end()) {
      if (branches_.size() == kMaxBranches) {
        throw UsageError::make("too many cache directories: at most {} distinct ones",
                               kMaxBranches);
      }
      branches_.push_back(r.directory);
      it = branches_.end() - 1;
    }
    const auto b = static_cast<BranchIndex>(it - branches_.begin());
    if (r.regex.empty()) {
      catch_alls_.push_back(b);
      if (!have_default) default_branch_ = b;
      have_default = true;
      continue;
    }
    RE2::Options opts;
    opts.set_log_errors(false);
    auto re = std::make_unique<RE2>(r.regex, opts);
    if (!re->ok()) {
      throw UsageError::make("route {} '{}={}': invalid regex: {}", index, r.directory, r.regex,
                             re->error());
    }
    regex_routes_.push_back({b, std::move(re)});
  }
  if (!have_default) {
    throw UsageError(
        "no default cache directory: pass --cache-directory DIR or add a catch-all route 'DIR=' "
        "(an empty regex)");
  }
}

void RouteTable::candidates(std::string_view path, Candidates& out) const {
  out.clear();
  const re2::StringPiece sp(path.data(), path.size());
  for (const Route& r : regex_routes_) {
    if (!out.contains(r.branch) && RE2::PartialMatch(sp, *r.re)) out.push_unique(r.branch);
  }
  for (BranchIndex b : catch_alls_) out.push_unique(b);
}

BranchIndex RouteTable::create_branch(std::string_view path) const {
  Candidates c;
  candidates(path, c);
  return c[0];  // never empty: the constructor demands a catch-all
}

}  // namespace cachefs

#include "tools/context.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>

#include "common/error.h"

namespace cachefs::tools {
namespace {

std::string canonical_dir(const std::string& dir, std::string_view what) {
  char buf[PATH_MAX];
  if (::realpath(dir.c_str(), buf) == nullptr)
    throw UsageError::make("{} '{}': {}", what, dir, std::strerror(errno));
  struct stat st {};
  if (::stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
    throw UsageError::make("{} '{}': not a directory", what, dir);
  return buf;
}

}  // namespace

Context make_context(const RouteFlags& flags, const GetEnv& getenv) {
  Context ctx;
  RouteSettings s = merge_route_settings(flags, getenv);
  ctx.policy = s.policy;
  if (!s.routes.empty()) {
    RouteTable table(s.routes, s.policy);  // the daemon's checks: regexes, a catch-all
    for (size_t b = 0; b < table.branch_count(); ++b) {
      ctx.branches.push_back(Branch{table.branch_dir(static_cast<BranchIndex>(b)), {}});
    }
    for (const RouteSpec& r : s.routes) {
      for (Branch& b : ctx.branches) {
        if (b.dir == r.directory) b.regexes.push_back(r.regex);
      }
    }
    for (size_t i = 0; i < ctx.branches.size(); ++i) {
      Branch& b = ctx.branches[i];
      const bool catch_all = std::find(b.regexes.begin(), b.regexes.end(), "") != b.regexes.end();
      b.dir = canonical_dir(b.dir, catch_all ? "cache directory" : "route directory");
    }
    // Routes naming one directory by two spellings are one branch.
    for (size_t i = 0; i < ctx.branches.size(); ++i) {
      for (size_t j = i + 1; j < ctx.branches.size();) {
        if (ctx.branches[j].dir == ctx.branches[i].dir) {
          auto& r = ctx.branches[i].regexes;
          r.insert(r.end(), ctx.branches[j].regexes.begin(), ctx.branches[j].regexes.end());
          ctx.branches.erase(ctx.branches.begin() + static_cast<std::ptrdiff_t>(j));
        } else {
          ++j;
        }
      }
    }
  }
  std::string store = s.store_dir;
  if (store.empty()) {
    if (const char* v = getenv("CACHEFS_STORE"); v != nullptr && *v != '\0') store = v;
  }
  if (store.empty() && !s.routes.empty()) {
    // The daemon's default: <default cache directory>/.cachefs.
    RouteTable table(s.routes, s.policy);
    store =
        canonical_dir(table.branch_dir(table.default_branch()), "cache directory") + "/.cachefs";
  }
  if (!store.empty()) ctx.store_dir = std::filesystem::absolute(store).lexically_normal();
  if (ctx.store_dir.size() > 1 && ctx.store_dir.back() == '/') ctx.store_dir.pop_back();
  return ctx;
}

std::unique_ptr<store::Store> open_store(const Context& ctx, bool create) {
  if (ctx.store_dir.empty()) {
    throw UsageError(
        "no store: give --store DIR, or --cache-dir DIR for its default DIR/.cachefs (or set "
        "CACHEFS_STORE / CACHEFS_CACHE_DIRECTORY)");
  }
  return store::Store::open(ctx.store_dir, create);
}

const std::vector<Branch>& need_branches(const Context& ctx, std::string_view command) {
  if (ctx.branches.empty()) {
    throw UsageError::make(
        "{} needs the cache directories: give --cache-dir DIR (and --define-cache-directories, "
        "--config, or CACHEFS_CACHE_DIRECTORY)",
        command);
  }
  return ctx.branches;
}

void emit(const Context& ctx, const Json& report, const std::function<void()>& human) {
  if (ctx.json) {
    std::cout << report.dump() << "\n";
  } else {
    human();
  }
  std::cout.flush();
}

void warn(const std::string& message) {
  static std::mutex mu;
  std::lock_guard lock(mu);
  static const bool tty = ::isatty(STDERR_FILENO) == 1;  // a progress line may be there
  std::fprintf(stderr, "%scachectl: warning: %s\n", tty ? "\r\033[K" : "", message.c_str());
}

}  // namespace cachefs::tools

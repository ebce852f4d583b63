// What every cachectl subcommand shares: the cache's routes and store, read
// exactly as cachefs reads them, and how reports are printed.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fs/mount_config.h"
#include "store/object_store.h"
#include "common/json.h"

namespace cachefs::tools {

// One backing directory and the routes that name it.
struct Branch {
  std::string dir;                   // canonical
  std::vector<std::string> regexes;  // "" for a catch-all
};

struct Context {
  std::vector<Branch> branches;  // RouteTable's branch order; may be empty
  ResolutionPolicy policy = ResolutionPolicy::kStrict;
  std::string store_dir;  // absolute; empty when neither a store nor routes were given
  bool json = false;
};

// Merges route flags, --config and CACHEFS_* (plus CACHEFS_STORE), checks routes
// as cachefs does and canonicalises their directories. Throws UsageError.
Context make_context(const RouteFlags& flags, const GetEnv& getenv);

// Opens the context's store: `create` makes a missing one (import); otherwise a
// missing or foreign directory is a UsageError.
std::unique_ptr<store::Store> open_store(const Context& ctx, bool create);

// The branches, or a UsageError saying `command` needs them.
const std::vector<Branch>& need_branches(const Context& ctx, std::string_view command);

// Prints `report` as one JSON object (--json) or calls `human` to print text.
void emit(const Context& ctx, const Json& report, const std::function<void()>& human);

// Warnings during work (an unreadable directory, ...): one line on stderr.
void warn(const std::string& message);

}  // namespace cachefs::tools

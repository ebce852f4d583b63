// cachectl's subcommands. Each returns the process exit status (0 fine, 1 damage
// found) and throws UsageError for a mistake in its input (exit 2).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "remote/remote.h"
#include "tools/context.h"

namespace cachefs::tools {

struct ImportArgs {
  std::vector<std::string> dirs;  // empty: every backing directory
  unsigned jobs = 0;              // 0: one per CPU
};
int cmd_import(const Context& ctx, const ImportArgs& args);

int cmd_stats(const Context& ctx);
// `stats --mount MNT`: the live counters of a running mount.
int cmd_stats_mount(const Context& ctx, const std::string& mountpoint);

int cmd_verify(const Context& ctx, bool repair, unsigned jobs);

int cmd_gc(const Context& ctx, bool dry_run);

struct EvictArgs {
  std::optional<uint64_t> max_size;    // bytes
  std::optional<uint64_t> older_than;  // seconds
  bool dry_run = false;
};
int cmd_evict(const Context& ctx, const EvictArgs& args);

// push CACHE_DIR REMOTE / pull REMOTE CACHE_DIR.
struct RemoteArgs {
  std::string cache_dir, remote;
  std::string ref = "latest";
  std::string store;  // --store; default <cache dir>/.cachefs
  unsigned jobs = 8;  // parallel transfers
  remote::Options options;
};
int cmd_push(const Context& ctx, const RemoteArgs& args, const GetEnv& getenv);
int cmd_pull(const Context& ctx, const RemoteArgs& args, const GetEnv& getenv);

unsigned default_jobs();

}  // namespace cachefs::tools

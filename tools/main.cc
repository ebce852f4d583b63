// cachectl: look after a cachefs object store and its backing trees.
// Usage errors exit 2 with one line on stderr; damage found exits 1.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "common/error.h"
#include "tools/commands.h"
#include "common/units.h"

namespace {

using namespace cachefs;
using namespace cachefs::tools;

constexpr const char* kSubcommands = "import, stats, verify, gc, evict, push, pull";

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

int run(int argc, char** argv) {
  CLI::App app{"cachectl: look after a cachefs object store and its backing directories",
               "cachectl"};
  app.set_version_flag("-V,--version", "cachectl " CACHEFS_VERSION);
  app.fallthrough();  // global options may follow the subcommand
  app.require_subcommand(0, 1);
  app.footer(
      "Environment: CACHEFS_CACHE_DIRECTORY, CACHEFS_DEFINE_CACHE_DIRECTORIES,\n"
      "CACHEFS_RESOLUTION_POLICY, CACHEFS_STORE (flag > config file > environment).\n"
      "push/pull: CACHEFS_REMOTE_USER, CACHEFS_REMOTE_PASSWORD, CACHEFS_REMOTE_TOKEN,\n"
      "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL.\n"
      "See cachectl(1).");

  RouteFlags flags;
  const auto last = CLI::MultiOptionPolicy::TakeLast;
  app.add_option("--store", flags.store, "object store (default: <cache dir>/.cachefs)")
      ->multi_option_policy(last);
  app.add_option("--cache-dir,--cache-directory", flags.cache_directory,
                 "default backing directory (catch-all route)")
      ->multi_option_policy(last);
  app.add_option("--define-cache-directories", flags.define_cache_directories,
                 "routes: 'DIR1=REGEX1|DIR2=REGEX2|...'")
      ->multi_option_policy(last);
  app.add_option("--config", flags.config, "cachefs YAML config file (routes, store)")
      ->multi_option_policy(last);
  app.add_option("--resolution-policy", flags.resolution_policy, "strict (default) or weak")
      ->multi_option_policy(last);

  bool json = false;
  auto add_json = [&](CLI::App* sub) {
    sub->add_flag("--json", json, "print the report as one JSON object");
  };

  ImportArgs import_args;
  CLI::App* import =
      app.add_subcommand("import", "bring existing trees into the store, deduplicating");
  import->add_option("DIR", import_args.dirs, "trees to import (default: every cache directory)");
  import->add_option("-j,--jobs", import_args.jobs, "hashing threads (default: one per CPU)")
      ->check(CLI::Range(1u, 1024u));
  add_json(import);

  std::string mount;
  CLI::App* stats = app.add_subcommand("stats", "sizes, dedup ratio, routes and objects");
  stats->add_option("--mount", mount, "read the live counters of the cachefs mount MNT instead");
  add_json(stats);

  bool repair = false;
  unsigned verify_jobs = 0;
  CLI::App* verify = app.add_subcommand("verify", "rehash every object and check its name");
  verify->add_flag("--repair", repair, "move damaged objects to quarantine/");
  verify->add_option("-j,--jobs", verify_jobs, "hashing threads (default: one per CPU)")
      ->check(CLI::Range(1u, 1024u));
  add_json(verify);

  bool gc_dry = false;
  CLI::App* gc = app.add_subcommand("gc", "remove objects no path uses");
  gc->add_flag("-n,--dry-run", gc_dry, "only report what would be removed");
  add_json(gc);

  std::string max_size, older_than;
  bool evict_dry = false;
  CLI::App* evict = app.add_subcommand("evict", "remove least recently used files");
  evict->add_option("--max-size", max_size, "evict until the cache takes at most SIZE (10G, 500M)");
  evict->add_option("--older-than", older_than, "evict what was not used for AGE (30d, 12h)");
  evict->add_flag("-n,--dry-run", evict_dry, "only list what would be removed");
  add_json(evict);

  RemoteArgs push_args, pull_args;
  auto add_remote = [&](CLI::App* sub, RemoteArgs& r) {
    sub->add_option("--ref", r.ref, "the ref to move (push) or read (pull) (default: latest)");
    sub->add_option("-j,--jobs", r.jobs, "parallel transfers (default 8)")
        ->check(CLI::Range(1u, 256u));
    sub->add_option("--user", r.options.user,
                    "HTTP basic auth USER[:PASSWORD] (or CACHEFS_REMOTE_USER/_PASSWORD)");
    sub->add_option("--endpoint", r.options.endpoint, "S3 endpoint URL (or AWS_ENDPOINT_URL)");
    sub->add_option("--region", r.options.region, "S3 region (or AWS_REGION; default us-east-1)");
    sub->add_option("--timeout", r.options.timeout,
                    "seconds to connect, and the longest stall of a transfer (default 30)")
        ->check(CLI::Range(0.1, 3600.0));
    sub->add_option("--retries", r.options.retries,
                    "further attempts after a transient failure (default 3)")
        ->check(CLI::Range(0, 20));
    add_json(sub);
  };
  CLI::App* push = app.add_subcommand("push", "upload a cache tree to a remote store");
  push->add_option("CACHE_DIR", push_args.cache_dir, "the cache tree to push")->required();
  push->add_option("REMOTE", push_args.remote, "DIR, file://DIR, http(s)://..., s3://BUCKET[/PREFIX]")
      ->required();
  add_remote(push, push_args);
  CLI::App* pull = app.add_subcommand("pull", "fill a cache tree from a remote store");
  pull->add_option("REMOTE", pull_args.remote,
                   "DIR, file://DIR, http(s)://..., s3://BUCKET[/PREFIX], or a plain cache tree")
      ->required();
  pull->add_option("CACHE_DIR", pull_args.cache_dir, "the cache tree to fill (made if missing)")
      ->required();
  add_remote(pull, pull_args);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::CallForVersion&) {
    std::cout << app.version() << "\n";
    return 0;
  } catch (const CLI::ParseError& e) {
    if (app.get_subcommands().empty()) {
      // Nothing matched a subcommand: name the word that was meant to be one.
      for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (!a.starts_with("-") && std::string(e.what()).find(a) != std::string::npos)
          throw UsageError::make("unknown subcommand '{}' (use {})", a, kSubcommands);
      }
    }
    throw UsageError(one_line(e.what()));
  }
  if (app.get_subcommands().empty())
    throw UsageError::make("missing subcommand (use {}; --help for more)", kSubcommands);

  // Lease breaks (see import) are signalled with SIGIO, whose default is to die.
  ::signal(SIGIO, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);  // a server closing a connection is an error, not a death
  cachefs::remote::global_init();
  const auto getenv = [](const char* n) -> const char* { return std::getenv(n); };

  // Mistakes in a subcommand's own arguments come before those in the routes.
  EvictArgs ea;
  if (evict->parsed()) {
    ea.dry_run = evict_dry;
    if (max_size.empty() == older_than.empty()) {
      throw UsageError(max_size.empty() ? "evict: give one of --max-size SIZE or --older-than AGE"
                                        : "evict: give --max-size or --older-than, not both");
    }
    if (!max_size.empty()) {
      ea.max_size = parse_size(max_size);
      if (!ea.max_size) {
        throw UsageError::make(
            "--max-size '{}': not a size (use a number of bytes or e.g. 500M, 1.5G, 2T; K, M, G, T "
            "are powers of 1024)",
            max_size);
      }
    } else {
      ea.older_than = parse_age(older_than);
      if (!ea.older_than) {
        throw UsageError::make(
            "--older-than '{}': not an age (use a number and a unit: 45s, 90m, 12h, 30d, 2w)",
            older_than);
      }
    }
  }

  if (push->parsed() || pull->parsed()) {
    // Neither reads routes: CACHE_DIR is the tree, its store <CACHE_DIR>/.cachefs
    // unless --store says otherwise.
    Context ctx;
    ctx.json = json;
    RemoteArgs& r = push->parsed() ? push_args : pull_args;
    r.store = flags.store;
    return push->parsed() ? cmd_push(ctx, r, getenv) : cmd_pull(ctx, r, getenv);
  }
  if (stats->parsed() && !mount.empty()) {
    Context ctx;
    ctx.json = json;
    return cmd_stats_mount(ctx, mount);
  }
  Context ctx = make_context(flags, getenv);
  ctx.json = json;
  if (import->parsed()) return cmd_import(ctx, import_args);
  if (stats->parsed()) return cmd_stats(ctx);
  if (verify->parsed()) return cmd_verify(ctx, repair, verify_jobs);
  if (gc->parsed()) return cmd_gc(ctx, gc_dry);

  return cmd_evict(ctx, ea);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const cachefs::UsageError& e) {
    std::fprintf(stderr, "cachectl: %s\n", one_line(e.what()).c_str());
    return 2;
  } catch (const cachefs::remote::RemoteError& e) {
    std::fprintf(stderr, "cachectl: %s\n", one_line(e.what()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cachectl: error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
}

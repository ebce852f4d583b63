// The resolved plan of a melange build file: every `uses:` expanded, every
// `${{...}}` substituted, every `if` evaluated, working directories and
// environments worked out — what a runner executes, step by step, with no YAML
// left. Building it is where every mistake in the build file or a pipeline file
// is found (a UsageError naming FILE:LINE:COLUMN and the field), before anything
// is mounted or started.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "launcher/build_file.h"
#include "launcher/source.h"

namespace cachefs::launcher {

struct PlanOptions {
  // Searched in order for `uses:`; pipeline_search_path(--pipeline-dir values)
  // gives the user's directories followed by the shipped one.
  std::vector<std::filesystem::path> pipeline_dirs;
  // Override or add `vars.*` (applied before var-transforms).
  std::map<std::string, std::string> vars;
  // --env K=V: over the build file's environment.environment.
  std::map<std::string, std::string> environment;
  std::string source_date_epoch = "0";
  // `${{build.arch}}` in melange's naming (x86_64, aarch64); empty: this host's.
  std::string arch;
};

struct PlanStep {
  std::string name;                                // "fetch", "build", "parent/child"
  std::string script;                              // the substituted `runs`
  std::string working_directory;                   // absolute
  std::map<std::string, std::string> environment;  // complete: build env + steps'
  Location where;                                  // the `runs` in its file
};

// A step left out because its `if` was false (its nested steps are left out too).
struct SkippedStep {
  std::string name;
  std::string condition;  // the `if` as written
  std::size_t before;     // index in PackagePlan::steps it would have preceded
  Location where;
};

struct PackagePlan {
  std::string name;
  std::string description;
  bool subpackage = false;
  std::string contextdir;  // /home/build/melange-out/<name>
  std::vector<PlanStep> steps;
  std::vector<SkippedStep> skipped;
};

struct SkippedSubpackage {
  std::string name;
  std::string condition;
  Location where;
};

struct PackageInfo {
  std::string name;
  std::string version;
  std::uint64_t epoch = 0;
  std::string description;
  std::string full_version;  // <version>-r<epoch>
  Resources resources;
};

struct Plan {
  PackageInfo package;
  std::string arch;
  // The build's environment: environment.environment, the caller's overrides, and
  // the cache environment where those leave a variable unset or empty.
  std::map<std::string, std::string> environment;
  // environment.contents.packages, then the `needs.packages` of every pipeline
  // used by a step that runs; no duplicates, first-seen order.
  std::vector<std::string> packages;
  // The main package first, then each subpackage whose `if` holds, in file order.
  std::vector<PackagePlan> builds;
  std::vector<SkippedSubpackage> skipped_subpackages;
};

Plan resolve_plan(const std::filesystem::path& build_file, const PlanOptions& options);
Plan resolve_plan(const BuildFile& file, const PlanOptions& options);

// This machine's architecture in melange's naming (x86_64, aarch64, ...).
std::string host_arch();

}  // namespace cachefs::launcher

// The parsed, not yet substituted, form of melange build files and pipeline files.
// Parsing checks shape only (known keys, types, what a step must have); values are
// substituted and `if`s evaluated later, by plan.h. Every mistake is a UsageError
// whose message starts with FILE:LINE:COLUMN and names the field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "launcher/source.h"

namespace cachefs::launcher {

// An ordered list of key → value pairs (YAML mapping order kept; keys unique).
using TextMap = std::vector<std::pair<std::string, Text>>;

struct Step {
  Location where;     // the step's mapping
  std::string field;  // e.g. "pipeline[2]" or "subpackages[0].pipeline[1]"
  std::optional<Text> name;
  std::optional<Text> runs;
  std::optional<Text> uses;
  TextMap with;  // only with `uses`
  std::optional<Text> if_;
  std::optional<Text> working_directory;
  TextMap environment;
  std::vector<Step> pipeline;
};

struct Resources {
  std::string cpu;
  std::string memory;
};

struct Package {
  Text name;
  Text version;
  std::uint64_t epoch = 0;
  Text description;
  Resources resources;
};

struct VarTransform {
  Location where;
  std::string field;  // "var-transforms[i]"
  Text from, match, replace, to;
};

struct Subpackage {
  Location where;
  std::string field;  // "subpackages[i]"
  Text name;
  Text description;
  std::optional<Text> if_;
  std::vector<Step> pipeline;
};

struct BuildFile {
  std::string path;  // as given; used in messages
  Package package;
  TextMap vars;
  std::vector<VarTransform> var_transforms;
  std::vector<Text> packages;        // environment.contents.packages
  TextMap environment;               // environment.environment
  std::vector<std::string> options;  // names of top-level build options (all disabled)
  std::vector<Step> pipeline;
  std::vector<Subpackage> subpackages;
};

struct PipelineInput {
  Location where;
  std::string description;
  std::optional<Text> default_value;
  bool required = false;
};

// A pipeline file for `uses:` (melange format).
struct PipelineFile {
  std::string path;
  std::string name;
  std::vector<Text> needs_packages;
  std::vector<std::pair<std::string, PipelineInput>> inputs;  // file order
  std::vector<Step> pipeline;

  const PipelineInput* input(std::string_view key) const;
};

BuildFile parse_build_file(const std::filesystem::path& path);
// `display_path` stands for the file in messages.
BuildFile parse_build_yaml(const std::string& yaml, const std::string& display_path);

PipelineFile parse_pipeline_file(const std::filesystem::path& path);
PipelineFile parse_pipeline_yaml(const std::string& yaml, const std::string& display_path);

}  // namespace cachefs::launcher

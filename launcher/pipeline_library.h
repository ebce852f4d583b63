// Finds the pipeline files that `uses:` names: <dir>/<name>.yaml in each directory
// in order (the user's --pipeline-dir ones first, then the shipped one).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "launcher/build_file.h"

namespace cachefs::launcher {

class PipelineLibrary {
 public:
  explicit PipelineLibrary(std::vector<std::filesystem::path> dirs) : dirs_(std::move(dirs)) {}

  // The pipeline `uses` names, parsed once; nullptr if no directory has it.
  // Throws UsageError if the file is malformed (its own file:line:column).
  // `uses` must already be checked by valid_uses().
  const PipelineFile* find(std::string_view uses);

  // Every pipeline name the directories hold, sorted, without duplicates.
  std::vector<std::string> known() const;

  const std::vector<std::filesystem::path>& dirs() const { return dirs_; }

 private:
  std::vector<std::filesystem::path> dirs_;
  std::map<std::string, std::unique_ptr<PipelineFile>, std::less<>> loaded_;
};

// A `uses:` value may only name a file beneath a pipeline directory: relative,
// no `..`, no empty components.
bool valid_uses(std::string_view uses);

// The pipelines shipped with cachefs: the installed copy
// (<datadir>/cachefs/pipelines) if it exists, else the source tree's launcher/pipelines.
std::filesystem::path shipped_pipeline_dir();
// `user_dirs` (the --pipeline-dir ones) followed by shipped_pipeline_dir().
std::vector<std::filesystem::path> pipeline_search_path(
    const std::vector<std::filesystem::path>& user_dirs);

}  // namespace cachefs::launcher

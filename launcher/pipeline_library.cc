#include "launcher/pipeline_library.h"

#include <algorithm>
#include <set>
#include <system_error>

namespace cachefs::launcher {

namespace fs = std::filesystem;

bool valid_uses(std::string_view uses) {
  if (uses.empty() || uses.front() == '/' || uses.back() == '/') return false;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = uses.find('/', start);
    const std::string_view part = uses.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.';
      if (!ok) return false;
    }
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

const PipelineFile* PipelineLibrary::find(std::string_view uses) {
  if (auto it = loaded_.find(uses); it != loaded_.end()) return it->second.get();
  for (const fs::path& dir : dirs_) {
    const fs::path candidate = dir / (std::string(uses) + ".yaml");
    std::error_code ec;
    if (!fs::is_regular_file(candidate, ec)) continue;
    auto parsed = std::make_unique<PipelineFile>(parse_pipeline_file(candidate));
    const PipelineFile* p = parsed.get();
    loaded_.emplace(std::string(uses), std::move(parsed));
    return p;
  }
  return nullptr;
}

std::vector<std::string> PipelineLibrary::known() const {
  std::set<std::string> names;
  for (const fs::path& dir : dirs_) {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec) || it->path().extension() != ".yaml") continue;
      fs::path rel = it->path().lexically_relative(dir);
      rel.replace_extension();
      names.insert(rel.generic_string());
    }
  }
  return {names.begin(), names.end()};
}

fs::path shipped_pipeline_dir() {
  std::error_code ec;
  fs::path installed = CACHEFS_PIPELINES_INSTALL_DIR;
  if (fs::is_directory(installed, ec)) return installed;
  return CACHEFS_PIPELINES_SOURCE_DIR;
}

std::vector<fs::path> pipeline_search_path(const std::vector<fs::path>& user_dirs) {
  std::vector<fs::path> out = user_dirs;
  out.push_back(shipped_pipeline_dir());
  return out;
}

}  // namespace cachefs::launcher

// Shared by the launcher tests: building plans from inline YAML and catching the
// one-line errors.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "common/error.h"
#include "launcher/build_file.h"
#include "launcher/pipeline_library.h"
#include "launcher/plan.h"

namespace cachefs::launcher::testing {

namespace fs = std::filesystem;

inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

inline PlanOptions default_options() {
  PlanOptions o;
  o.pipeline_dirs = pipeline_search_path({});
  o.arch = "x86_64";
  return o;
}

inline Plan plan_of(const std::string& yaml, const PlanOptions& options = default_options()) {
  return resolve_plan(parse_build_yaml(yaml, "pkg.yaml"), options);
}

inline std::string plan_error(const std::string& yaml,
                              const PlanOptions& options = default_options()) {
  return error_of([&] { plan_of(yaml, options); });
}

inline std::string parse_error(const std::string& yaml) {
  return error_of([&] { parse_build_yaml(yaml, "pkg.yaml"); });
}

inline const PlanStep* find_step(const PackagePlan& p, const std::string& name) {
  for (const PlanStep& s : p.steps) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cachefs-launcher-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  fs::path path() const { return path_; }
  fs::path write(const std::string& rel, const std::string& content) const {
    fs::path p = fs::path(path_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
    return p;
  }

 private:
  std::string path_;
};

// The head every inline build file starts with (5 lines).
inline constexpr const char* kHead =
    "package:\n"
    "  name: hello\n"
    "  version: 1.2.3\n"
    "  epoch: 4\n"
    "  description: says hello\n";

}  // namespace cachefs::launcher::testing

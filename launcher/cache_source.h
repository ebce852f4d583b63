// launch build --cache-source DIR|URL: the cache filled before the build, by
// `cachectl pull SOURCE CACHE_DIR` (a remote store, or a plain cache tree
// copied and deduplicated), cachectl found next to launch.
#pragma once

#include <string>

namespace cachefs::launcher {

// Runs the pull, its output on launch's stderr. Throws UsageError for a bad
// source, std::runtime_error for a failed pull (cachectl's line is on stderr).
void preload_cache(const std::string& self, const std::string& source, const std::string& cache_dir,
                   bool existing_mount);

}  // namespace cachefs::launcher

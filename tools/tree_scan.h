// A cache tree as a manifest: every directory, regular file and symbolic link
// beneath a root (the store and other filesystems left out), files hashed in
// parallel — or, for a file that is a store object, its hash read from the
// object's name, without reading the file. What push uploads and what pull
// takes from a plain directory.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <unordered_map>

#include "remote/manifest.h"
#include "tools/progress.h"

namespace cachefs::tools {

struct ScannedTree {
  remote::Manifest manifest;  // sorted
  // One file per content: where push reads it from, and its stat when hashed
  // (a file that changed since is not uploaded under the old hash).
  struct Source {
    std::string rel;
    struct stat st;
  };
  std::unordered_map<std::string, Source> sources;  // by hash hex
  uint64_t files = 0, dirs = 0, symlinks = 0, bytes = 0;
  uint64_t hashed_bytes = 0, hashes_from_store = 0;
  uint64_t skipped = 0;  // special files, other filesystems, files that changed or failed
};

// Scans `root`. `store_dir` (may be empty or missing) is left out and used to
// recognise objects. Warnings go to stderr; a root that is not a readable
// directory is a UsageError naming `what`.
ScannedTree scan_tree(const std::string& root, const std::string& store_dir, unsigned jobs,
                      Progress* progress, std::string_view what);

}  // namespace cachefs::tools

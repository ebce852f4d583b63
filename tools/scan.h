// Walking every backing directory of a cache once, the way stats and evict see
// it: each branch without crossing filesystems, never entering the store or
// another branch's directory (which is walked as itself).
#pragma once

#include <sys/stat.h>

#include <functional>
#include <string>
#include <vector>

#include "store/object_store.h"
#include "tools/context.h"
#include "tools/walk.h"

namespace cachefs::tools {

struct BranchRoot {
  const Branch* branch;
  std::shared_ptr<Dir> dir;
  struct stat st;
};

// Opens every branch directory (UsageError if one is gone).
std::vector<BranchRoot> open_branches(const std::vector<Branch>& branches);

// Calls fn(branch index, entry) for every non-directory of every branch.
void scan_branches(const std::vector<BranchRoot>& roots, const store::Store& store,
                   const std::function<void(size_t, const Entry&)>& fn);

// Calls fn(fan-out dir fd, "ab/name", key, stat) for every entry under objects/
// that parses as an object and is a regular file; other entries are skipped.
void scan_objects(
    const store::Store& store,
    const std::function<void(int dirfd, const std::string& rel, const char* name,
                             const store::ObjectKey& key, const struct stat& st)>& fn);

inline uint64_t physical(const struct stat& st) {
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

}  // namespace cachefs::tools

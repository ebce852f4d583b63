// Walking backing trees the way the daemon reaches them: beneath a directory
// descriptor, one name at a time, never following a symbolic link and never
// crossing into another filesystem.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "common/unique_fd.h"

namespace cachefs::tools {

// An open directory of a walk; shared so work queued on its entries may outlive
// the walk's visit of it.
struct Dir {
  UniqueFd fd;
  std::string rel;  // path relative to the walk's root ("" for the root)
};

struct Entry {
  const std::shared_ptr<Dir>& dir;
  const std::string& name;
  const struct stat& st;  // lstat of the entry
  std::string rel() const { return dir->rel.empty() ? name : dir->rel + "/" + name; }
};

using DevIno = std::pair<dev_t, ino_t>;
struct DevInoHash {
  size_t operator()(const DevIno& d) const {
    return std::hash<uint64_t>()(static_cast<uint64_t>(d.first) * 0x9e3779b97f4a7c15ULL ^
                                 static_cast<uint64_t>(d.second));
  }
};

struct WalkOptions {
  std::set<DevIno> skip_dirs;  // directories not entered (the store, other roots)
  // Called for a directory that could not be read or entered; the walk goes on.
  std::function<void(const std::string& rel, int err)> on_error;
  // Called for a directory on another filesystem than the root (not entered).
  std::function<void(const std::string& rel)> on_mount;
};

// Opens `path` as a walk root; throws UsageError naming `what` if it cannot.
std::shared_ptr<Dir> open_root(const std::string& path, std::string_view what);

// Calls `fn` for every non-directory beneath `root`, depth first, names in
// sorted order.
void walk(const std::shared_ptr<Dir>& root, const WalkOptions& opt,
          const std::function<void(const Entry&)>& fn);

// Opens directory `rel` (a path a walk reported) beneath `rootfd` component by
// component without following symbolic links; an empty fd with errno set if the
// path no longer leads to a directory.
UniqueFd open_beneath(int rootfd, const std::string& rel);

// The two halves of such a path for open_beneath and an *at call: the directory
// ("" for an entry of the root) and the last name.
std::string parent_of(const std::string& rel);
std::string name_of(const std::string& rel);

}  // namespace cachefs::tools

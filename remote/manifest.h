// A manifest: what a pushed cache tree holds — every directory, regular file
// and symbolic link by path, with modes, sizes, content hashes and link
// targets. Stored content-addressed (its name is the xxh3-128 of its bytes).
// Format (docs/remote-format.md):
//
//   {"format": "cachefs-manifest", "version": 1, "created": "<RFC 3339 UTC>",
//    "entries": [
//      {"path": "go", "type": "dir", "mode": "0755"},
//      {"path": "go/a.zip", "type": "file", "mode": "0644", "size": 12, "xxh3": "<32 hex>"},
//      {"path": "go/latest", "type": "symlink", "target": "a.zip"}]}
//
// Paths are relative, '/'-separated, sorted so a directory precedes what it holds.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "store/hash.h"

namespace cachefs::remote {

struct Entry {
  enum class Type { kDir, kFile, kSymlink };
  std::string path;
  Type type = Type::kFile;
  mode_t mode = 0;  // permission and set-id bits (07777); 0 for symlinks
  uint64_t size = 0;
  store::Hash128 hash;  // files
  std::string target;   // symlinks
};

struct Manifest {
  std::string created;
  std::vector<Entry> entries;

  // Sorts entries by path component order (a directory before its contents).
  void sort();
  std::string to_json() const;
  // Parses and checks a manifest from an untrusted source: every path relative,
  // no "", "." or ".." component, every parent a directory entry earlier in the
  // list, no duplicates. Throws RemoteError naming what is wrong.
  static Manifest parse(std::string_view text);
};

// True for a relative path with no empty, "." or ".." component.
bool safe_relative_path(std::string_view p);

}  // namespace cachefs::remote

// Discard mode's upper layer: where a mount's changes go, so that the routed
// backing trees (the lower layer) are never written. The layout follows the
// kernel's overlayfs: an upper directory tree mirroring the mount's paths; a
// deleted lower entry is hidden by a whiteout (a 0:0 character device); an upper
// directory that replaces a lower one carries an "opaque" xattr; a file copied
// up from the lower layer carries an "origin" xattr (for the discard report).
#pragma once

#include <string>

#include "common/unique_fd.h"
#include "fs/mount_config.h"
#include "fs/route_table.h"

namespace cachefs {

inline constexpr const char* kOpaqueXattr = "trusted.cachefs.opaque";
inline constexpr const char* kOriginXattr = "trusted.cachefs.origin";

struct UpperLayer {
  // The layer's root directory.
  std::string tree;
  // The directory made for it under the store (<store>/upper/<id>), removed with
  // it; empty for --upper DIR, whose contents alone are removed.
  std::string holder;
  // Held (flock) while mounted: a holder that nobody holds is a dead mount's,
  // and the next discard mount over the store removes it.
  UniqueFd lock;
  bool keep = false;

  // Makes the layer: --upper DIR (empty; checked by validate_paths), or a fresh
  // private directory under the store. Removes dead mounts' layers. Throws
  // UsageError.
  static std::unique_ptr<UpperLayer> create(const MountConfig& cfg, const RouteTable& routes);
  // Gives the upper root the lower root's mode, owner and times.
  void match_root(int lower_root, int upper_root) const;
  // Removes the layer (or, with keep, leaves it and marks it kept).
  void finish();
};

}  // namespace cachefs

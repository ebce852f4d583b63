// cachectl gc: remove objects that no path uses any more (link count 1: only
// the store's own name). A mount linking such an object at the same moment
// links from its open descriptor; once the name is gone the inode has no links
// and that link fails, so the race costs dedup for one file, never data.
#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "tools/commands.h"
#include "tools/progress.h"
#include "tools/scan.h"
#include "common/units.h"

namespace cachefs::tools {

int cmd_gc(const Context& ctx, bool dry_run) {
  const auto store = open_store(ctx, false);
  Progress progress(dry_run ? "gc (dry run)" : "gc", "objects");
  uint64_t objects = 0, removed = 0, bytes = 0, failed = 0;
  Json list = Json::array();
  scan_objects(*store, [&](int dirfd, const std::string& rel, const char* name,
                           const store::ObjectKey&, const struct stat& st) {
    ++objects;
    progress.add(1, 0);
    if (st.st_nlink != 1) return;
    if (!dry_run && ::unlinkat(dirfd, name, 0) != 0) {
      if (errno != ENOENT) {
        ++failed;
        warn(fmt::format("objects/{}: {}", rel, std::strerror(errno)));
      }
      return;
    }
    ++removed;
    bytes += physical(st);
    list.push("objects/" + rel);
  });
  progress.finish();
  Json report = Json::object()
                    .set("store", store->path())
                    .set("dry_run", dry_run)
                    .set("objects", objects)
                    .set("removed", removed)
                    .set("removed_bytes", bytes)
                    .set("kept", objects - removed)
                    .set("removed_objects", list);
  emit(ctx, report, [&] {
    if (dry_run) {
      for (const auto& o : list.items()) std::cout << "would remove " << o.str() << "\n";
    }
    std::cout << (dry_run ? "would remove " : "removed ") << removed << " unreferenced object"
              << (removed == 1 ? "" : "s") << ", " << human_bytes(bytes) << " (" << bytes
              << " bytes); " << objects - removed << " kept\n";
  });
  return failed == 0 ? 0 : 1;
}

}  // namespace cachefs::tools

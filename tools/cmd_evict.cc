// cachectl evict: remove what was used least recently until the cache fits a
// size, or everything not used for an age. The unit is an inode: every backing
// path of it and its store object go together, since they are one file on disk.
// "Use" is the inode's atime (reads through any path of a shared object count
// for all of them), or its mtime when that is later (noatime mounts).
#include <fcntl.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <unordered_map>

#include "tools/commands.h"
#include "tools/progress.h"
#include "tools/scan.h"
#include "tools/walk.h"
#include "common/units.h"

namespace cachefs::tools {
namespace {

struct PathRef {
  size_t branch;
  std::string rel;
};

struct Inode {
  DevIno id;
  uint64_t bytes = 0;  // physical
  uint64_t size = 0;
  nlink_t nlink = 0;
  timespec last_use{};
  std::vector<PathRef> paths;
  std::string object;  // "ab/name" under objects/, if it is one
};

timespec last_use(const struct stat& st) {
  const auto& a = st.st_atim;
  const auto& m = st.st_mtim;
  return (a.tv_sec > m.tv_sec || (a.tv_sec == m.tv_sec && a.tv_nsec >= m.tv_nsec)) ? a : m;
}

bool same_time(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

std::string when(const timespec& t) {
  char buf[32];
  struct tm tm {};
  ::localtime_r(&t.tv_sec, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

enum class Outcome { kFreed, kPathsOnly, kInUse, kFailed };

}  // namespace

int cmd_evict(const Context& ctx, const EvictArgs& args) {
  const auto& branches = need_branches(ctx, "evict");
  const auto roots = open_branches(branches);
  const auto store = open_store(ctx, false);

  // Every inode of the cache, with all its names.
  std::unordered_map<DevIno, Inode, DevInoHash> inodes;
  auto inode_of = [&](const struct stat& st) -> Inode& {
    Inode& n = inodes[{st.st_dev, st.st_ino}];
    if (n.nlink == 0) {
      n.id = {st.st_dev, st.st_ino};
      n.bytes = physical(st);
      n.size = static_cast<uint64_t>(st.st_size);
      n.nlink = st.st_nlink;
      n.last_use = last_use(st);
    }
    return n;
  };
  {
    Progress scan("evict: scanning", "files");
    scan_branches(roots, *store, [&](size_t b, const Entry& e) {
      if (!S_ISREG(e.st.st_mode)) return;
      scan.add(1, 0);
      inode_of(e.st).paths.push_back(PathRef{b, e.rel()});
    });
    scan_objects(*store, [&](int, const std::string& rel, const char*, const store::ObjectKey&,
                             const struct stat& st) { inode_of(st).object = rel; });
  }
  uint64_t total = 0;
  std::vector<Inode*> order;
  for (auto& [id, n] : inodes) {
    total += n.bytes;
    order.push_back(&n);
  }
  // Least recently used first; ties in a stable, readable order.
  std::sort(order.begin(), order.end(), [](const Inode* a, const Inode* b) {
    if (!same_time(a->last_use, b->last_use)) {
      return a->last_use.tv_sec != b->last_use.tv_sec ? a->last_use.tv_sec < b->last_use.tv_sec
                                                      : a->last_use.tv_nsec < b->last_use.tv_nsec;
    }
    const std::string& pa = a->paths.empty() ? a->object : a->paths[0].rel;
    const std::string& pb = b->paths.empty() ? b->object : b->paths[0].rel;
    return pa < pb;
  });

  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  const time_t cutoff = args.older_than ? now.tv_sec - static_cast<time_t>(*args.older_than) : 0;

  auto display = [&](const PathRef& p) {
    const std::string& d = roots[p.branch].branch->dir;
    return (d == "/" ? "" : d) + "/" + p.rel;
  };

  // Removes every name of `n` that still is `n` and not used since the scan.
  auto evict = [&](const Inode& n) -> Outcome {
    bool all_paths = true;
    for (const PathRef& p : n.paths) {
      UniqueFd dir = open_beneath(roots[p.branch].dir->fd.get(), parent_of(p.rel));
      const std::string base = name_of(p.rel);
      struct stat st {};
      if (!dir || ::fstatat(dir.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        continue;  // gone already
      }
      if (st.st_dev != n.id.first || st.st_ino != n.id.second) {
        continue;  // the name holds another file now: not ours to judge
      }
      if (!same_time(last_use(st), n.last_use)) return Outcome::kInUse;
      if (::unlinkat(dir.get(), base.c_str(), 0) != 0 && errno != ENOENT) {
        warn(fmt::format("{}: {}", display(p), std::strerror(errno)));
        all_paths = false;
      }
    }
    if (!all_paths) return Outcome::kFailed;
    if (n.object.empty()) return Outcome::kFreed;
    struct stat st {};
    if (::fstatat(store->objects_fd(), n.object.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        st.st_dev != n.id.first || st.st_ino != n.id.second) {
      return Outcome::kFreed;
    }
    // Linked from somewhere else meanwhile (or by a tree outside this cache):
    // the object stays for those paths.
    if (st.st_nlink != 1) return Outcome::kPathsOnly;
    if (::unlinkat(store->objects_fd(), n.object.c_str(), 0) != 0 && errno != ENOENT) {
      warn(fmt::format("objects/{}: {}", n.object, std::strerror(errno)));
      return Outcome::kFailed;
    }
    return Outcome::kFreed;
  };

  Progress progress(args.dry_run ? "evict (dry run)" : "evict", "files");
  uint64_t after = total, inodes_removed = 0, files_removed = 0, objects_removed = 0,
           bytes_removed = 0, kept_in_use = 0, failed = 0;
  Json list = Json::array();
  for (const Inode* n : order) {
    if (args.max_size) {
      if (after <= *args.max_size) break;
    } else if (n->last_use.tv_sec >= cutoff) {
      break;  // sorted: everything after this was used more recently
    }
    const Outcome o = args.dry_run ? Outcome::kFreed : evict(*n);
    progress.add(n->paths.size(), n->bytes);
    if (o == Outcome::kInUse) {
      ++kept_in_use;
      continue;
    }
    if (o == Outcome::kFailed) {
      ++failed;
      continue;
    }
    files_removed += n->paths.size();
    if (o == Outcome::kFreed) {
      ++inodes_removed;
      if (!n->object.empty()) ++objects_removed;
      bytes_removed += n->bytes;
      after -= n->bytes;
    }
    Json paths = Json::array();
    for (const PathRef& p : n->paths) paths.push(display(p));
    Json entry = Json::object()
                     .set("paths", paths)
                     .set("object", n->object.empty() ? Json() : Json("objects/" + n->object))
                     .set("bytes", n->bytes)
                     .set("last_use", static_cast<long long>(n->last_use.tv_sec));
    if (o == Outcome::kPathsOnly) entry.set("object_kept", "linked elsewhere");
    list.push(std::move(entry));
  }
  progress.finish();

  Json report = Json::object()
                    .set("dry_run", args.dry_run)
                    .set("physical_bytes_before", total)
                    .set("physical_bytes_after", after)
                    .set("removed_inodes", inodes_removed)
                    .set("removed_files", files_removed)
                    .set("removed_objects", objects_removed)
                    .set("removed_bytes", bytes_removed)
                    .set("kept_used_meanwhile", kept_in_use)
                    .set("removed", list);
  if (args.max_size) report.set("max_size", *args.max_size);
  if (args.older_than) report.set("older_than_seconds", *args.older_than);
  emit(ctx, report, [&] {
    if (args.dry_run) {
      for (const Json& e : list.items()) {
        const timespec t{static_cast<time_t>(e.find("last_use")->number()), 0};
        std::string names;
        for (const Json& p : e.find("paths")->items()) names += " " + p.str();
        if (!e.find("object")->is_null()) names += " " + e.find("object")->str();
        std::cout << "would remove " << when(t) << " "
                  << human_bytes(static_cast<uint64_t>(e.find("bytes")->number())) << names << "\n";
      }
    }
    std::cout << (args.dry_run ? "would remove " : "removed ") << files_removed << " file"
              << (files_removed == 1 ? "" : "s") << " (" << inodes_removed << " inode"
              << (inodes_removed == 1 ? "" : "s") << ", " << objects_removed << " object"
              << (objects_removed == 1 ? "" : "s") << "), " << human_bytes(bytes_removed) << " ("
              << bytes_removed << " bytes)\n"
              << "cache size " << human_bytes(total) << " -> " << human_bytes(after) << "\n";
    if (kept_in_use) std::cout << "kept " << kept_in_use << " used while evicting\n";
  });
  return failed == 0 ? 0 : 1;
}

}  // namespace cachefs::tools

// cachectl stats: what the cache holds and what dedup saves, from the backing
// trees and the store; or, with --mount, a running mount's own counters.
#include <sys/xattr.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <unordered_set>

#include "common/error.h"
#include "tools/commands.h"
#include "tools/progress.h"
#include "tools/scan.h"
#include "common/units.h"

namespace cachefs::tools {
namespace {

using InodeSet = std::unordered_set<DevIno, DevInoHash>;

// Files, logical bytes (every path) and physical bytes (every inode once).
struct Tally {
  uint64_t files = 0, logical = 0, physical = 0;
  InodeSet seen;
  void add(const struct stat& st) {
    ++files;
    logical += static_cast<uint64_t>(st.st_size);
    if (seen.insert({st.st_dev, st.st_ino}).second) physical += tools::physical(st);
  }
  Json json() const {
    return Json::object()
        .set("files", files)
        .set("logical_bytes", logical)
        .set("physical_bytes", physical);
  }
};

double ratio(uint64_t logical, uint64_t physical) {
  return physical == 0 ? 1.0 : static_cast<double>(logical) / static_cast<double>(physical);
}

std::string fixed(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string sizes(uint64_t logical, uint64_t physical) {
  return human_bytes(logical) + " logical, " + human_bytes(physical) + " physical";
}

// A mount's counters as indented `key: value` lines.
void print_tree(const Json& v, int depth) {
  const std::string pad(static_cast<size_t>(2 * depth), ' ');
  for (const auto& [k, child] : v.members()) {
    if (child.is_object()) {
      std::cout << pad << k << ":\n";
      print_tree(child, depth + 1);
    } else {
      std::cout << pad << k << ": " << child.scalar_text() << "\n";
    }
  }
}

}  // namespace

int cmd_stats(const Context& ctx) {
  const auto& branches = need_branches(ctx, "stats");
  const auto roots = open_branches(branches);
  const auto store = open_store(ctx, false);

  Progress progress("stats", "files");
  Tally total;
  std::vector<Tally> per_branch(roots.size());
  std::map<std::string, Tally> per_top;
  scan_branches(roots, *store, [&](size_t b, const Entry& e) {
    if (!S_ISREG(e.st.st_mode)) return;
    progress.add(1, 0);
    total.add(e.st);
    per_branch[b].add(e.st);
    const std::string& top = e.dir->rel.empty() ? std::string(".") : e.dir->rel;
    per_top[top.substr(0, top.find('/'))].add(e.st);
  });
  uint64_t objects = 0, object_bytes = 0, unref = 0, unref_bytes = 0;
  scan_objects(*store, [&](int, const std::string&, const char*, const store::ObjectKey&,
                           const struct stat& st) {
    ++objects;
    object_bytes += physical(st);
    if (st.st_nlink == 1) {
      ++unref;
      unref_bytes += physical(st);
    }
    if (total.seen.insert({st.st_dev, st.st_ino}).second) total.physical += physical(st);
  });
  progress.finish();

  Json tops = Json::object();
  for (const auto& [name, t] : per_top) tops.set(name, t.json());
  Json routes = Json::array();
  std::vector<std::string> dedup(roots.size());
  for (size_t b = 0; b < roots.size(); ++b) {
    dedup[b] = roots[b].st.st_dev == store->dev() ? "on" : "off: other filesystem";
    Json regexes = Json::array();
    for (const auto& r : roots[b].branch->regexes) regexes.push(r);
    const Tally& t = per_branch[b];
    routes.push(Json::object()
                    .set("directory", roots[b].branch->dir)
                    .set("regexes", regexes)
                    .set("files", t.files)
                    .set("logical_bytes", t.logical)
                    .set("physical_bytes", t.physical)
                    .set("dedup", dedup[b]));
  }
  const double r = ratio(total.logical, total.physical);
  Json report = Json::object()
                    .set("store", store->path())
                    .set("files", total.files)
                    .set("logical_bytes", total.logical)
                    .set("physical_bytes", total.physical)
                    .set("dedup_ratio", r)
                    .set("objects", objects)
                    .set("object_bytes", object_bytes)
                    .set("unreferenced_objects", unref)
                    .set("unreferenced_bytes", unref_bytes)
                    .set("top_level", tops)
                    .set("routes", routes);
  emit(ctx, report, [&] {
    std::cout << "store         " << store->path() << "\n"
              << "files         " << total.files << "\n"
              << "logical       " << human_bytes(total.logical) << " (" << total.logical << ")\n"
              << "physical      " << human_bytes(total.physical) << " (" << total.physical << ")\n"
              << "dedup ratio   " << fixed(r) << "\n"
              << "objects       " << objects << ", " << human_bytes(object_bytes) << "\n"
              << "unreferenced  " << unref << " objects, " << human_bytes(unref_bytes)
              << (unref ? " (cachectl gc removes them)" : "") << "\n";
    std::cout << "top-level directories:\n";
    for (const auto& [name, t] : per_top) {
      std::cout << "  " << name << ": " << t.files << " files, " << sizes(t.logical, t.physical)
                << "\n";
    }
    std::cout << "routes:\n";
    for (size_t b = 0; b < roots.size(); ++b) {
      std::string names;
      for (const auto& re : roots[b].branch->regexes)
        names += (names.empty() ? "" : ", ") + (re.empty() ? std::string("catch-all") : re);
      const Tally& t = per_branch[b];
      std::cout << "  " << roots[b].branch->dir << " (" << names << "): " << t.files << " files, "
                << sizes(t.logical, t.physical) << ", dedup " << dedup[b] << "\n";
    }
  });
  return 0;
}

int cmd_stats_mount(const Context& ctx, const std::string& mnt) {
  constexpr const char* kStatsXattr = "trusted.cachefs.stats";
  std::string buf;
  for (int attempt = 0;; ++attempt) {
    ssize_t n = ::getxattr(mnt.c_str(), kStatsXattr, nullptr, 0);
    if (n >= 0) {
      buf.resize(static_cast<size_t>(n) + 1);
      n = ::getxattr(mnt.c_str(), kStatsXattr, buf.data(), buf.size());
    }
    if (n >= 0) {
      buf.resize(static_cast<size_t>(n));
      break;
    }
    if (errno == ERANGE && attempt < 5) continue;  // the counters grew in between
    if (errno == ENODATA || errno == ENOTSUP || errno == EOPNOTSUPP)
      throw UsageError::make("--mount '{}' is not a cachefs mount (it has no {})", mnt,
                             kStatsXattr);
    throw UsageError::make("--mount '{}': {}", mnt, std::strerror(errno));
  }
  while (!buf.empty() && (buf.back() == '\0' || buf.back() == '\n' || buf.back() == ' '))
    buf.pop_back();
  if (ctx.json) {
    std::cout << buf << "\n";
    return 0;
  }
  const auto doc = Json::parse(buf);
  if (doc && doc->is_object()) {
    std::cout << "mount " << mnt << "\n";
    print_tree(*doc, 0);
  } else {
    std::cout << buf << "\n";
  }
  return 0;
}

}  // namespace cachefs::tools

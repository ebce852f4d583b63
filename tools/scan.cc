#include "tools/scan.h"

#include <fcntl.h>

#include <cstring>

namespace cachefs::tools {

std::vector<BranchRoot> open_branches(const std::vector<Branch>& branches) {
  std::vector<BranchRoot> roots;
  for (const Branch& b : branches) {
    BranchRoot r{&b, open_root(b.dir, "cache directory"), {}};
    ::fstat(r.dir->fd.get(), &r.st);
    roots.push_back(std::move(r));
  }
  return roots;
}

void scan_branches(const std::vector<BranchRoot>& roots, const store::Store& store,
                   const std::function<void(size_t, const Entry&)>& fn) {
  struct stat sst {};
  ::fstat(store.fd(), &sst);
  for (size_t i = 0; i < roots.size(); ++i) {
    WalkOptions opt;
    opt.skip_dirs.insert({sst.st_dev, sst.st_ino});
    for (size_t j = 0; j < roots.size(); ++j) {
      if (j != i) opt.skip_dirs.insert({roots[j].st.st_dev, roots[j].st.st_ino});
    }
    const std::string& base = roots[i].branch->dir;
    opt.on_error = [&](const std::string& rel, int err) {
      warn(fmt::format("{}{}{}: {}", base, rel.empty() ? "" : "/", rel, std::strerror(err)));
    };
    walk(roots[i].dir, opt, [&](const Entry& e) { fn(i, e); });
  }
}

void scan_objects(const store::Store& store,
                  const std::function<void(int, const std::string&, const char*,
                                           const store::ObjectKey&, const struct stat&)>& fn) {
  store.for_each_object([&](int dirfd, const char* name, const std::optional<store::ObjectKey>& k) {
    if (!k) return;
    struct stat st {};
    if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) return;
    fn(dirfd, k->fanout() + "/" + name, name, *k, st);
  });
}

}  // namespace cachefs::tools

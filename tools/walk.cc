#include "tools/walk.h"

#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace cachefs::tools {
namespace {

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

int read_names(int fd, std::vector<std::string>& names) {
  const int dup = ::openat(fd, ".", kDirFlags);
  if (dup < 0) return errno;
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    const int err = errno;
    ::close(dup);
    return err;
  }
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
      names.emplace_back(e->d_name);
  }
  const int err = errno;
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return err;
}

void walk_dir(const std::shared_ptr<Dir>& dir, dev_t dev, const WalkOptions& opt,
              const std::function<void(const Entry&)>& fn) {
  std::vector<std::string> names;
  if (int err = read_names(dir->fd.get(), names)) {
    if (opt.on_error) opt.on_error(dir->rel, err);
  }
  for (const std::string& name : names) {
    struct stat st {};
    if (::fstatat(dir->fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT && opt.on_error)
        opt.on_error(dir->rel.empty() ? name : dir->rel + "/" + name, errno);
      continue;  // removed while we looked: nothing to do
    }
    if (!S_ISDIR(st.st_mode)) {
      fn(Entry{dir, name, st});
      continue;
    }
    const std::string rel = dir->rel.empty() ? name : dir->rel + "/" + name;
    if (opt.skip_dirs.count({st.st_dev, st.st_ino})) continue;
    if (st.st_dev != dev) {
      if (opt.on_mount) opt.on_mount(rel);
      continue;
    }
    auto child = std::make_shared<Dir>();
    child->fd.reset(::openat(dir->fd.get(), name.c_str(), kDirFlags));
    struct stat cst {};
    if (!child->fd || ::fstat(child->fd.get(), &cst) != 0) {
      if (errno != ENOENT && opt.on_error) opt.on_error(rel, errno);
      continue;
    }
    if (cst.st_dev != st.st_dev || cst.st_ino != st.st_ino) continue;  // replaced meanwhile
    child->rel = rel;
    walk_dir(child, dev, opt, fn);
  }
}

}  // namespace

std::shared_ptr<Dir> open_root(const std::string& path, std::string_view what) {
  auto d = std::make_shared<Dir>();
  d->fd.reset(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d->fd) {
    throw UsageError::make("{} '{}': {}", what, path,
                           errno == ENOTDIR ? "not a directory" : std::strerror(errno));
  }
  return d;
}

void walk(const std::shared_ptr<Dir>& root, const WalkOptions& opt,
          const std::function<void(const Entry&)>& fn) {
  struct stat st {};
  if (::fstat(root->fd.get(), &st) != 0) {
    if (opt.on_error) opt.on_error("", errno);
    return;
  }
  if (opt.skip_dirs.count({st.st_dev, st.st_ino})) return;
  walk_dir(root, st.st_dev, opt, fn);
}

UniqueFd open_beneath(int rootfd, const std::string& rel) {
  UniqueFd cur(::openat(rootfd, ".", kDirFlags));
  size_t start = 0;
  while (cur && start < rel.size()) {
    size_t slash = rel.find('/', start);
    if (slash == std::string::npos) slash = rel.size();
    const std::string part = rel.substr(start, slash - start);
    start = slash + 1;
    if (part.empty() || part == "." || part == "..") {
      errno = EINVAL;
      return UniqueFd();
    }
    cur.reset(::openat(cur.get(), part.c_str(), kDirFlags));
  }
  return cur;
}

std::string parent_of(const std::string& rel) {
  const size_t s = rel.rfind('/');
  return s == std::string::npos ? "" : rel.substr(0, s);
}

std::string name_of(const std::string& rel) {
  const size_t s = rel.rfind('/');
  return s == std::string::npos ? rel : rel.substr(s + 1);
}

}  // namespace cachefs::tools

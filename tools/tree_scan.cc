#include "tools/tree_scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "store/object_store.h"
#include "tools/context.h"
#include "tools/work_queue.h"

namespace cachefs::tools {
namespace {

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

struct Item {
  remote::Entry e;
  struct stat st {};
  bool dropped = false;
};

struct HashTask {
  std::shared_ptr<UniqueFd> dir;
  std::string name;
  Item* item;
};

std::string join(const std::string& rel, const std::string& name) {
  return rel.empty() ? name : rel + "/" + name;
}

}  // namespace

ScannedTree scan_tree(const std::string& root, const std::string& store_dir, unsigned jobs,
                      Progress* progress, std::string_view what) {
  auto rootfd = std::make_shared<UniqueFd>(::open(root.c_str(), kDirFlags));
  if (!*rootfd) throw UsageError::make("{} '{}': {}", what, root, std::strerror(errno));
  struct stat rst {};
  ::fstat(rootfd->get(), &rst);

  dev_t store_dev = 0;
  bool have_store = false;
  struct stat sst {};
  if (!store_dir.empty() && ::stat(store_dir.c_str(), &sst) == 0 && S_ISDIR(sst.st_mode)) {
    have_store = true;
    store_dev = sst.st_dev;
  }

  ScannedTree out;
  std::deque<Item> items;  // references stay valid as it grows
  std::atomic<uint64_t> hashed{0}, from_store{0}, failed{0};

  auto hash_one = [&](HashTask& t) {
    Item& it = *t.item;
    constexpr int kFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    UniqueFd fd(::openat(t.dir->get(), t.name.c_str(), kFlags | O_NOATIME));
    if (!fd && errno == EPERM) fd.reset(::openat(t.dir->get(), t.name.c_str(), kFlags));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0 || st.st_ino != it.st.st_ino || !S_ISREG(st.st_mode)) {
      warn(fmt::format("{}: {}; left out", it.e.path, fd ? "changed while scanned" : std::strerror(errno)));
      it.dropped = true;
      failed.fetch_add(1);
      return;
    }
    it.st = st;
    it.e.size = static_cast<uint64_t>(st.st_size);
    it.e.mode = static_cast<mode_t>(st.st_mode & 07777);
    bool done = false;
    if (have_store) {
      // An object's content never changes: its name holds its hash.
      if (const auto name = store::object_name(fd.get(), st, store_dev)) {
        if (const auto key = store::ObjectKey::parse(*name)) {
          it.e.hash = key->hash;
          from_store.fetch_add(1, std::memory_order_relaxed);
          done = true;
        }
      }
    }
    if (!done) {
      const int err = store::hash_fd(fd.get(), it.e.size, it.e.hash);
      if (err != 0) {
        warn(fmt::format("{}: {}; left out", it.e.path,
                         err == EAGAIN ? "changed while read" : std::strerror(err)));
        it.dropped = true;
        failed.fetch_add(1);
        return;
      }
      hashed.fetch_add(it.e.size, std::memory_order_relaxed);
    }
    if (progress) progress->add(1, it.e.size);
  };

  {
    WorkQueue<HashTask> queue(std::max(1u, jobs), 4 * jobs + 64, hash_one);
    // Depth first, names sorted; the stack holds directories still to list.
    // A directory is opened when its turn comes, so only the current chain of
    // directories holds descriptors, however wide the tree.
    struct Pending {
      std::shared_ptr<UniqueFd> fd;  // its own, once opened
      std::shared_ptr<UniqueFd> parent;
      std::string name, rel;
    };
    std::vector<Pending> stack{{rootfd, nullptr, "", ""}};
    while (!stack.empty()) {
      Pending d = std::move(stack.back());
      stack.pop_back();
      if (!d.fd) {
        d.fd = std::make_shared<UniqueFd>(::openat(d.parent->get(), d.name.c_str(), kDirFlags));
        d.parent.reset();
        if (!*d.fd) {
          warn(fmt::format("{}: {}; left out", d.rel, std::strerror(errno)));
          ++out.skipped;
          continue;
        }
      }
      std::vector<std::string> names;
      {
        const int dupfd = ::openat(d.fd->get(), ".", kDirFlags);
        DIR* dir = dupfd >= 0 ? ::fdopendir(dupfd) : nullptr;
        if (dir == nullptr) {
          if (dupfd >= 0) ::close(dupfd);
          warn(fmt::format("{}: {}", d.rel.empty() ? root : d.rel, std::strerror(errno)));
          ++out.skipped;
          continue;
        }
        while (const dirent* de = ::readdir(dir)) {
          const std::string n = de->d_name;
          if (n != "." && n != "..") names.push_back(n);
        }
        ::closedir(dir);
      }
      std::sort(names.begin(), names.end(), std::greater<>());  // popped in ascending order
      std::vector<Pending> subdirs;
      for (auto n = names.rbegin(); n != names.rend(); ++n) {
        const std::string& name = *n;
        const std::string rel = join(d.rel, name);
        struct stat st {};
        if (::fstatat(d.fd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
          if ((d.rel.empty() && name == ".cachefs") ||
              (have_store && st.st_dev == sst.st_dev && st.st_ino == sst.st_ino))
            continue;
          if (st.st_dev != rst.st_dev) {
            warn(fmt::format("{}: another filesystem; left out", rel));
            ++out.skipped;
            continue;
          }
          Item& it = items.emplace_back();
          it.e.path = rel;
          it.e.type = remote::Entry::Type::kDir;
          it.e.mode = static_cast<mode_t>(st.st_mode & 07777);
          subdirs.push_back({nullptr, d.fd, name, rel});
        } else if (S_ISREG(st.st_mode)) {
          Item& it = items.emplace_back();
          it.e.path = rel;
          it.e.type = remote::Entry::Type::kFile;
          it.st = st;
          queue.push(HashTask{d.fd, name, &it});
        } else if (S_ISLNK(st.st_mode)) {
          std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
          const ssize_t len = ::readlinkat(d.fd->get(), name.c_str(), target.data(), target.size());
          if (len <= 0 || static_cast<size_t>(len) >= target.size()) {
            warn(fmt::format("{}: changed while scanned; left out", rel));
            ++out.skipped;
            continue;
          }
          target.resize(static_cast<size_t>(len));
          Item& it = items.emplace_back();
          it.e.path = rel;
          it.e.type = remote::Entry::Type::kSymlink;
          it.e.target = target;
        } else {
          warn(fmt::format("{}: not a file, directory or symbolic link; left out", rel));
          ++out.skipped;
        }
      }
      // Subdirectories are listed in name order after this directory's entries.
      for (auto s = subdirs.rbegin(); s != subdirs.rend(); ++s) stack.push_back(std::move(*s));
    }
    queue.close();
  }

  for (Item& it : items) {
    if (it.dropped) continue;
    switch (it.e.type) {
      case remote::Entry::Type::kDir: ++out.dirs; break;
      case remote::Entry::Type::kSymlink: ++out.symlinks; break;
      case remote::Entry::Type::kFile:
        ++out.files;
        out.bytes += it.e.size;
        out.sources.try_emplace(it.e.hash.hex(), ScannedTree::Source{it.e.path, it.st});
        break;
    }
    out.manifest.entries.push_back(std::move(it.e));
  }
  out.manifest.sort();
  out.hashed_bytes = hashed.load();
  out.hashes_from_store = from_store.load();
  out.skipped += failed.load();
  return out;
}

}  // namespace cachefs::tools

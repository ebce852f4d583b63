// cachectl pull REMOTE CACHE_DIR: the ref's manifest, the contents the local
// store lacks downloaded (in parallel, -j) and each checked against its hash
// before it becomes an object, then the tree made: directories, and every file
// a hard link of its store object (like import) put in place by rename, so no
// path ever shows a partial file. Nothing in CACHE_DIR changes unless every
// object arrived intact. A plain directory that is not a remote layout (no
// refs/) is taken as a cache tree and pulled the same way.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "common/units.h"
#include "remote/remote.h"
#include "store/object_store.h"
#include "tools/commands.h"
#include "tools/tree_scan.h"
#include "tools/walk.h"
#include "tools/work_queue.h"

namespace cachefs::tools {
namespace {

using RE = remote::Entry;
using remote::RemoteError;
using store::Hash128;
using store::ObjectKey;

class Source {
 public:
  virtual ~Source() = default;
  virtual std::string describe() const = 0;
  virtual remote::Manifest load(const std::string& ref, std::string& manifest_hex) = 0;
  // Writes the content `h` to `fd`; false if the source does not have it.
  virtual bool fetch(const Hash128& h, int fd) = 0;
};

class RemoteSource : public Source {
 public:
  explicit RemoteSource(std::unique_ptr<remote::Backend> b) : b_(std::move(b)) {}
  std::string describe() const override { return b_->describe(); }
  remote::Manifest load(const std::string& ref, std::string& manifest_hex) override {
    const auto text = b_->get_text(remote::ref_key(ref));
    if (!text)
      throw RemoteError(fmt::format("{}: no ref '{}' (nothing pushed under that name)", describe(), ref));
    std::string hex = *text;
    while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r' || hex.back() == ' ')) hex.pop_back();
    const auto h = Hash128::parse(hex);
    if (!h) throw RemoteError(fmt::format("{}: ref '{}' does not hold a manifest hash", describe(), ref));
    const auto m = b_->get_text(remote::manifest_key(*h));
    if (!m)
      throw RemoteError(fmt::format("{}: ref '{}' names manifest {}, which is missing", describe(), ref, hex));
    if (store::hash_bytes(m->data(), m->size()) != *h)
      throw RemoteError(fmt::format("{}: manifest {} does not match its hash (damaged)", describe(), hex));
    manifest_hex = hex;
    try {
      return remote::Manifest::parse(*m);
    } catch (const RemoteError& e) {
      throw RemoteError(fmt::format("{}: {} ({})", describe(), e.what(), hex));
    }
  }
  bool fetch(const Hash128& h, int fd) override { return b_->get(remote::object_key(h), fd); }

 private:
  std::unique_ptr<remote::Backend> b_;
};

// A plain cache tree as a source: scanned (hashed) first; a content is copied
// from the file that had it.
class TreeSource : public Source {
 public:
  TreeSource(std::string dir, unsigned jobs) : dir_(std::move(dir)), jobs_(jobs) {}
  std::string describe() const override { return dir_; }
  remote::Manifest load(const std::string&, std::string& manifest_hex) override {
    root_ = open_root(dir_, "pull: source");
    tree_ = scan_tree(dir_, dir_ + "/.cachefs", jobs_, nullptr, "pull: source");
    manifest_hex = "";
    return tree_.manifest;
  }
  bool fetch(const Hash128& h, int fd) override {
    const auto it = tree_.sources.find(h.hex());
    if (it == tree_.sources.end()) return false;
    const std::string& rel = it->second.rel;
    const size_t s = rel.rfind('/');
    UniqueFd dir = open_beneath(root_->fd.get(), s == std::string::npos ? "" : rel.substr(0, s));
    UniqueFd in;
    if (dir)
      in.reset(::openat(dir.get(), (s == std::string::npos ? rel : rel.substr(s + 1)).c_str(),
                        O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!in) throw RemoteError(fmt::format("{}/{}: {}", dir_, rel, std::strerror(errno)));
    loff_t off_in = 0, off_out = 0;
    for (;;) {
      const ssize_t n = ::copy_file_range(in.get(), &off_in, fd, &off_out, 1 << 30, 0);
      if (n < 0) throw RemoteError(fmt::format("{}/{}: {}", dir_, rel, std::strerror(errno)));
      if (n == 0) break;
    }
    return true;
  }

 private:
  std::string dir_;
  unsigned jobs_;
  std::shared_ptr<Dir> root_;
  ScannedTree tree_;
};

// The directory `rel` of the cache, opened beneath the root without following
// links; the last one is kept, as entries come sorted.
class DirCache {
 public:
  explicit DirCache(int rootfd) : root_(rootfd) {}
  int get(const std::string& rel) {
    if (!fd_ || rel != rel_) {
      fd_ = open_beneath(root_, rel);
      rel_ = rel;
    }
    return fd_.get();
  }
  void forget() { fd_.reset(); }

 private:
  int root_;
  std::string rel_;
  UniqueFd fd_;
};

// Any object of the store with content `h` (whatever its mode), opened read-only.
UniqueFd any_object(const store::Store& s, const Hash128& h) {
  const std::string hex = h.hex();
  UniqueFd fan(::openat(s.objects_fd(), hex.substr(0, 2).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fan) return fan;
  DIR* d = ::fdopendir(::dup(fan.get()));
  if (d == nullptr) return UniqueFd();
  UniqueFd out;
  while (const dirent* de = ::readdir(d)) {
    const std::string_view n = de->d_name;
    if (n.size() > hex.size() && n.starts_with(hex) && n[hex.size()] == '.') {
      out.reset(::openat(fan.get(), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (out) break;
    }
  }
  ::closedir(d);
  return out;
}

bool copy_all(int in, int out, uint64_t size) {
  loff_t a = 0, b = 0;
  while (static_cast<uint64_t>(a) < size) {
    const ssize_t n = ::copy_file_range(in, &a, out, &b, static_cast<size_t>(size - static_cast<uint64_t>(a)), 0);
    if (n <= 0) return false;
  }
  return true;
}

struct Counters {
  std::atomic<uint64_t> down_n{0}, down_bytes{0}, local_n{0}, local_bytes{0};
};

}  // namespace

int cmd_pull(const Context& ctx, const RemoteArgs& a, const GetEnv& getenv) {
  namespace fs = std::filesystem;
  remote::check_ref_name(a.ref);
  std::unique_ptr<Source> source;
  std::string local;
  if (remote::local_path(a.remote, local) && !local.empty() && fs::is_directory(local) &&
      !fs::exists(fs::path(local) / "refs")) {
    source = std::make_unique<TreeSource>(local, a.jobs);
  } else {
    source = std::make_unique<RemoteSource>(remote::open_backend(a.remote, a.options, getenv));
  }
  std::error_code ec;
  fs::create_directories(a.cache_dir, ec);
  if (ec) throw UsageError::make("pull: CACHE_DIR '{}': {}", a.cache_dir, ec.message());
  const auto root = open_root(a.cache_dir, "pull: CACHE_DIR");
  const std::string store_dir = a.store.empty() ? a.cache_dir + "/.cachefs" : a.store;
  const auto st_store = store::Store::open(store_dir, true);
  const store::Store& store = *st_store;
  {
    struct stat rst {};
    ::fstat(root->fd.get(), &rst);
    if (rst.st_dev != store.dev())
      throw UsageError::make("pull: the store '{}' is not on the filesystem of CACHE_DIR '{}'",
                             store.path(), a.cache_dir);
  }
  store.clean_tmp(std::chrono::hours(24));
  const auto start = std::chrono::steady_clock::now();

  std::string manifest_hex;
  const remote::Manifest m = source->load(a.ref, manifest_hex);
  const uid_t uid = ::geteuid();
  const gid_t gid = ::getegid();

  // 1. Which files are in place already (the same content and mode at that path).
  std::vector<char> in_place(m.entries.size(), 0);
  uint64_t files = 0, dirs = 0, links = 0, bytes = 0;
  std::unordered_map<std::string, std::pair<Hash128, uint64_t>> needed;  // hex -> (hash, size)
  std::unordered_map<std::string, mode_t> first_mode;
  {
    DirCache dc(root->fd.get());
    for (size_t i = 0; i < m.entries.size(); ++i) {
      const RE& e = m.entries[i];
      if (e.type == RE::Type::kDir) { ++dirs; continue; }
      if (e.type == RE::Type::kSymlink) {
        ++links;
        const int dfd = dc.get(parent_of(e.path));
        char buf[4097];
        const ssize_t n = dfd < 0 ? -1 : ::readlinkat(dfd, name_of(e.path).c_str(), buf, sizeof buf);
        in_place[i] = n >= 0 && std::string_view(buf, static_cast<size_t>(n)) == e.target;
        continue;
      }
      ++files;
      bytes += e.size;
      const int dfd = dc.get(parent_of(e.path));
      if (dfd >= 0) {
        UniqueFd fd(::openat(dfd, name_of(e.path).c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
        struct stat st {};
        if (fd && ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) &&
            static_cast<uint64_t>(st.st_size) == e.size && (st.st_mode & 07777) == e.mode) {
          Hash128 h;
          if (const auto name = store::object_name(fd.get(), st, store.dev())) {
            if (const auto key = ObjectKey::parse(*name)) h = key->hash;
            in_place[i] = h == e.hash;
          } else if (store::hash_fd(fd.get(), e.size, h) == 0) {
            in_place[i] = h == e.hash;
          }
        }
      }
      if (!in_place[i] && e.size > 0) {
        needed.try_emplace(e.hash.hex(), e.hash, e.size);
        if ((e.mode & 06000) == 0) first_mode.try_emplace(e.hash.hex(), e.mode);
      }
    }
  }

  // 2. Every needed content into the store: there already, or downloaded,
  // checked against its hash and adopted. A failure stops the pull here,
  // before anything in CACHE_DIR changed.
  Counters c;
  std::mutex mu;
  std::string first_error;
  std::atomic<bool> failed{false};
  {
    uint64_t total = 0;
    for (const auto& [hex, hs] : needed) total += hs.second;
    Progress progress("pull", "objects", needed.size(), total);
    using Job = std::pair<Hash128, uint64_t>;
    WorkQueue<Job> queue(a.jobs, 4 * a.jobs + 16, [&](Job& job) {
      if (failed.load()) return;
      const auto& [h, size] = job;
      try {
        if (any_object(store, h)) {
          c.local_n.fetch_add(1);
          c.local_bytes.fetch_add(size);
        } else {
          UniqueFd fd(::openat(store.fd(), "tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
          if (!fd) throw RemoteError(fmt::format("{}/tmp: {}", store.path(), std::strerror(errno)));
          if (!source->fetch(h, fd.get()))
            throw RemoteError(fmt::format("{}: object {} is missing", source->describe(), h.hex()));
          struct stat st {};
          Hash128 got;
          if (::fstat(fd.get(), &st) != 0 || static_cast<uint64_t>(st.st_size) != size ||
              store::hash_fd(fd.get(), size, got) != 0 || got != h)
            throw RemoteError(fmt::format("{}: object {} does not match its hash (damaged)",
                                          source->describe(), h.hex()));
          const auto fm = first_mode.find(h.hex());
          const mode_t mode = fm == first_mode.end() ? 0644 : fm->second;
          if (::fchmod(fd.get(), mode) != 0 || ::fstat(fd.get(), &st) != 0)
            throw RemoteError(fmt::format("chmod: {}", std::strerror(errno)));
          const int err = store.adopt(fd.get(), ObjectKey::of(h, st));
          if (err != 0 && err != EEXIST)
            throw RemoteError(fmt::format("{}: adopting object {}: {}", store.path(), h.hex(), std::strerror(err)));
          c.down_n.fetch_add(1);
          c.down_bytes.fetch_add(size);
        }
      } catch (const std::exception& e) {
        std::lock_guard lock(mu);
        if (!failed.exchange(true)) first_error = e.what();
      }
      progress.add(1, size);
    });
    for (const auto& [hex, hs] : needed) queue.push(hs);
    queue.close();
  }
  if (failed)
    throw RemoteError("pull: " + first_error + "; " + a.cache_dir + " was not changed");

  // 3. The tree, in manifest order (a directory before its contents). Each name
  // is made under a temporary name and renamed into place.
  uint64_t written = 0, errors = 0;
  static std::atomic<uint64_t> counter{0};
  const std::string tmp_prefix = ".cachefs-pull." + std::to_string(::getpid()) + ".";
  // Returns 0 or an errno.
  auto place = [&](int dfd, const std::string& name, const auto& make) -> int {
    const std::string tmp = tmp_prefix + std::to_string(counter.fetch_add(1));
    if (int err = make(tmp)) return err;
    if (::renameat(dfd, tmp.c_str(), dfd, name.c_str()) != 0) {
      const int err = errno;
      ::unlinkat(dfd, tmp.c_str(), 0);
      return err;
    }
    return 0;
  };
  std::vector<std::pair<std::string, mode_t>> dir_modes;
  {
    DirCache dc(root->fd.get());
    for (size_t i = 0; i < m.entries.size(); ++i) {
      const RE& e = m.entries[i];
      if (in_place[i]) continue;
      const std::string name = name_of(e.path);
      const int dfd = dc.get(parent_of(e.path));
      auto fail = [&](int err) {
        warn(fmt::format("{}/{}: {}", a.cache_dir, e.path, std::strerror(err)));
        ++errors;
      };
      if (dfd < 0) {
        fail(errno);
        continue;
      }
      if (e.type == RE::Type::kDir) {
        struct stat st {};
        if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
          if ((st.st_mode & 07777) != e.mode) dir_modes.emplace_back(e.path, e.mode);
          continue;
        }
        // A file or link where the manifest has a directory: replace it.
        if (errno != ENOENT && ::unlinkat(dfd, name.c_str(), 0) != 0) {
          fail(errno);
          continue;
        }
        if (::mkdirat(dfd, name.c_str(), 0700) != 0) {
          fail(errno);
          continue;
        }
        dir_modes.emplace_back(e.path, e.mode);
        continue;
      }
      int perr = 0;
      if (e.type == RE::Type::kSymlink) {
        perr = place(dfd, name, [&](const std::string& tmp) {
          return ::symlinkat(e.target.c_str(), dfd, tmp.c_str()) == 0 ? 0 : errno;
        });
      } else {
        const ObjectKey key{e.hash, e.mode, uid, gid};
        const bool shareable = e.size > 0 && (e.mode & 06000) == 0;
        int err = 0;
        UniqueFd obj;
        if (shareable) {
          obj = store.open_object(key, err);
          if (!obj) {
            // The content is in the store with another mode: one more object.
            UniqueFd any = any_object(store, e.hash);
            UniqueFd copy(::openat(store.fd(), "tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
            if (any && copy && copy_all(any.get(), copy.get(), e.size) &&
                ::fchmod(copy.get(), e.mode) == 0) {
              err = store.adopt(copy.get(), key);
              obj = store.open_object(key, err);
            }
          }
        }
        if (obj) {
          const std::string rel = key.fanout() + "/" + key.name();
          perr = place(dfd, name, [&](const std::string& tmp) {
            return ::linkat(store.objects_fd(), rel.c_str(), dfd, tmp.c_str(), 0) == 0 ? 0 : errno;
          });
        } else {
          // Empty, set-id, or no object to be had: a private copy.
          UniqueFd src = e.size > 0 ? any_object(store, e.hash) : UniqueFd();
          perr = place(dfd, name, [&](const std::string& tmp) {
            UniqueFd out(::openat(dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
            if (!out) return errno;
            if (e.size > 0 && (!src || !copy_all(src.get(), out.get(), e.size))) return EIO;
            if (::fchmod(out.get(), e.mode) != 0) return errno;
            return ::linkat(AT_FDCWD, ProcFdPath(out.get()).c_str(), dfd, tmp.c_str(), AT_SYMLINK_FOLLOW) == 0 ? 0 : errno;
          });
        }
      }
      if (perr == 0) {
        ++written;
      } else {
        fail(perr);
      }
    }
  }
  // Directory modes last (a read-only directory still gets its contents).
  for (auto it = dir_modes.rbegin(); it != dir_modes.rend(); ++it) {
    if (::fchmodat(root->fd.get(), it->first.c_str(), it->second, 0) != 0) {
      warn(fmt::format("{}/{}: chmod: {}", a.cache_dir, it->first, std::strerror(errno)));
      ++errors;
    }
  }

  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uint64_t in_place_n = 0;
  for (size_t i = 0; i < m.entries.size(); ++i)
    in_place_n += in_place[i] && m.entries[i].type == RE::Type::kFile ? 1 : 0;
  Json report = Json::object()
                    .set("remote", source->describe())
                    .set("ref", a.ref)
                    .set("manifest", manifest_hex)
                    .set("cache_dir", a.cache_dir)
                    .set("files", files)
                    .set("dirs", dirs)
                    .set("symlinks", links)
                    .set("bytes", bytes)
                    .set("objects", static_cast<uint64_t>(needed.size()))
                    .set("objects_transferred", c.down_n.load())
                    .set("bytes_transferred", c.down_bytes.load())
                    .set("objects_skipped", c.local_n.load())
                    .set("bytes_skipped", c.local_bytes.load())
                    .set("files_in_place", in_place_n)
                    .set("entries_written", written)
                    .set("errors", errors)
                    .set("elapsed_seconds", secs);
  emit(ctx, report, [&] {
    std::cout << "pulled '" << a.ref << "' from " << source->describe() << " into " << a.cache_dir
              << "\n"
              << "entries        " << files << " files, " << dirs << " directories, " << links
              << " symlinks, " << human_bytes(bytes) << "\n"
              << "downloaded     " << c.down_n.load() << " objects, "
              << human_bytes(c.down_bytes.load()) << "\n"
              << "already local  " << c.local_n.load() << " objects, "
              << human_bytes(c.local_bytes.load()) << "; " << in_place_n << " files in place\n";
    char line[64];
    std::snprintf(line, sizeof line, "%.2f s", secs);
    std::cout << "elapsed        " << line << "\n";
  });
  return errors == 0 ? 0 : 1;
}

}  // namespace cachefs::tools

// cachectl import: make existing trees (a melange --cache-dir, ...) share the
// store's objects, in place. Each regular file is hashed, compared byte for byte
// with an object of the same key, and either becomes the object (adopt) or is
// swapped for it in one atomic exchange (replace). Safe to interrupt and rerun:
// a file is only ever replaced by a complete object with its very bytes, mode
// and owner, and a rerun finds the work already done.
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "tools/commands.h"
#include "tools/progress.h"
#include "common/units.h"
#include "tools/walk.h"
#include "tools/work_queue.h"

namespace cachefs::tools {

unsigned default_jobs() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

namespace {

using store::Skip;
using store::Store;

// Why a file was left as it was. The first entries mirror store::Skip.
enum Reason : size_t {
  kNotRegular,
  kEmpty,
  kHardLinked,
  kSetId,
  kXattrs,
  kOtherDevice,
  kChanged,    // changed while it was read, or replaced meanwhile
  kWriting,    // open for writing (by a build or the daemon)
  kCollision,  // an object of that key holds other bytes
  kError,      // an I/O error (warned about)
  kReasonCount,
};
constexpr std::array<const char*, kReasonCount> kReasonNames = {
    "not a regular file",  "empty",
    "hard-linked",         "set-id bits",
    "extended attributes", "other filesystem",
    "changed while read",  "open for writing",
    "hash collision",      "error"};

Reason reason_of(Skip s) {
  switch (s) {
    case Skip::kNotRegular:
      return kNotRegular;
    case Skip::kEmpty:
      return kEmpty;
    case Skip::kHardLinked:
      return kHardLinked;
    case Skip::kSetId:
      return kSetId;
    case Skip::kXattrs:
      return kXattrs;
    case Skip::kOtherDevice:
      return kOtherDevice;
    case Skip::kNone:
      break;
  }
  return kError;
}

struct Counters {
  std::atomic<uint64_t> seen{0}, deduplicated{0}, adopted{0}, already{0};
  std::atomic<uint64_t> bytes_hashed{0}, bytes_saved{0};
  std::array<std::atomic<uint64_t>, kReasonCount> skipped{};
  std::mutex mu;
  std::vector<std::string> collisions;
};

struct Task {
  std::shared_ptr<Dir> dir;
  std::string name;
  std::string display;  // the path as the user knows it
  struct stat st;
};

// Holds a read lease on a file while it is hashed and replaced: taking it fails
// while anyone has the file open for writing, and a writer opening it later
// breaks it (and waits for us, at most until we let go), so a file that changes
// under us is noticed instead of being swapped for its old bytes.
class ReadLease {
 public:
  explicit ReadLease(int fd) : fd_(fd) {
    if (::fcntl(fd_, F_SETLEASE, F_RDLCK) == 0) {
      held_ = true;
    } else {
      busy_ = errno == EAGAIN;  // other errors (a filesystem without leases): go by stat
    }
  }
  ~ReadLease() {
    if (held_) ::fcntl(fd_, F_SETLEASE, F_UNLCK);
  }
  bool busy() const { return busy_; }
  // False once a writer has started to break the lease.
  bool intact() const { return !held_ || ::fcntl(fd_, F_GETLEASE) == F_RDLCK; }

 private:
  int fd_;
  bool held_ = false, busy_ = false;
};

bool same_version(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
         a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
         a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec &&
         a.st_mode == b.st_mode && a.st_uid == b.st_uid && a.st_gid == b.st_gid;
}

class Importer {
 public:
  Importer(const Store& s, Counters& c, Progress& p) : store_(s), c_(c), progress_(p) {}

  void process(Task& t) {
    const Reason r = import_one(t);
    if (r != kReasonCount) c_.skipped[r].fetch_add(1, std::memory_order_relaxed);
    progress_.add(1, static_cast<uint64_t>(t.st.st_size));
  }

 private:
  // Returns kReasonCount when the file is in the store (now or already).
  Reason import_one(Task& t) {
    const int dirfd = t.dir->fd.get();
    constexpr int kFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    // O_NOATIME: reading a file to import it is not a use of it (see evict).
    UniqueFd fd(::openat(dirfd, t.name.c_str(), kFlags | O_NOATIME));
    if (!fd && errno == EPERM) fd.reset(::openat(dirfd, t.name.c_str(), kFlags));
    if (!fd) return errno == ENOENT || errno == ELOOP ? kChanged : error(t, "open", errno);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return error(t, "stat", errno);
    if (st.st_dev != t.st.st_dev || st.st_ino != t.st.st_ino) return kChanged;
    if (already_object(fd.get(), st)) {
      c_.already.fetch_add(1, std::memory_order_relaxed);
      return kReasonCount;
    }
    const Skip skip = store_.skip_reason(fd.get(), st);
    if (skip != Skip::kNone) return reason_of(skip);

    ReadLease lease(fd.get());
    if (lease.busy()) return kWriting;
    for (int attempt = 0; attempt < 3; ++attempt) {
      Store::Plan plan;
      int err = store_.plan(fd.get(), st, plan);
      c_.bytes_hashed.fetch_add(static_cast<uint64_t>(st.st_size), std::memory_order_relaxed);
      if (err == EEXIST) {
        c_.already.fetch_add(1, std::memory_order_relaxed);
        return kReasonCount;
      }
      if (err == EAGAIN) return kChanged;
      if (err != 0) return error(t, "read", err);
      if (plan.collision) {
        std::lock_guard lock(c_.mu);
        c_.collisions.push_back(t.display);
        return kCollision;
      }
      // Last checks before the file changes hands: nobody started writing, and
      // it is still the version that was hashed. The write lock keeps a cachefs
      // daemon that holds the file open for writing from starting a burst of
      // writes until it is done (store/object_store.h); one mid-burst holds it
      // shared, and the file is left alone.
      struct stat now {};
      if (!lease.intact()) return kWriting;
      const store::WriteLock lock(fd.get());
      if (lock.busy()) return kWriting;
      if (!lock.held()) return error(t, "flock", lock.error());
      if (::fstat(fd.get(), &now) != 0 || !same_version(st, now)) return kChanged;
      if (!plan.object) {
        err = store_.adopt(fd.get(), plan.key);
        if (err == EEXIST) {
          // Another thread or process stored that key first: share it. The failed
          // attempt touched our inode's ctime (its mark came and went), so take a
          // fresh stat; the content is the same if size and mtime are.
          if (::fstat(fd.get(), &now) != 0 || now.st_size != st.st_size ||
              now.st_mtim.tv_sec != st.st_mtim.tv_sec || now.st_mtim.tv_nsec != st.st_mtim.tv_nsec)
            return kChanged;
          st = now;
          continue;
        }
        if (err != 0) return error(t, "adopt", err);
        c_.adopted.fetch_add(1, std::memory_order_relaxed);
        return kReasonCount;
      }
      err = store_.replace_by_object(dirfd, t.name.c_str(), fd.get(), now, plan.object.get(),
                                     plan.key);
      if (err == ESTALE || err == ENOENT) return kChanged;
      if (err != 0) return error(t, "replace", err);
      c_.deduplicated.fetch_add(1, std::memory_order_relaxed);
      c_.bytes_saved.fetch_add(static_cast<uint64_t>(st.st_blocks) * 512,
                               std::memory_order_relaxed);
      return kReasonCount;
    }
    return kChanged;
  }

  // A path of an object that is in objects/ now (a mark alone is not enough: a
  // link left in tmp/ or quarantine/ also makes nlink > 1).
  bool already_object(int fd, const struct stat& st) const {
    const auto name = store::object_name(fd, st, store_.dev());
    if (!name) return false;
    const auto key = store::ObjectKey::parse(*name);
    struct stat ost {};
    const std::string rel = key->fanout() + "/" + *name;
    return ::fstatat(store_.objects_fd(), rel.c_str(), &ost, AT_SYMLINK_NOFOLLOW) == 0 &&
           ost.st_dev == st.st_dev && ost.st_ino == st.st_ino;
  }

  Reason error(const Task& t, const char* what, int err) {
    warn(fmt::format("{}: {}: {}", t.display, what, std::strerror(err)));
    return kError;
  }

  const Store& store_;
  Counters& c_;
  Progress& progress_;
};

std::string join(const std::string& dir, const std::string& rel) {
  return dir == "/" ? "/" + rel : dir + "/" + rel;
}

}  // namespace

int cmd_import(const Context& ctx, const ImportArgs& args) {
  std::vector<std::string> dirs = args.dirs;
  if (dirs.empty()) {
    for (const Branch& b : need_branches(ctx, "import without DIR")) dirs.push_back(b.dir);
  }
  // Every DIR must exist before the store is touched.
  std::vector<std::pair<std::string, std::shared_ptr<Dir>>> roots;
  for (const std::string& d : dirs) {
    auto root = open_root(d, "import: DIR");
    char buf[PATH_MAX];
    roots.emplace_back(::realpath(d.c_str(), buf) != nullptr ? std::string(buf) : d,
                       std::move(root));
  }
  const auto store = open_store(ctx, true);
  for (const auto& [path, root] : roots) {
    if (path == store->path() || path.starts_with(store->path() + "/"))
      throw UsageError::make("import: DIR '{}' lies inside the store '{}'", path, store->path());
  }
  // Work an interrupted import (or a killed daemon) left behind goes first.
  store->clean_tmp(std::chrono::hours(24));

  const auto start = std::chrono::steady_clock::now();
  Counters c;
  Json dir_report = Json::array();
  std::vector<std::pair<std::string, std::shared_ptr<Dir>>> todo;
  struct stat sst {};
  ::fstat(store->fd(), &sst);
  for (auto& [path, root] : roots) {
    struct stat st {};
    ::fstat(root->fd.get(), &st);
    const bool on = st.st_dev == store->dev();
    dir_report.push(
        Json::object().set("dir", path).set("dedup", on ? "on" : "off: other filesystem"));
    if (on) todo.emplace_back(path, root);
  }
  if (todo.empty()) {
    throw UsageError::make(
        "import: {} on another filesystem than the store '{}': nothing can be deduplicated",
        roots.size() == 1 ? "DIR '" + roots[0].first + "' is" : "every DIR is", store->path());
  }

  WalkOptions opt;
  opt.skip_dirs.insert({sst.st_dev, sst.st_ino});
  uint64_t mounts_skipped = 0, walk_errors = 0;
  opt.on_mount = [&](const std::string&) { ++mounts_skipped; };

  Progress progress("import", "files");
  if (progress.shown()) {
    // A quick count first, so the bar can say how far along it is.
    uint64_t files = 0, bytes = 0;
    WalkOptions count = opt;
    count.on_mount = nullptr;
    for (auto& [path, root] : todo) {
      walk(root, count, [&](const Entry& e) {
        ++files;
        if (S_ISREG(e.st.st_mode)) bytes += static_cast<uint64_t>(e.st.st_size);
      });
    }
    progress.set_totals(files, bytes);
  }

  Importer importer(*store, c, progress);
  const unsigned jobs = args.jobs != 0 ? args.jobs : default_jobs();
  {
    WorkQueue<Task> queue(jobs, 4 * jobs + 64, [&](Task& t) { importer.process(t); });
    for (auto& [path, root] : todo) {
      const std::string& base = path;
      opt.on_error = [&](const std::string& rel, int err) {
        ++walk_errors;
        warn(fmt::format("{}: {}", rel.empty() ? base : join(base, rel), std::strerror(err)));
      };
      walk(root, opt, [&](const Entry& e) {
        c.seen.fetch_add(1, std::memory_order_relaxed);
        if (!S_ISREG(e.st.st_mode) || e.st.st_size == 0) {
          c.skipped[S_ISREG(e.st.st_mode) ? kEmpty : kNotRegular].fetch_add(1);
          progress.add(1, 0);
          return;
        }
        queue.push(Task{e.dir, e.name, join(base, e.rel()), e.st});
      });
    }
    queue.close();
  }
  progress.finish();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const uint64_t hashed = c.bytes_hashed.load();
  const double rate = secs > 0 ? static_cast<double>(hashed) / secs : 0;

  uint64_t skipped_total = 0;
  Json skipped = Json::object();
  for (size_t r = 0; r < kReasonCount; ++r) {
    const uint64_t n = c.skipped[r].load();
    skipped_total += n;
    if (n) skipped.set(kReasonNames[r], n);
  }
  Json collisions = Json::array();
  for (const auto& p : c.collisions) collisions.push(p);
  Json report = Json::object()
                    .set("store", store->path())
                    .set("dirs", dir_report)
                    .set("files", c.seen.load())
                    .set("deduplicated", c.deduplicated.load())
                    .set("adopted", c.adopted.load())
                    .set("already", c.already.load())
                    .set("skipped", skipped_total)
                    .set("skipped_by_reason", skipped)
                    .set("collisions", collisions)
                    .set("bytes_hashed", hashed)
                    .set("bytes_saved", c.bytes_saved.load())
                    .set("elapsed_seconds", secs)
                    .set("bytes_per_second", rate)
                    .set("mount_points_skipped", mounts_skipped)
                    .set("errors", walk_errors + c.skipped[kError].load());
  emit(ctx, report, [&] {
    for (const auto& [path, root] : roots) {
      if (std::none_of(todo.begin(), todo.end(), [&](const auto& t) { return t.first == path; }))
        std::cout << path << ": dedup off: other filesystem than the store (skipped)\n";
    }
    std::cout << "store          " << store->path() << "\n"
              << "files seen     " << c.seen.load() << "\n"
              << "deduplicated   " << c.deduplicated.load() << " (linked to existing objects)\n"
              << "adopted        " << c.adopted.load() << " (new objects)\n"
              << "already shared " << c.already.load() << "\n"
              << "skipped        " << skipped_total << "\n";
    for (size_t r = 0; r < kReasonCount; ++r) {
      if (const uint64_t n = c.skipped[r].load())
        std::cout << "  " << kReasonNames[r] << ": " << n << "\n";
    }
    for (const auto& p : c.collisions)
      std::cout << "  hash collision, left as it is: " << p << "\n";
    if (mounts_skipped) std::cout << "mount points   " << mounts_skipped << " not entered\n";
    char line[160];
    std::snprintf(line, sizeof line, "%.2f s, %s/s", secs,
                  human_bytes(static_cast<uint64_t>(rate)).c_str());
    std::cout << "bytes hashed   " << human_bytes(hashed) << " (" << hashed << ")\n"
              << "bytes saved    " << human_bytes(c.bytes_saved.load()) << " ("
              << c.bytes_saved.load() << ")\n"
              << "elapsed        " << line << "\n";
  });
  return 0;
}

}  // namespace cachefs::tools

// Dedup in the daemon: the worker queue, one dedup attempt, and the other side of
// sharing — a path of a shared object given a private copy before its first
// change, so that nothing written through one path shows through another.
#include "fs/dedup.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/json.h"
#include "common/log.h"
#include "common/signals.h"
#include "fs/filesystem.h"
#include "fs/prefetch.h"

namespace cachefs {

// ---------------------------------------------------------------- the queue

Deduper::Deduper(Filesystem& fs, double delay_seconds)
    : fs_(fs),
      delay_(std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::duration<double>(delay_seconds))) {}

Deduper::~Deduper() {
  stop(std::chrono::seconds(0));
}

void Deduper::start() {
  if (worker_.joinable()) return;
  const SignalsBlocked blocked;  // the worker never takes the daemon's signals
  worker_ = std::thread([this] { run(); });
}

void Deduper::schedule(Node* n) {
  if (n->dedup_queued.exchange(true, std::memory_order_acq_rel)) return;
  fs_.nodes().ref(n);
  std::lock_guard lock(mu_);
  const bool was_empty = queue_.empty();
  const auto now = std::chrono::steady_clock::now();
  queue_.push_back(Entry{n, n->write_gen.load(std::memory_order_acquire), now + delay_, now});
  if (was_empty) cv_.notify_one();
}

void Deduper::stop(std::chrono::seconds budget) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !worker_.joinable()) return;
    stopping_ = true;
    stop_deadline_ = std::chrono::steady_clock::now() + budget;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  // Nothing runs any more: drop what is left.
  for (Entry& e : queue_) {
    e.node->dedup_queued.store(false);
    fs_.nodes().forget(e.node, 1);
  }
  queue_.clear();
}

void Deduper::finish(Entry& e) {
  // Cleared before the last look at write_gen: a write that raced the attempt
  // either sees the flag clear and queues itself, or is seen here.
  e.node->dedup_queued.store(false, std::memory_order_release);
  if (e.node->write_gen.load(std::memory_order_acquire) != e.gen && !stopping_) {
    schedule(e.node);
  }
  fs_.nodes().forget(e.node, 1);
}

void Deduper::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (queue_.empty()) {
      if (stopping_) return;
      cv_.wait(lock);
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (stopping_ && now > stop_deadline_) return;
    if (!stopping_ && now < queue_.front().due) {
      cv_.wait_until(lock, queue_.front().due);
      continue;
    }
    // The mount as a whole must be quiet too, unless the file has waited long.
    const auto quiet_at = std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(
                              last_write_ns_.load(std::memory_order_relaxed))) +
                          delay_;
    if (!stopping_ && now < quiet_at && now - queue_.front().queued < kMaxDefer) {
      cv_.wait_until(lock, std::min(quiet_at, queue_.front().queued + kMaxDefer));
      continue;
    }
    Entry e = queue_.front();
    queue_.pop_front();
    lock.unlock();
    const uint64_t gen = e.node->write_gen.load(std::memory_order_acquire);
    bool requeue = false;
    std::chrono::nanoseconds wait = delay_;
    if (gen != e.gen && !stopping_) {
      e.gen = gen;  // written since: wait until it has been quiet for a while
      requeue = true;
    } else {
      e.gen = gen;  // finish() queues it again if it is written from now on
      const Filesystem::DedupResult r = fs_.dedup_one(e.node);
      requeue = r != Filesystem::DedupResult::kDone && ++e.attempts < 8 && !stopping_;
      // Someone else is writing it (another mount, most likely, whose own dedup
      // takes it once it is quiet there): look again, but not at once.
      if (r == Filesystem::DedupResult::kBusy) {
        wait = std::max<std::chrono::nanoseconds>(delay_, kBusyBackoff);
      }
      if (requeue)
        e.gen = e.node->write_gen.load(std::memory_order_acquire);
      else
        finish(e);
    }
    lock.lock();
    if (requeue) {
      e.due = std::chrono::steady_clock::now() + wait;
      // In order of `due`: behind every entry due no later.
      auto at = queue_.end();
      while (at != queue_.begin() && std::prev(at)->due > e.due) --at;
      queue_.insert(at, e);
    }
  }
}

// ------------------------------------------------------- Filesystem's side

void Filesystem::start_dedup() {
  for (size_t b = 0; b < shares_store_.size(); ++b) {
    if (dedup_on(static_cast<BranchIndex>(b))) {
      deduper_->start();
      return;
    }
  }
}

void Filesystem::stop_dedup() {
  deduper_->stop();
}

void Filesystem::written(Node* n) {
  deduper_->note_write();
  if (n->write_gen.fetch_add(1, std::memory_order_acq_rel) == 0) {
    counters.files_written.fetch_add(1, std::memory_order_relaxed);
  }
  const auto f = n->backing();
  if (f->object || !dedup_on(f->branch)) return;
  deduper_->schedule(n);
}

uint64_t Filesystem::object_path_ino(Node* parent, BranchIndex b, std::string_view name,
                                     const struct stat& st) const {
  const uint64_t seed = static_cast<uint64_t>(st.st_ino) * 0x9e3779b97f4a7c15ULL ^
                        static_cast<uint64_t>(parent->dirs[b].ino.load(std::memory_order_relaxed)) ^
                        (static_cast<uint64_t>(st.st_dev) << 32);
  // The top bit keeps it clear of every real (and device-folded) inode number.
  return XXH3_64bits_withSeed(name.data(), name.size(), seed) | (1ULL << 63);
}

int Filesystem::begin_write(Node* n, WriteAccess& w, bool need_fd, uint64_t keep,
                            const std::function<bool()>* no_change) {
  for (;;) {
    std::shared_lock shared(io_mutex(n));
    auto f = n->backing();
    if (!f->object && !f->lower) {
      int err = 0;
      FdLease fd;
      if (need_fd) {
        fd = io_fd(n, *f, true, err);
        if (!fd) return err;
      }
      if (f->regular && shares_store_[f->branch]) {
        // The lock is held on the descriptor written through; a change of
        // attributes or names takes it on the data descriptor (read-only where
        // the inode refuses writing: a running program). An inode that cannot be
        // opened at all (mode 000, not ours) cannot be read by dedup either: the
        // change goes ahead unlocked.
        FdLease other = need_fd ? FdLease() : io_fd(n, *f, false, err);
        const FdLease& d = need_fd ? fd : other;
        std::shared_ptr<FileBacking> object;
        if (d && !d.flocked()) {
          if ((err = start_write_burst(n, *f, d, object)) != 0) return err;
        }
        if (object) {
          // Made an object, or swapped for one, by someone else since this node
          // looked: the node takes the object, and the next turn breaks the
          // sharing (a private copy under this path's name) before writing.
          other = FdLease();
          fd = FdLease();
          shared.unlock();
          std::unique_lock exclusive(io_mutex(n));
          release_write_locks(*f);
          if (n->backing() == f) n->set_backing(std::move(object));
          continue;
        }
      }
      w.fd = std::move(fd);
      w.backing = std::move(f);
      w.lock = std::move(shared);
      return 0;
    }
    shared.unlock();
    std::unique_lock exclusive(io_mutex(n));
    if (no_change != nullptr && f->object && (*no_change)()) return kNoChange;
    // Discard mode copies a lower file up (whether or not it is a shared
    // object: the lower layer is never written); passthrough breaks the share.
    if (int err = f->lower ? copy_up(n, keep) : break_shared(n, keep)) return err;
  }
}

int Filesystem::start_write_burst(Node* n, FileBacking& f, const FdLease& d,
                                  std::shared_ptr<FileBacking>& object) {
  std::lock_guard burst(f.burst_mu);
  if (d.flocked()) return 0;  // another writer started it meanwhile
  // Blocks only while a dedup (this daemon's through another node of the inode,
  // another daemon's, cachectl import's) holds LOCK_EX: a check and a link.
  while (::flock(d.get(), LOCK_SH) != 0) {
    if (errno != EINTR) return errno;
  }
  struct stat st {};
  if (::fstat(d.get(), &st) != 0) {
    const int err = errno;
    ::flock(d.get(), LOCK_UN);
    return err;
  }
  // The inode number shown stays the one shown so far when the backing changes.
  auto keep_shown_ino = [&] {
    uint64_t none = 0;
    n->fixed_ino.compare_exchange_strong(none, shown_ino(f.branch, st), std::memory_order_relaxed);
  };
  if (store::object_name(d.get(), st, store_->dev())) {
    // Adopted as a store object since this node looked it up.
    object = std::make_shared<FileBacking>(f.branch, st, true);
    object->path.install(reopen(d.get(), O_PATH | O_CLOEXEC));
    keep_shown_ino();
    ::flock(d.get(), LOCK_UN);
    return 0;
  }
  char mark[256];
  const ssize_t len = ::fgetxattr(d.get(), store::kReplacedXattr, mark, sizeof mark);
  if (len >= 0) {
    // Dedup swapped this file out of its name for an identical object. If the
    // name still holds that object, the file lives on there: this path's
    // changes go to it (through the private copy the next turn makes). If the
    // name holds this very file, the dedup that marked it died before its
    // exchange. Anything else (the name removed, or another file renamed over
    // it since): this file is unlinked, and written as POSIX says.
    ParentRef parent(nodes_, n);
    int err = 0;
    FdLease pfd = parent.get() != nullptr ? dir_fd(parent.get(), f.branch, false, err) : FdLease();
    UniqueFd at;
    if (pfd) at.reset(::openat(pfd.get(), parent.name().c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat now {};
    if (at && ::fstat(at.get(), &now) == 0) {
      if (now.st_dev == st.st_dev && now.st_ino == st.st_ino) {
        ::fremovexattr(d.get(), store::kReplacedXattr);
      } else if (store::object_name(at.get(), now, store_->dev()) ==
                 std::string(mark, static_cast<size_t>(len))) {
        object = std::make_shared<FileBacking>(f.branch, now, true);
        object->path.install(std::move(at));
        keep_shown_ino();
        ::flock(d.get(), LOCK_UN);
        return 0;
      }
    }
  }
  d.set_flocked(true);
  return 0;
}

void Filesystem::release_write_locks(FileBacking& f) {
  for (FdSlot* slot : {&f.rw, &f.ro}) {
    const FdLease l = slot->lease();
    if (l && l.flocked()) {
      ::flock(l.get(), LOCK_UN);
      l.set_flocked(false);
    }
  }
}

void Filesystem::end_write_burst(Node* n) {
  {
    const auto f = n->backing();
    if (!f->rw.flocked() && !f->ro.flocked()) return;
  }
  std::unique_lock exclusive(io_mutex(n));
  release_write_locks(*n->backing());
}

void Filesystem::kernel_released(Node* n) {
  const auto f = n->backing();
  int err = 0;
  const FdLease fd = io_fd(n, *f, false, err);
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0 || st.st_size == 0) return;
  counters.bytes_written.fetch_add(static_cast<uint64_t>(st.st_size), std::memory_order_relaxed);
  // The kernel's writes are over (RELEASE follows the handle's last one), so
  // there is no change in flight for the write access to order against.
  written(n);
}

int Filesystem::break_shared(Node* n, uint64_t keep) {
  const auto f = n->backing();
  if (!f->object) return 0;  // another writer was first
  int err = 0;
  FdLease src = io_fd(n, *f, false, err);
  if (!src) return err;
  struct stat st {};
  if (::fstat(src.get(), &st) != 0) return errno;
  ParentRef parent(nodes_, n);
  FdLease pfd = parent.get() != nullptr ? dir_fd(parent.get(), f->branch, false, err) : FdLease();
  UniqueFd copy =
      store::Store::private_copy(pfd ? pfd.get() : store_->fd(), src.get(), st, keep, err);
  if (!copy) return err;
  // The change about to be made starts a write burst on the copy: locked before
  // it has a name, so that nobody can take it for a quiet file.
  const bool lock = shares_store_[f->branch];
  while (lock && ::flock(copy.get(), LOCK_SH) != 0) {
    if (errno != EINTR) return errno;
  }
  // The copy takes this path's name; if the name went (unlinked, renamed over)
  // the copy stays nameless, for whoever still has the file open.
  bool named = false;
  if (pfd) {
    err = store_->replace(pfd.get(), parent.name().c_str(), f->dev, f->ino, copy.get(),
                          &dir_mutex(parent.get()));
    if (err == 0)
      named = true;
    else if (err != ESTALE && err != ENOENT)
      return err;
  }
  struct stat cst {};
  if (::fstat(copy.get(), &cst) != 0) return errno;
  auto nb = std::make_shared<FileBacking>(f->branch, cst, false);
  if (!named) {
    nb->path.install(reopen(copy.get(), O_PATH | O_CLOEXEC));
    nb->path.pin();
  }
  if (const FdLease rw = nb->rw.install(std::move(copy)); lock) rw.set_flocked(true);
  if (!named) nb->rw.pin();
  n->set_backing(std::move(nb));
  counters.cow_breaks.fetch_add(1, std::memory_order_relaxed);
  counters.cow_bytes.fetch_add(static_cast<uint64_t>(std::min<int64_t>(
                                   st.st_size, static_cast<int64_t>(std::min<uint64_t>(
                                                   keep, static_cast<uint64_t>(INT64_MAX))))),
                               std::memory_order_relaxed);
  enforce_fd_budget();
  return 0;
}

Filesystem::DedupResult Filesystem::dedup_one(Node* n) {
  using R = DedupResult;
  end_write_burst(n);  // quiet now: this daemon's own lock must not keep the file
  const auto f = n->backing();
  if (f->object || !dedup_on(f->branch)) return R::kDone;
  const uint64_t gen = n->write_gen.load(std::memory_order_acquire);
  int err = 0;
  FdLease fd = io_fd(n, *f, false, err);
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0) return R::kDone;  // gone meanwhile
  if (store_->skip_reason(fd.get(), st) != store::Skip::kNone) {
    counters.dedup_skipped.fetch_add(1, std::memory_order_relaxed);
    return R::kDone;
  }
  store::Store::Plan plan;
  err = store_->plan(fd.get(), st, plan);
  if (err == EAGAIN) {
    counters.dedup_retries.fetch_add(1, std::memory_order_relaxed);
    return R::kRetry;
  }
  if (err) {
    if (err != EEXIST) spdlog::debug("dedup: {}: {}", n->name, std::strerror(err));
    return R::kDone;
  }
  if (plan.collision) {
    counters.dedup_collisions.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("dedup: '{}' hashes like object {} but its bytes differ: kept apart", n->name,
               plan.key.name());
    return R::kDone;
  }

  // Commit, with writers held off: this daemon's through this node by its I/O
  // stripe, everyone else's (another daemon, or this one through another node
  // of the inode) by the file's write lock, which a writer mid-burst holds
  // shared. Only if nothing changed since the hash.
  std::unique_lock exclusive(io_mutex(n));
  if (n->backing() != f || n->write_gen.load(std::memory_order_acquire) != gen) {
    counters.dedup_retries.fetch_add(1, std::memory_order_relaxed);
    return R::kRetry;
  }
  release_write_locks(*f);  // a burst of this node's that changed nothing (none, normally)
  const store::WriteLock lock(fd.get());
  if (!lock.held()) {
    if (lock.busy()) {
      counters.dedup_busy.fetch_add(1, std::memory_order_relaxed);
      return R::kBusy;
    }
    spdlog::debug("dedup: cannot lock '{}': {}", n->name, std::strerror(lock.error()));
    return R::kDone;
  }
  struct stat now {};
  if (::fstat(fd.get(), &now) != 0 || now.st_size != st.st_size ||
      now.st_mtim.tv_nsec != st.st_mtim.tv_nsec || now.st_mtim.tv_sec != st.st_mtim.tv_sec ||
      now.st_ctim.tv_nsec != st.st_ctim.tv_nsec || now.st_ctim.tv_sec != st.st_ctim.tv_sec ||
      now.st_nlink != 1) {
    counters.dedup_retries.fetch_add(1, std::memory_order_relaxed);
    return R::kRetry;
  }
  const uint64_t fixed = n->fixed_ino.load(std::memory_order_relaxed);
  const uint64_t shown = fixed != 0 ? fixed : shown_ino(f->branch, st);
  std::shared_ptr<FileBacking> nb;
  if (plan.object) {
    ParentRef parent(nodes_, n);
    FdLease pfd = parent.get() != nullptr ? dir_fd(parent.get(), f->branch, false, err) : FdLease();
    if (!pfd) return R::kDone;
    // Marks the file it displaces, for whoever still writes it through another
    // descriptor once the lock is gone (begin_write).
    err = store_->replace_by_object(pfd.get(), parent.name().c_str(), fd.get(), now,
                                    plan.object.get(), plan.key, &dir_mutex(parent.get()));
    if (err) return R::kDone;  // renamed or replaced meanwhile: that name is not this file's
    struct stat ost {};
    ::fstat(plan.object.get(), &ost);
    nb = std::make_shared<FileBacking>(f->branch, ost, true);
    nb->ro.install(std::move(plan.object));
    n->own_mtime_ns.store(st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec,
                          std::memory_order_relaxed);
    counters.dedup_linked.fetch_add(1, std::memory_order_relaxed);
    counters.dedup_bytes_saved.fetch_add(static_cast<uint64_t>(st.st_size),
                                         std::memory_order_relaxed);
  } else {
    err = store_->adopt(fd.get(), plan.key);
    if (err == EEXIST) return R::kRetry;  // stored by another process just now: share it
    if (err) {
      spdlog::debug("dedup: cannot store '{}': {}", n->name, std::strerror(err));
      return R::kDone;
    }
    struct stat ost {};
    ::fstat(fd.get(), &ost);
    nb = std::make_shared<FileBacking>(f->branch, ost, true);
    counters.dedup_adopted.fetch_add(1, std::memory_order_relaxed);
  }
  n->fixed_ino.store(shown, std::memory_order_relaxed);
  n->set_backing(std::move(nb));
  return R::kDone;
}

std::string Filesystem::stats_json() {
  auto c = [](const std::atomic<uint64_t>& v) { return v.load(std::memory_order_relaxed); };
  Json branches = Json::array();
  for (size_t b = 0; b < branch_count(); ++b) {
    Json branch = Json::object();
    branch.set("directory", routes_.branch_dir(static_cast<BranchIndex>(b)))
        .set("dedup", dedup_on(static_cast<BranchIndex>(b)));
    if (!dedup_on(static_cast<BranchIndex>(b))) {
      const bool same_fs =
          nodes_.root()->dirs[b].dev.load(std::memory_order_relaxed) == store_->dev();
      branch.set("dedup_off_reason", !same_fs ? "other filesystem than the store"
                                     : cfg_.write_mode != WriteMode::kPassthrough ? "write mode"
                                                                                  : "--dedup off");
    }
    branches.push(std::move(branch));
  }
  Json counts = Json::object();
  counts.set("files_read", c(counters.files_read))
      .set("files_written", c(counters.files_written))
      .set("bytes_read", c(counters.bytes_read))
      .set("bytes_written", c(counters.bytes_written))
      .set("kernel_written", c(counters.kernel_written))
      .set("dedup_linked", c(counters.dedup_linked))
      .set("dedup_adopted", c(counters.dedup_adopted))
      .set("dedup_bytes_saved", c(counters.dedup_bytes_saved))
      .set("dedup_skipped", c(counters.dedup_skipped))
      .set("dedup_collisions", c(counters.dedup_collisions))
      .set("dedup_retries", c(counters.dedup_retries))
      .set("dedup_busy", c(counters.dedup_busy))
      .set("cow_breaks", c(counters.cow_breaks))
      .set("cow_bytes", c(counters.cow_bytes))
      .set("listener", counters.listener.json())
      .set("uring_served", c(counters.uring_served))
      .set("watch_events", c(counters.watch_events))
      .set("watch_invalidations", c(counters.watch_invalidations))
      .set("watch_unmarked", c(counters.watch_unmarked))
      .set("watch_marks", c(counters.watch_marks))
      .set("prefetch_dirs", prefetcher_->dirs_read())
      .set("prefetch_files", prefetcher_->files_read())
      .set("open_files", FdSlot::open_count());
  Json doc = Json::object();
  doc.set("pid", static_cast<int64_t>(::getpid()))
      .set("write_mode", std::string(to_string(cfg_.write_mode)))
      .set("store", store_->path())
      .set("watch_backing", watching())
      .set("branches", std::move(branches))
      .set("counters", std::move(counts));
  if (discard()) doc.set("discard", discard_json());
  return doc.dump();
}

}  // namespace cachefs

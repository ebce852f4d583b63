// Dedup in the daemon: the worker queue, one dedup attempt, and the other side of
// sharing — a path of a shared object given a private copy before its first
// change, so that nothing written through one path shows through another.
#include "fs/dedup.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/json.h"
#include "common/log.h"
#include "fs/filesystem.h"

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
  if (!worker_.joinable()) worker_ = std::thread([this] { run(); });
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
    if (gen != e.gen && !stopping_) {
      e.gen = gen;  // written since: wait until it has been quiet for a while
      requeue = true;
    } else {
      e.gen = gen;  // finish() queues it again if it is written from now on
      requeue = !fs_.dedup_one(e.node) && ++e.attempts < 8 && !stopping_;
      if (requeue)
        e.gen = e.node->write_gen.load(std::memory_order_acquire);
      else
        finish(e);
    }
    lock.lock();
    if (requeue) {
      e.due = std::chrono::steady_clock::now() + delay_;
      queue_.push_back(e);
    }
  }
}

// ------------------------------------------------------- Filesystem's side

void Filesystem::start_dedup() {
  for (bool on : dedup_on_) {
    if (on) {
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
  if (f->object || !dedup_on_[f->branch]) return;
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
      if (need_fd) {
        int err = 0;
        w.fd = io_fd(n, *f, true, err);
        if (!w.fd) return err;
      }
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
  // The copy takes this path's name; if the name went (unlinked, renamed over)
  // the copy stays nameless, for whoever still has the file open.
  bool named = false;
  if (pfd) {
    err = store_->replace(pfd.get(), parent.name().c_str(), f->dev, f->ino, copy.get());
    if (err == 0)
      named = true;
    else if (err != ESTALE && err != ENOENT)
      return err;
  }
  struct stat cst {};
  if (::fstat(copy.get(), &cst) != 0) return errno;
  auto nb = std::make_shared<FileBacking>(f->branch, cst, false);
  if (!named) {
    char proc[64];
    std::snprintf(proc, sizeof proc, "/proc/self/fd/%d", copy.get());
    nb->path.install(UniqueFd(::open(proc, O_PATH | O_CLOEXEC)));
    nb->path.pin();
  }
  nb->rw.install(std::move(copy));
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

bool Filesystem::dedup_one(Node* n) {
  const auto f = n->backing();
  if (f->object || !dedup_on_[f->branch]) return true;
  const uint64_t gen = n->write_gen.load(std::memory_order_acquire);
  int err = 0;
  FdLease fd = io_fd(n, *f, false, err);
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0) return true;  // gone meanwhile
  if (store_->skip_reason(fd.get(), st) != store::Skip::kNone) {
    counters.dedup_skipped.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  store::Store::Plan plan;
  err = store_->plan(fd.get(), st, plan);
  if (err == EAGAIN) {
    counters.dedup_retries.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (err) {
    if (err != EEXIST) spdlog::debug("dedup: {}: {}", n->name, std::strerror(err));
    return true;
  }
  if (plan.collision) {
    counters.dedup_collisions.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("dedup: '{}' hashes like object {} but its bytes differ: kept apart", n->name,
               plan.key.name());
    return true;
  }

  // Commit, with writers held off: only if nothing changed since the hash.
  std::unique_lock exclusive(io_mutex(n));
  struct stat now {};
  if (n->backing() != f || n->write_gen.load(std::memory_order_acquire) != gen ||
      ::fstat(fd.get(), &now) != 0 || now.st_size != st.st_size ||
      now.st_mtim.tv_nsec != st.st_mtim.tv_nsec || now.st_mtim.tv_sec != st.st_mtim.tv_sec ||
      now.st_ctim.tv_nsec != st.st_ctim.tv_nsec || now.st_ctim.tv_sec != st.st_ctim.tv_sec ||
      now.st_nlink != 1) {
    counters.dedup_retries.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const uint64_t fixed = n->fixed_ino.load(std::memory_order_relaxed);
  const uint64_t shown = fixed != 0 ? fixed : shown_ino(f->branch, st);
  std::shared_ptr<FileBacking> nb;
  if (plan.object) {
    ParentRef parent(nodes_, n);
    FdLease pfd = parent.get() != nullptr ? dir_fd(parent.get(), f->branch, false, err) : FdLease();
    if (!pfd) return true;
    err = store_->replace(pfd.get(), parent.name().c_str(), f->dev, f->ino, plan.object.get());
    if (err) return true;  // renamed or replaced meanwhile: that name is not this file's
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
    if (err == EEXIST) return false;  // stored by another process just now: share it
    if (err) {
      spdlog::debug("dedup: cannot store '{}': {}", n->name, std::strerror(err));
      return true;
    }
    struct stat ost {};
    ::fstat(fd.get(), &ost);
    nb = std::make_shared<FileBacking>(f->branch, ost, true);
    counters.dedup_adopted.fetch_add(1, std::memory_order_relaxed);
  }
  n->fixed_ino.store(shown, std::memory_order_relaxed);
  n->set_backing(std::move(nb));
  return true;
}

std::string Filesystem::stats_json() {
  auto c = [](const std::atomic<uint64_t>& v) { return v.load(std::memory_order_relaxed); };
  Json branches = Json::array();
  for (size_t b = 0; b < branch_count(); ++b) {
    Json branch = Json::object();
    branch.set("directory", routes_.branch_dir(static_cast<BranchIndex>(b)))
        .set("dedup", bool(dedup_on_[b]));
    if (!dedup_on_[b]) {
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
      .set("dedup_linked", c(counters.dedup_linked))
      .set("dedup_adopted", c(counters.dedup_adopted))
      .set("dedup_bytes_saved", c(counters.dedup_bytes_saved))
      .set("dedup_skipped", c(counters.dedup_skipped))
      .set("dedup_collisions", c(counters.dedup_collisions))
      .set("dedup_retries", c(counters.dedup_retries))
      .set("cow_breaks", c(counters.cow_breaks))
      .set("cow_bytes", c(counters.cow_bytes))
      .set("open_files", FdSlot::open_count());
  Json doc = Json::object();
  doc.set("pid", static_cast<int64_t>(::getpid()))
      .set("write_mode", std::string(to_string(cfg_.write_mode)))
      .set("store", store_->path())
      .set("branches", std::move(branches))
      .set("counters", std::move(counts));
  if (discard()) doc.set("discard", discard_json());
  return doc.dump();
}

}  // namespace cachefs

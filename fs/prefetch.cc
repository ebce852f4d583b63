#include "fs/prefetch.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/signals.h"

namespace cachefs {

Prefetcher::Prefetcher(unsigned threads, uint64_t max_file_bytes)
    : threads_(threads), max_file_bytes_(max_file_bytes) {}

Prefetcher::~Prefetcher() {
  stop();
}

void Prefetcher::start() {
  const SignalsBlocked blocked;
  for (unsigned i = 0; i < threads_; ++i) workers_.emplace_back([this] { run(); });
}

void Prefetcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void Prefetcher::Job::add(bool is_dir, std::string_view name) {
  auto& list = is_dir ? dirs : files;
  if (list.size() < kMaxNames) list.emplace_back(name);
}

void Prefetcher::submit(Job job) {
  if (!enabled() || (job.dirs.empty() && job.files.empty())) return;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    // Full: the oldest job is the one the reader has most likely passed.
    if (queue_.size() >= kMaxQueued) queue_.pop_front();
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
}

namespace {

// Halves both counts once the window is full, so that the ratio follows what the
// mount is doing now.
constexpr uint64_t kWindow = 256;

}  // namespace

void Prefetcher::note_listed(size_t files) {
  if (listed_.fetch_add(files, std::memory_order_relaxed) + files > kWindow) {
    listed_.store(listed_.load(std::memory_order_relaxed) / 2, std::memory_order_relaxed);
    read_.store(read_.load(std::memory_order_relaxed) / 2, std::memory_order_relaxed);
  }
}

void Prefetcher::note_first_read() {
  read_.fetch_add(1, std::memory_order_relaxed);
}

bool Prefetcher::want_data() const {
  const uint64_t read = read_.load(std::memory_order_relaxed);
  return read > 0 && read * 2 >= listed_.load(std::memory_order_relaxed);
}

void Prefetcher::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    // The listed directory's own files first: the reader is about to open them
    // (unless a worker did when it read the directory ahead).
    if (want_data() && first_to_read_files(job.dev, job.ino)) {
      for (const auto& name : job.files) read_file(job.dir.get(), name);
    }
    for (const auto& name : job.dirs) {
      read_dir(job.dir.get(), name);
      if (stopping_) return;
    }
  }
}

// Reads the subdirectory's entries and their inodes, and the data of its small
// files when data is wanted.
void Prefetcher::read_dir(int parent, const std::string& name) {
  const int fd = ::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  DIR* dp = ::fdopendir(fd);
  if (dp == nullptr) {
    ::close(fd);
    return;
  }
  dirs_read_.fetch_add(1, std::memory_order_relaxed);
  struct stat self {};
  ::fstat(fd, &self);  // on failure 0, 0: its files are read
  std::vector<std::string> files;
  size_t seen = 0;
  while (dirent* de = ::readdir(dp)) {
    if (de->d_name[0] == '.' &&
        (de->d_name[1] == 0 || (de->d_name[1] == '.' && de->d_name[2] == 0)))
      continue;
    // A huge directory: the first entries are enough to be ahead of a reader,
    // and stop() must not wait for a worker stat()ing a million of them.
    if (++seen > kMaxNames || stopping_) break;
    struct stat st {};
    if (::fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) <= max_file_bytes_) {
      files.emplace_back(de->d_name);
    }
  }
  if (!files.empty() && want_data() && first_to_read_files(self.st_dev, self.st_ino)) {
    for (const auto& f : files) read_file(fd, f);
  }
  ::closedir(dp);
}

// A mark is taken once: a third job for the same directory (a later listing,
// its files since dropped from the page cache, say) reads them again.
bool Prefetcher::first_to_read_files(dev_t dev, ino_t ino) {
  if (dev == 0 && ino == 0) return true;
  std::lock_guard lock(mu_);
  if (files_done_.erase({dev, ino}) > 0) return false;
  files_done_.emplace(dev, ino);
  files_done_order_.emplace_back(dev, ino);
  if (files_done_order_.size() > kMaxDone) {
    files_done_.erase(files_done_order_.front());
    files_done_order_.pop_front();
  }
  return true;
}

// Starts reading a small regular file's data into the page cache. Reached by
// O_PATH first: opening a device or FIFO for reading could block or act.
void Prefetcher::read_file(int parent, const std::string& name) {
  UniqueFd p(::openat(parent, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!p) return;
  struct stat st {};
  if (::fstat(p.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0 ||
      static_cast<uint64_t>(st.st_size) > max_file_bytes_) {
    return;
  }
  UniqueFd fd = reopen(p.get(), O_RDONLY | O_CLOEXEC);
  if (!fd) return;
  if (::readahead(fd.get(), 0, static_cast<size_t>(st.st_size)) == 0) {
    files_read_.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace cachefs

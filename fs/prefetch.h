// Reading ahead across a tree. A build (or a walk) that meets a cache cold reads
// it one directory and one small file at a time, each a disk read the next one
// waits for. When the daemon lists a directory afresh it hands the entries to a
// few background threads, which bring in, one level ahead of the reader, what
// it will most likely ask for next: the blocks and inodes of each subdirectory,
// and the data of small files (only while the mount is being read, not walked:
// see Prefetcher::want_data). The reader's requests then find the disk work
// done, and the disk sees many reads at once instead of one.
//
// Nothing here answers a request or holds a node: a job owns a descriptor of the
// directory it came from and names in it (one component, never followed if a
// symlink), so it can run late or be dropped without harm.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/unique_fd.h"

namespace cachefs {

class Prefetcher {
 public:
  struct Job {
    UniqueFd dir;   // a readable descriptor of the listed directory
    dev_t dev = 0;  // and its inode (0, 0: unknown)
    ino_t ino = 0;
    std::vector<std::string> dirs;   // subdirectories to read ahead
    std::vector<std::string> files;  // regular files whose data may be read ahead
    // Adds a name unless its list is full: a huge directory is read ahead only
    // in part, so that a queued job stays small.
    void add(bool is_dir, std::string_view name);
  };
  // Names per list in a job, and entries a worker looks at in a subdirectory.
  static constexpr size_t kMaxNames = 4096;

  // `threads` background threads (0: prefetching off); files of at most
  // `max_file_bytes` have their data read ahead.
  Prefetcher(unsigned threads, uint64_t max_file_bytes);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  bool enabled() const { return threads_ > 0; }
  void start();
  void stop();  // drops what is queued and joins the threads
  // Queues `job`; when the queue is full the oldest job is dropped (prefetching
  // is a hint, never a debt).
  void submit(Job job);

  // Whether data is read ahead at all: only while files are being read, at
  // least one for every two listed (counts decay, so this follows what the mount
  // does now). A walk (find, ls -R) reads no data, and reading ahead for it
  // would cost it the disk time it saves.
  void note_listed(size_t files);
  void note_first_read();
  bool want_data() const;

  uint64_t dirs_read() const { return dirs_read_.load(std::memory_order_relaxed); }
  uint64_t files_read() const { return files_read_.load(std::memory_order_relaxed); }

 private:
  void run();
  void read_dir(int parent, const std::string& name);
  void read_file(int parent, const std::string& name);
  // Two jobs meet each directory: a worker reads it ahead as a subdirectory,
  // and the reader's listing of it comes as a job of its own. Whichever comes
  // first reads its files and leaves a mark; the second finds the mark, takes
  // it away and reads nothing (a cold read-all read every file twice).
  bool first_to_read_files(dev_t dev, ino_t ino);

  const unsigned threads_;
  const uint64_t max_file_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::atomic<bool> stopping_{false};  // set under mu_; also read between jobs
  std::vector<std::thread> workers_;
  // Decaying counts of files listed and of files read for the first time.
  std::atomic<uint64_t> listed_{0};
  std::atomic<uint64_t> read_{0};
  std::atomic<uint64_t> dirs_read_{0};
  std::atomic<uint64_t> files_read_{0};
  static constexpr size_t kMaxQueued = 64;  // each holds a descriptor
  // Under mu_: the marks of first_to_read_files, oldest first in the deque.
  std::set<std::pair<dev_t, ino_t>> files_done_;
  std::deque<std::pair<dev_t, ino_t>> files_done_order_;
  static constexpr size_t kMaxDone = 4096;  // far more than the reader is behind
};

}  // namespace cachefs

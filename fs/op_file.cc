// File data. The kernel is asked (through no_open) to skip OPEN/RELEASE entirely:
// every read and write is served from the node's own descriptors, and the page
// cache survives between opens. That removes two round trips per open, which is
// most of the cost of reading many small cached files.
// Only a CREATE opens a handle, and a tar-style one may be given to the kernel
// to write itself (FUSE passthrough; create() says when): RELEASE then ends it.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/filesystem.h"
#include "fs/ops.h"
#include "fs/prefetch.h"
#include "fs/uring_loop.h"

namespace cachefs::ops {
namespace {

// A data descriptor of a non-directory, held for the whole operation (with the
// backing it belongs to); empty, and the request answered, on failure.
struct Data {
  std::shared_ptr<FileBacking> backing;
  FdLease fd;
  explicit operator bool() const { return bool(fd); }
};

// Write access to a non-directory (a shared object's path gets its private copy
// first); false, and the request answered, on failure.
bool write_access(fuse_req_t req, fuse_ino_t ino, WriteAccess& w) {
  Filesystem& fs = fs_of(req);
  Node* n = fs.nodes().node(ino);
  if (n->is_dir()) {
    fuse_reply_err(req, EISDIR);
    return false;
  }
  if (int err = fs.begin_write(n, w, true)) {
    fuse_reply_err(req, err);
    return false;
  }
  return true;
}

Data data_fd(fuse_req_t req, fuse_ino_t ino) {
  Filesystem& fs = fs_of(req);
  Node* n = fs.nodes().node(ino);
  if (n->is_dir()) {
    fuse_reply_err(req, EISDIR);
    return {};
  }
  Data d{n->backing(), {}};
  int err = 0;
  d.fd = fs.io_fd(n, *d.backing, false, err);
  if (!d.fd) fuse_reply_err(req, err);
  return d;
}

}  // namespace

void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = fs_of(req);
  if (fs.no_open) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  const Data d = data_fd(req, ino);
  if (!d) return;
  fi->fh = 0;
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

namespace {

// A descriptor the kernel may write the new file `fd` (of branch `b`) through,
// registered: its backing id, or -1 (then the daemon writes it, as any other).
int passthrough_backing(Filesystem& fs, int fd, BranchIndex b) {
  if (!fs.shares_store(b)) return fs.kernel_io().backing_open(fd);  // nobody deduplicates here
  // Dedup, this daemon's or another process's, must leave the file alone while
  // the kernel writes it: a descriptor of its own, holding the writer's LOCK_SH
  // (store/object_store.h) for as long as the kernel holds the file.
  const UniqueFd own = reopen(fd, O_RDWR | O_CLOEXEC);
  if (!own) return -1;
  while (::flock(own.get(), LOCK_SH) != 0) {
    if (errno != EINTR) return -1;
  }
  // Dedup never takes an empty file, so a new one cannot have been shared before
  // the lock; checked anyway, as begin_write does.
  struct stat st {};
  if (::fstat(own.get(), &st) != 0 || st.st_size != 0 || st.st_nlink != 1) return -1;
  return fs.kernel_io().backing_open(own.get());
}

}  // namespace

void create(fuse_req_t req, fuse_ino_t parent_ino, const char* name, mode_t mode,
            fuse_file_info* fi) {
  Filesystem& fs = fs_of(req);
  Node* parent = fs.nodes().node(parent_ino);
  BranchIndex b;
  FdLease pfd;
  bool over_whiteout = false;
  if (int err = fs.prepare_create(parent, name, false, b, pfd, &over_whiteout)) {
    fuse_reply_err(req, err);
    return;
  }
  // The node's descriptor is shared by every opener: never O_APPEND (pwrite would
  // ignore offsets) nor O_SYNC; the kernel positions appends itself.
  const int flags = O_CREAT | O_RDWR | O_NOFOLLOW | O_CLOEXEC | (fi->flags & (O_EXCL | O_TRUNC));
  // The kernel writes the file itself (FUSE passthrough: no WRITE requests, the
  // most numerous of an untar) when the call is how tar, cp and install make
  // their files: root, write-only, O_EXCL (so the file is new, made by this
  // call: never one that was there, which may be a shared object).
  // * The kernel (6.18) fails any other open of the inode with EIO while such a
  //   handle is open; with no_open we cannot give those opens passthrough too.
  //   A write-only new file is one nobody else has a reason to open before it
  //   is complete; a lock file or a temporary file reopened by name (O_RDWR,
  //   or without O_EXCL) is never given passthrough.
  // * Root only: the kernel leaves clearing set-id bits on write to the daemon
  //   (kill-priv v2), which never sees these writes; a writer with CAP_FSETID
  //   keeps the bits anyway. Left open: such a handle passed to a process
  //   without CAP_FSETID, after set-id bits were added to the open file.
  const bool try_passthrough = fs.kernel_io().passthrough() && fuse_req_ctx(req)->uid == 0 &&
                               (fi->flags & O_ACCMODE) == O_WRONLY && (fi->flags & O_EXCL);
  UniqueFd fd(fs.changing(parent, [&] { return ::openat(pfd.get(), name, flags, mode & 07777); }));
  if (!fd) {
    const int err = errno;
    if (over_whiteout) Filesystem::restore_whiteout(pfd.get(), name);
    fuse_reply_err(req, err);
    return;
  }
  const int backing = try_passthrough ? passthrough_backing(fs, fd.get(), b) : -1;
  fuse_entry_param e;
  if (int err = fs.finish_create(req, parent, pfd.get(), name, b, std::move(fd), e)) {
    if (backing >= 0) fs.kernel_io().backing_close(backing);
    fuse_reply_err(req, err);
    return;
  }
  if (backing >= 0) {
    fi->fh = static_cast<uint64_t>(backing) + 1;  // release() lets the id go
    // The kernel refuses a passthrough handle with any other flag than direct
    // I/O, which would override passthrough.
    fi->keep_cache = 0;
    fi->direct_io = 0;
    // Counted before the reply: the kernel may write as soon as it has it.
    Node* n = fs.nodes().node(e.ino);
    n->kernel_writers.fetch_add(1, std::memory_order_relaxed);
    const KernelIo::PassthroughReply reply(backing);
    fuse_reply_create(req, &e, fi);
    if (reply.sent()) {
      fs.counters.kernel_written.fetch_add(1, std::memory_order_relaxed);
    } else {
      n->kernel_writers.fetch_sub(1, std::memory_order_relaxed);
      fs.kernel_io().backing_close(backing);  // not delivered (interrupted): no RELEASE comes
    }
    return;
  }
  fi->fh = 0;
  fi->keep_cache = 1;
  // The creator's handle does direct I/O (write-through mode, where the kernel
  // allows shared mappings of it): each write() is one WRITE. Through the page
  // cache a write that starts inside a page the cache does not hold whole (every
  // write after the first of a file written in chunks that are not page
  // multiples, as tar's are) is split in two WRITEs, and the first write of the
  // file costs a GETXATTR of security.capability, which the direct path does
  // not ask. Reading the file back costs the same either way: the page cache
  // would not hold its partial pages. Later opens (no OPEN at all) use the
  // page cache as usual.
  fi->direct_io = fs.kernel_io().direct_io_mmap() && !fs.writeback ? 1 : 0;
  fuse_reply_create(req, &e, fi);
}

void read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  const Data d = data_fd(req, ino);
  if (!d) return;
  const int fd = d.fd.get();
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = fd;
  buf.buf[0].pos = off;
  Filesystem& fs = fs_of(req);
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > off) {
    fs.counters.bytes_read.fetch_add(std::min<uint64_t>(size, static_cast<uint64_t>(st.st_size - off)),
                                     std::memory_order_relaxed);
  }
  Node* n = fs.nodes().node(ino);
  if (!n->read_counted.load(std::memory_order_relaxed) && !n->read_counted.exchange(true)) {
    fs.counters.files_read.fetch_add(1, std::memory_order_relaxed);
    fs.prefetcher().note_first_read();
  }
  // Served from an io_uring queue: read straight into the buffer the kernel
  // takes the reply from. Otherwise spliced through a pipe into /dev/fuse.
  if (const std::span<unsigned char> to = UringLoop::reply_buffer(); to.size() >= size) {
    const ssize_t got = ::pread(fd, to.data(), size, off);
    if (got < 0) {
      fuse_reply_err(req, errno);
    } else {
      fuse_reply_buf(req, reinterpret_cast<const char*>(to.data()), static_cast<size_t>(got));
    }
    return;
  }
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off, fuse_file_info* fi) {
  WriteAccess w;
  if (!write_access(req, ino, w)) return;
  Filesystem& fs = fs_of(req);
  const int fd = w.fd.get();
  fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  out.buf[0].fd = fd;
  out.buf[0].pos = off;
  const ssize_t res = fuse_buf_copy(&out, in, fuse_buf_copy_flags{});
  fs.written(fs.nodes().node(ino));
  if (res < 0) {
    fuse_reply_err(req, static_cast<int>(-res));
    return;
  }
  fs.counters.bytes_written.fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
  // A writer without CAP_FSETID: set-id bits go, as a local filesystem's write
  // would clear them (the daemon's own write, as root, kept them).
  if (KernelIo::kill_suidgid()) {
    if (const int err = KernelIo::kill_suidgid(fd)) {
      fuse_reply_err(req, err);
      return;
    }
  }
  if ((fi->flags & O_DSYNC) && ::fdatasync(fd) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_write(req, static_cast<size_t>(res));
}

void flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  // Writes reach the backing file synchronously, and the kernel has written back
  // the file's dirty pages before it sends this; nothing is left to do.
  //
  // With the kernel's write-back cache it must still be answered, never declined
  // with ENOSYS: once FLUSH is declined, a close() whose write-back failed because
  // the daemon died returns 0 (seen on 6.18) and a build believes data is on disk
  // that never reached it. A FLUSH that cannot be delivered makes close() fail.
  //
  // Without it every write() is a WRITE answered before the call returns, so
  // close() has nothing left to report and the request is pure cost: one round
  // trip per close, the only one a warm read of a cached file makes. Declined
  // once, the kernel never sends it again.
  fuse_reply_err(req, fs_of(req).writeback ? 0 : ENOSYS);
}

void release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (fi->fh != 0) {  // a passthrough handle (create)
    Filesystem& fs = fs_of(req);
    fs.kernel_io().backing_close(static_cast<int>(fi->fh - 1));
    Node* n = fs.nodes().node(ino);
    n->kernel_writers.fetch_sub(1, std::memory_order_relaxed);
    fs.kernel_released(n);
  }
  fuse_reply_err(req, 0);
}

void fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  const Data d = data_fd(req, ino);
  if (!d) return;
  const int fd = d.fd.get();
  fuse_reply_err(req, (datasync ? ::fdatasync(fd) : ::fsync(fd)) == 0 ? 0 : errno);
}

void fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
               fuse_file_info*) {
  WriteAccess w;
  if (!write_access(req, ino, w)) return;
  const int err = ::fallocate(w.fd.get(), mode, offset, length) == 0 ? 0 : errno;
  fs_of(req).written(fs_of(req).nodes().node(ino));
  fuse_reply_err(req, err);
}

void lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*) {
  const Data d = data_fd(req, ino);
  if (!d) return;
  const int fd = d.fd.get();
  // Only SEEK_DATA/SEEK_HOLE reach us; the shared offset is never used for I/O.
  const off_t res = ::lseek(fd, off, whence);
  if (res < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_lseek(req, res);
}

void copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info*,
                     fuse_ino_t ino_out, off_t off_out, fuse_file_info*, size_t len, int flags) {
  const Data in = data_fd(req, ino_in);
  if (!in) return;
  WriteAccess out;
  if (!write_access(req, ino_out, out)) return;
  const ssize_t res = ::copy_file_range(in.fd.get(), &off_in, out.fd.get(), &off_out, len,
                                        static_cast<unsigned>(flags));
  fs_of(req).written(fs_of(req).nodes().node(ino_out));
  if (res < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_write(req, static_cast<size_t>(res));
}

}  // namespace cachefs::ops

// A remote that is a directory (a path or file://): another disk, an NFS mount.
// Writes go to <root>/tmp/ and are renamed to their final name once complete
// and synced, so an interrupted push never leaves a partial object or ref.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/unique_fd.h"
#include "remote/internal.h"

namespace cachefs::remote::detail {
namespace {

namespace fs = std::filesystem;

class DirBackend : public Backend {
 public:
  explicit DirBackend(std::string root) : root_(std::move(root)) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  }

  std::string describe() const override { return root_; }

  void prepare_for_push() override {
    std::error_code ec;
    fs::create_directories(root_ + "/tmp", ec);
    if (ec) fail("", ec.value());
  }

  bool exists(const std::string& key) override {
    struct stat st {};
    if (::stat(path(key).c_str(), &st) == 0) return S_ISREG(st.st_mode);
    if (errno == ENOENT || errno == ENOTDIR) return false;
    fail(key, errno);
  }

  bool get(const std::string& key, int fd) override {
    UniqueFd in(::open(path(key).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!in) {
      if (errno == ENOENT || errno == ENOTDIR) return false;
      fail(key, errno);
    }
    struct stat st {};
    if (::fstat(in.get(), &st) != 0) fail(key, errno);
    if (!S_ISREG(st.st_mode)) fail(key, EISDIR);
    copy(in.get(), fd, static_cast<uint64_t>(st.st_size), key);
    return true;
  }

  void put(const std::string& key, int fd, uint64_t size) override {
    static std::atomic<uint64_t> counter{0};
    const std::string tmp = root_ + "/tmp/" + std::to_string(::getpid()) + "-" +
                            std::to_string(counter.fetch_add(1)) + ".part";
    const std::string final_path = path(key);
    std::error_code ec;
    fs::create_directories(fs::path(final_path).parent_path(), ec);
    if (ec) fail(key, ec.value());
    UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!out) fail("tmp/", errno);
    try {
      copy(fd, out.get(), size, key);
      if (::fsync(out.get()) != 0) fail(key, errno);
      if (::rename(tmp.c_str(), final_path.c_str()) != 0) fail(key, errno);
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
  }

 private:
  std::string path(const std::string& key) const { return root_ + "/" + key; }

  [[noreturn]] void fail(const std::string& key, int err) const {
    throw RemoteError(root_ + "/" + key + ": " + std::strerror(err));
  }

  // Copies `size` bytes from offset 0 of `in` to offset 0 of `out`.
  void copy(int in, int out, uint64_t size, const std::string& key) const {
    loff_t in_off = 0, out_off = 0;
    while (static_cast<uint64_t>(in_off) < size) {
      ssize_t n = ::copy_file_range(in, &in_off, out, &out_off,
                                    static_cast<size_t>(size - static_cast<uint64_t>(in_off)), 0);
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS)) {
        char buf[1 << 16];
        n = ::pread(in, buf, std::min<uint64_t>(sizeof buf, size - static_cast<uint64_t>(in_off)),
                    in_off);
        if (n > 0) {
          for (ssize_t w = 0; w < n;) {
            const ssize_t k = ::pwrite(out, buf + w, static_cast<size_t>(n - w), out_off + w);
            if (k < 0) fail(key, errno);
            w += k;
          }
          in_off += n;
          out_off += n;
        }
      }
      if (n < 0) fail(key, errno);
      if (n == 0) fail(key, EIO);  // shorter than it was
    }
  }

  std::string root_;
};

}  // namespace

std::unique_ptr<Backend> make_dir_backend(const std::string& path) {
  return std::make_unique<DirBackend>(path);
}

}  // namespace cachefs::remote::detail

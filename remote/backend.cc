#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "remote/remote.h"

namespace cachefs::remote {
namespace {

UniqueFd memfd(const char* what) {
  UniqueFd fd(::memfd_create(what, MFD_CLOEXEC));
  if (!fd) throw RemoteError(std::string("memfd_create: ") + std::strerror(errno));
  return fd;
}

}  // namespace

std::optional<std::string> Backend::get_text(const std::string& key) {
  UniqueFd fd = memfd("cachefs-get");
  if (!get(key, fd.get())) return std::nullopt;
  std::string out;
  char buf[65536];
  for (off_t off = 0;;) {
    const ssize_t n = ::pread(fd.get(), buf, sizeof buf, off);
    if (n < 0) throw RemoteError(std::string("read: ") + std::strerror(errno));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return out;
}

void Backend::put_text(const std::string& key, std::string_view text) {
  UniqueFd fd = memfd("cachefs-put");
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0) throw RemoteError(std::string("write: ") + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  put(key, fd.get(), text.size());
}

}  // namespace cachefs::remote

#include "runners/initramfs.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "common/error.h"

namespace cachefs::runners {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "kernel/fs/9p/9p.ko.xz" -> "9p"; '-' as '_', as the kernel names modules.
std::string module_name(const std::string& path) {
  std::string base = path.substr(path.rfind('/') + 1);
  base = base.substr(0, base.find(".ko"));
  for (char& c : base) {
    if (c == '-') c = '_';
  }
  return base;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A module file's bytes, decompressed if it is .ko.xz/.ko.zst/.ko.gz (with
// the matching tool, which must be installed).
std::string module_bytes(const std::string& path) {
  struct Codec {
    const char* ext;
    const char* tool;
    const char* package;
  };
  static const Codec codecs[] = {
      {".ko.xz", "xz", "xz-utils"}, {".ko.zst", "zstd", "zstd"}, {".ko.gz", "gzip", "gzip"}};
  for (const Codec& c : codecs) {
    const size_t n = std::strlen(c.ext);
    if (path.size() < n || path.compare(path.size() - n, n, c.ext) != 0) continue;
    const std::string cmd = std::string(c.tool) + " -dc " + shell_quote(path) + " 2>/dev/null";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    if (p != nullptr) {
      char buf[65536];
      size_t got;
      while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, got);
    }
    const int st = p != nullptr ? ::pclose(p) : -1;
    if (st != 0 || out.empty()) {
      throw UsageError::make(
          "QEMU_KERNEL_MODULES: cannot decompress {} (install {}: apt-get install {})", path,
          c.tool, c.package);
    }
    return out;
  }
  return slurp(path);
}

}  // namespace

CpioWriter::CpioWriter(const std::string& path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
}

CpioWriter::~CpioWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void CpioWriter::put(const std::string& s) {
  buf_ += s;
  offset_ += s.size();
  if (buf_.size() >= (1u << 20)) {
    const char* p = buf_.data();
    size_t left = buf_.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        throw std::runtime_error(std::string("writing the initramfs: ") + std::strerror(errno));
      p += n;
      left -= static_cast<size_t>(n);
    }
    buf_.clear();
  }
}

void CpioWriter::pad() {
  if (offset_ % 4 != 0) put(std::string(4 - offset_ % 4, '\0'));
}

void CpioWriter::entry(const std::string& name, uint32_t mode, const std::string& data,
                       uint32_t rmajor, uint32_t rminor) {
  const uint32_t nlink = (mode & S_IFMT) == S_IFDIR ? 2 : 1;
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
  // rdevmajor, rdevminor, namesize (with its NUL), check.
  put(fmt::format(
      "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
      ino_++, mode, 0, 0, nlink, 0, data.size(), 0, 0, rmajor, rminor, name.size() + 1, 0));
  put(name);
  put(std::string(1, '\0'));
  pad();
  put(data);
  pad();
}

void CpioWriter::directory(const std::string& name, uint32_t mode) {
  entry(name, S_IFDIR | mode, "");
}

void CpioWriter::file(const std::string& name, const std::string& data, uint32_t mode) {
  entry(name, S_IFREG | mode, data);
}

void CpioWriter::symlink(const std::string& name, const std::string& target) {
  entry(name, S_IFLNK | 0777, target);
}

void CpioWriter::char_device(const std::string& name, uint32_t major, uint32_t minor,
                             uint32_t mode) {
  entry(name, S_IFCHR | mode, "", major, minor);
}

void CpioWriter::finish() {
  entry("TRAILER!!!", 0, "");
  put(std::string((512 - offset_ % 512) % 512, '\0'));
  const std::string rest = std::move(buf_);
  buf_.clear();
  size_t done = 0;
  while (done < rest.size()) {
    const ssize_t n = ::write(fd_, rest.data() + done, rest.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw std::runtime_error(std::string("writing the initramfs: ") + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw std::runtime_error(std::string("writing the initramfs: ") + std::strerror(errno));
  }
  fd_ = -1;
}

const std::vector<std::string>& guest_modules() {
  static const std::vector<std::string> m = {
      "virtio_pci", "virtio_console", "virtio_net", "9pnet_virtio", "9p", "virtiofs", "overlay"};
  return m;
}

namespace {

// The "depends=" of a module's .modinfo section (comma-separated names).
std::vector<std::string> module_depends(const std::string& bytes, const std::string& path) {
  auto bad = [&] {
    return UsageError::make("QEMU_KERNEL_MODULES: {} is not a kernel module", path);
  };
  if (bytes.size() < sizeof(Elf64_Ehdr) || std::memcmp(bytes.data(), ELFMAG, SELFMAG) != 0)
    throw bad();
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes.data(), sizeof eh);
  auto section = [&](size_t i) {
    Elf64_Shdr sh{};
    const size_t at = eh.e_shoff + i * sizeof(Elf64_Shdr);
    if (eh.e_shentsize != sizeof(Elf64_Shdr) || at + sizeof sh > bytes.size()) throw bad();
    std::memcpy(&sh, bytes.data() + at, sizeof sh);
    if (sh.sh_type != SHT_NOBITS && sh.sh_offset + sh.sh_size > bytes.size()) throw bad();
    return sh;
  };
  if (eh.e_shstrndx >= eh.e_shnum) throw bad();
  const Elf64_Shdr names = section(eh.e_shstrndx);
  for (size_t i = 0; i < eh.e_shnum; ++i) {
    const Elf64_Shdr sh = section(i);
    if (sh.sh_name >= names.sh_size) continue;
    if (std::strcmp(bytes.c_str() + names.sh_offset + sh.sh_name, ".modinfo") != 0) continue;
    const std::string info = bytes.substr(sh.sh_offset, sh.sh_size);
    for (size_t at = 0; at < info.size(); at = info.find('\0', at) + 1) {
      const std::string kv = info.c_str() + at;
      if (kv.rfind("depends=", 0) != 0) {
        if (info.find('\0', at) == std::string::npos) break;
        continue;
      }
      std::vector<std::string> deps;
      std::istringstream list(kv.substr(8));
      std::string d;
      while (std::getline(list, d, ',')) {
        if (!d.empty()) deps.push_back(module_name(d));
      }
      return deps;
    }
  }
  return {};
}

}  // namespace

std::vector<Module> module_load_order(const std::string& modules_dir,
                                      const std::vector<std::string>& wanted) {
  std::error_code ec;
  if (!fs::is_regular_file(modules_dir + "/modules.builtin", ec)) {
    throw UsageError::make(
        "QEMU_KERNEL_MODULES '{}' has no modules.builtin (expected a kernel's "
        "lib/modules/<version> directory)",
        modules_dir);
  }
  std::map<std::string, std::string> files;  // name -> path
  for (auto it = fs::recursive_directory_iterator(modules_dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const std::string p = it->path().string();
    if (it->is_regular_file(ec) && p.find(".ko") != std::string::npos)
      files.emplace(module_name(p), p);
  }
  std::set<std::string> builtin;
  std::ifstream bi(modules_dir + "/modules.builtin");
  std::string line;
  while (std::getline(bi, line)) builtin.insert(module_name(line));

  std::vector<Module> order;
  std::set<std::string> done;
  std::function<void(const std::string&)> visit = [&](const std::string& raw) {
    std::string name = raw;
    for (char& c : name) {
      if (c == '-') c = '_';
    }
    if (done.count(name)) return;
    done.insert(name);
    const auto it = files.find(name);
    if (it == files.end()) {
      if (builtin.count(name)) return;
      throw UsageError::make(
          "QEMU_KERNEL_MODULES '{}': the guest kernel has no module {} (the qemu "
          "runner needs virtio, 9p, virtiofs and overlay)",
          modules_dir, name);
    }
    std::string bytes = module_bytes(it->second);
    for (const std::string& d : module_depends(bytes, it->second)) visit(d);
    order.push_back({name, std::move(bytes)});
  };
  for (const std::string& w : wanted) visit(w);
  return order;
}

bool is_static_elf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  Elf64_Ehdr eh{};
  if (!in.read(reinterpret_cast<char*>(&eh), sizeof eh)) return false;
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
    return false;
  for (int i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    in.seekg(static_cast<std::streamoff>(eh.e_phoff + static_cast<uint64_t>(i) * eh.e_phentsize));
    if (!in.read(reinterpret_cast<char*>(&ph), sizeof ph)) return false;
    if (ph.p_type == PT_INTERP) return false;
  }
  return true;
}

void write_initramfs(const InitramfsSpec& spec, const std::string& out) {
  std::error_code ec;
  if (!fs::is_regular_file(spec.busybox, ec)) {
    throw UsageError::make(
        "the qemu runner needs a static busybox at {}: apt-get install busybox-static",
        spec.busybox);
  }
  if (!is_static_elf(spec.busybox)) {
    throw UsageError::make(
        "{} is not statically linked (the guest has no libc): apt-get install "
        "busybox-static",
        spec.busybox);
  }
  const std::vector<Module> order = module_load_order(spec.modules_dir, guest_modules());

  const std::string tmp = out + ".tmp";
  {
    CpioWriter w(tmp);
    for (const char* d : {"bin", "dev", "etc", "lib", "lib/modules", "mnt", "proc", "root", "run",
                          "sbin", "sys", "tmp", "usr", "usr/bin", "usr/sbin"}) {
      w.directory(d);
    }
    w.char_device("dev/console", 5, 1);
    w.char_device("dev/null", 1, 3, 0666);
    w.file("bin/busybox", slurp(spec.busybox), 0755);
    w.symlink("bin/sh", "busybox");
    std::string names;
    for (const Module& m : order) {
      w.file("lib/modules/" + m.name + ".ko", m.bytes);
      names += m.name + "\n";
    }
    w.file("lib/modules/order", names);
    w.file("init", spec.init, 0755);
    w.finish();
  }
  fs::rename(tmp, out, ec);
  if (ec) throw std::runtime_error("cannot write " + out + ": " + ec.message());
}

}  // namespace cachefs::runners

#include "runners/guest_kernel.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "runners/process.h"

namespace cachefs::runners {
namespace {

namespace fs = std::filesystem;

constexpr const char* kHowToGetOne =
    "`launch fetch-kernel DIR` downloads Debian's kernel and prints the two variables to set";

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

bool succeeded(int status) {
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Runs argv (in `cwd`), collecting its output; passes stderr lines to `progress`.
int capture(const std::vector<std::string>& argv, const std::string& cwd, std::string& out,
            const std::function<void(std::string_view)>& progress) {
  SpawnOptions so;
  so.argv = argv;
  so.cwd = cwd;
  so.env = {{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
            {"LC_ALL", "C"},
            {"DEBIAN_FRONTEND", "noninteractive"}};
  return run_streaming(so, [&](std::string_view l, bool is_err) {
    out += std::string(l) + "\n";
    if (is_err && progress) progress(l);
  });
}

bool unpacked(const fs::path& root, const std::string& version) {
  std::error_code ec;
  return fs::is_regular_file(root / "boot" / ("vmlinuz-" + version), ec) &&
         fs::is_regular_file(root / "lib/modules" / version / "modules.builtin", ec);
}

// The uncompressed kernel (ELF, booted through its PVH entry) beside a
// bzImage: boots seconds faster under TCG, which otherwise spends them
// decompressing. Made from the bzImage's xz payload; nothing if xz is missing.
void extract_vmlinux(const fs::path& vmlinuz, const fs::path& vmlinux,
                     const std::function<void(std::string_view)>& progress) {
  std::error_code ec;
  if (fs::is_regular_file(vmlinux, ec) || find_in_path("xz").empty()) return;
  std::ifstream in(vmlinuz, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at =
      bytes.find(std::string("\xfd"
                             "7zXZ\0",
                             6));
  if (at == std::string::npos) return;
  if (progress)
    progress("fetch-kernel: uncompressing " + vmlinuz.filename().string() + " for a faster boot");
  std::string out;
  capture(
      {"/bin/sh", "-c",
       "tail -c +$(($1 + 1)) \"$2\" | xz -dc --single-stream > \"$3.tmp\" && mv \"$3.tmp\" \"$3\"",
       "sh", std::to_string(at), vmlinuz.string(), vmlinux.string()},
      "", out, progress);
  fs::remove(vmlinux.string() + ".tmp", ec);
}

}  // namespace

GuestKernel guest_kernel_from_env() {
  GuestKernel k{env("QEMU_KERNEL_IMAGE"), env("QEMU_KERNEL_MODULES")};
  std::error_code ec;
  if (k.image.empty()) {
    throw UsageError::make(
        "the qemu runner needs a guest kernel: set QEMU_KERNEL_IMAGE and "
        "QEMU_KERNEL_MODULES ({})",
        kHowToGetOne);
  }
  if (!fs::is_regular_file(k.image, ec)) {
    throw UsageError::make("QEMU_KERNEL_IMAGE '{}': no such file ({})", k.image, kHowToGetOne);
  }
  if (k.modules_dir.empty()) {
    // <root>/boot/vmlinuz-V -> <root>/lib/modules/V, as in an unpacked package.
    const fs::path img(k.image);
    const std::string name = img.filename();
    if (name.rfind("vmlinuz-", 0) == 0) {
      const fs::path guess = img.parent_path().parent_path() / "lib/modules" / name.substr(8);
      if (fs::is_directory(guess, ec)) k.modules_dir = guess;
    }
    if (k.modules_dir.empty()) {
      throw UsageError::make(
          "QEMU_KERNEL_MODULES is not set: the guest kernel's lib/modules/<version> "
          "directory ({})",
          kHowToGetOne);
    }
  }
  // fetch-kernel's uncompressed copy, when there is one.
  if (const std::string name = fs::path(k.image).filename(); name.rfind("vmlinuz-", 0) == 0) {
    const fs::path elf = fs::path(k.image).parent_path() / ("vmlinux-" + name.substr(8));
    if (fs::is_regular_file(elf, ec) &&
        fs::last_write_time(elf, ec) >= fs::last_write_time(k.image, ec)) {
      k.image = elf;
    }
  }
  if (!fs::is_directory(k.modules_dir, ec)) {
    throw UsageError::make("QEMU_KERNEL_MODULES '{}': no such directory ({})", k.modules_dir,
                           kHowToGetOne);
  }
  return k;
}

GuestKernel fetch_kernel(const std::string& dir_arg,
                         const std::function<void(std::string_view)>& progress) {
  std::string out;
  if (!succeeded(capture({"dpkg", "--print-architecture"}, "", out, nullptr))) {
    throw UsageError("fetch-kernel needs dpkg and apt (a Debian host)");
  }
  const std::string arch = out.substr(0, out.find('\n'));
  if (arch != "amd64") {
    throw UsageError::make("fetch-kernel: the qemu runner runs x86_64 guests; this host is {}",
                           arch);
  }
  const std::string meta = "linux-image-" + arch;
  // The package linux-image-<arch> depends on; apt's lists are fetched once
  // (as root) when they name none yet, as on a fresh machine.
  auto kernel_package = [&]() -> std::string {
    out.clear();
    if (!succeeded(capture({"apt-cache", "depends", meta}, "", out, nullptr))) return "";
    for (size_t at = out.find("Depends: linux-image-"); at != std::string::npos;
         at = out.find("Depends: linux-image-", at + 1)) {
      const size_t start = at + 9;
      std::string name = out.substr(start, out.find('\n', start) - start);
      if (name != meta && name.find(' ') == std::string::npos) return name;
    }
    return "";
  };
  std::string package = kernel_package();
  if (package.empty() && ::geteuid() == 0) {
    if (progress) progress("fetch-kernel: apt knows no " + meta + " yet: apt-get update");
    std::string ignored;
    capture({"apt-get", "update", "-q"}, "", ignored, nullptr);
    package = kernel_package();
  }
  if (package.empty()) {
    throw UsageError::make(
        "fetch-kernel: apt-cache depends {} names no kernel package (run apt-get "
        "update as root?)",
        meta);
  }
  const std::string version = package.substr(std::string("linux-image-").size());

  std::error_code ec;
  fs::create_directories(dir_arg, ec);
  if (ec) throw UsageError::make("fetch-kernel: '{}': {}", dir_arg, ec.message());
  const fs::path dir = fs::canonical(dir_arg, ec);
  const fs::path root = dir / version;
  if (!unpacked(root, version)) {
    std::string tmpl = (dir / ".fetch.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw UsageError::make("fetch-kernel: cannot create a directory in '{}': {}", dir.string(),
                             std::strerror(errno));
    }
    const fs::path tmp = tmpl;
    // apt-get drops privileges to _apt for downloads; let it write here.
    fs::permissions(tmp, fs::perms::all, ec);
    struct Remove {
      fs::path p;
      ~Remove() {
        std::error_code e;
        fs::remove_all(p, e);
      }
    } remove{tmp};
    if (progress) progress("fetch-kernel: downloading " + package);
    out.clear();
    if (!succeeded(capture({"apt-get", "download", "-q", package}, tmp, out, progress))) {
      throw UsageError::make("fetch-kernel: apt-get download {} failed: {}", package,
                             out.substr(0, out.find('\n')));
    }
    fs::path deb;
    for (const auto& e : fs::directory_iterator(tmp)) {
      if (e.path().extension() == ".deb") deb = e.path();
    }
    if (deb.empty())
      throw UsageError::make("fetch-kernel: apt-get download {} left no .deb", package);
    if (progress) progress("fetch-kernel: unpacking " + deb.filename().string());
    out.clear();
    if (!succeeded(
            capture({"dpkg", "-x", deb.string(), (tmp / "root").string()}, "", out, progress))) {
      throw UsageError::make("fetch-kernel: dpkg -x {} failed", deb.string());
    }
    if (!unpacked(tmp / "root", version)) {
      throw UsageError::make("fetch-kernel: {} holds no boot/vmlinuz-{}", deb.filename().string(),
                             version);
    }
    // One step: another fetch-kernel at the same time may have won; either is whole.
    fs::rename(tmp / "root", root, ec);
    if (ec && !unpacked(root, version)) {
      throw UsageError::make("fetch-kernel: cannot move the kernel to '{}': {}", root.string(),
                             ec.message());
    }
  } else if (progress) {
    progress("fetch-kernel: " + package + " is already in " + root.string());
  }
  const fs::path image = root / "boot" / ("vmlinuz-" + version);
  extract_vmlinux(image, root / "boot" / ("vmlinux-" + version), progress);
  return {image.string(), (root / "lib/modules" / version).string()};
}

std::string kernel_env_lines(const GuestKernel& k) {
  return "export QEMU_KERNEL_IMAGE=" + k.image + "\nexport QEMU_KERNEL_MODULES=" + k.modules_dir +
         "\n";
}

}  // namespace cachefs::runners

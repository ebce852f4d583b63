// The qemu runner's pieces that need no VM: the cpio writer (read back by
// cpio(1)), module dependency order from a real kernel's modules, the static
// busybox check, and the --cpus/--memory parsers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "runners/initramfs.h"
#include "runners/qemu.h"

namespace fs = std::filesystem;
using namespace cachefs::runners;

namespace {

std::string shell(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while (p != nullptr && (n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (p != nullptr) ::pclose(p);
  return out;
}

class QemuPartsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/var/tmp/cachefs-qemu-parts-XXXXXX";
    root_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string root_;
};

TEST_F(QemuPartsTest, CpioArchivesReadBackWithCpio) {
  if (shell("command -v cpio").empty()) GTEST_SKIP() << "cpio is not installed";
  {
    CpioWriter w(root_ + "/a.cpio");
    w.directory("bin");
    w.file("bin/hello", "#!/bin/sh\necho hi\n", 0755);
    w.file("odd", std::string("x"));  // sizes that need padding
    w.symlink("bin/sh", "busybox");
    w.char_device("console", 5, 1);
    w.finish();
  }
  EXPECT_EQ(fs::file_size(root_ + "/a.cpio") % 512, 0u);
  EXPECT_EQ(shell("cd '" + root_ + "' && cpio -it < a.cpio 2>/dev/null"),
            "bin\nbin/hello\nodd\nbin/sh\nconsole\n");
  fs::create_directories(root_ + "/x");
  shell("cd '" + root_ +
        "/x' && cpio -id --no-absolute-filenames 'bin/hello' 'odd' < ../a.cpio 2>/dev/null");
  std::ifstream in(root_ + "/x/bin/hello");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(fs::file_size(root_ + "/x/odd"), 1u);
  EXPECT_TRUE((fs::status(root_ + "/x/bin/hello").permissions() & fs::perms::owner_exec) !=
              fs::perms::none);
}

TEST_F(QemuPartsTest, BusyboxMustBeStatic) {
  if (fs::exists("/bin/busybox")) {
    EXPECT_TRUE(is_static_elf("/bin/busybox"));
  }
  EXPECT_FALSE(is_static_elf("/bin/sh"));  // dash: dynamically linked
  EXPECT_FALSE(is_static_elf("/etc/passwd"));
}

TEST_F(QemuPartsTest, ModulesComeWithTheirDependenciesFirst) {
  // The real guest kernel's modules (the qemu tests' fixture fetches them).
  std::string dir;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/var/cache/cachefs-test/kernel", ec)) {
    const fs::path m = e.path() / "lib/modules" / e.path().filename();
    if (fs::is_regular_file(m / "modules.builtin")) dir = m;
  }
  if (dir.empty())
    GTEST_SKIP() << "no guest kernel in /var/cache/cachefs-test/kernel (the qemu tests fetch it)";
  const std::vector<Module> order = module_load_order(dir, guest_modules());
  std::vector<std::string> names;
  for (const Module& m : order) names.push_back(m.name);
  auto at = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) - names.begin();
  };
  for (const char* want : {"virtio_pci", "virtio_console", "9pnet", "9pnet_virtio", "9p",
                           "virtiofs", "fuse", "overlay"}) {
    EXPECT_LT(at(want), static_cast<long>(names.size())) << want << " missing";
  }
  EXPECT_LT(at("9pnet"), at("9pnet_virtio"));
  EXPECT_LT(at("9pnet"), at("9p"));
  EXPECT_LT(at("fuse"), at("virtiofs"));
  EXPECT_LT(at("virtio_ring"), at("virtio_pci"));
  try {
    module_load_order(dir, {"no_such_module"});
    FAIL();
  } catch (const cachefs::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("no module no_such_module"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(module_load_order(root_, {"9p"}), cachefs::UsageError);  // no modules.builtin
}

TEST_F(QemuPartsTest, CpusAndMemoryParse) {
  EXPECT_EQ(parse_memory_mib("4Gi", "m"), 4096u);
  EXPECT_EQ(parse_memory_mib("512Mi", "m"), 512u);
  EXPECT_EQ(parse_memory_mib("2G", "m"), 1908u);  // 2e9 bytes, rounded up
  EXPECT_EQ(parse_memory_mib("1.5Gi", "m"), 1536u);
  EXPECT_EQ(parse_memory_mib("1048576Ki", "m"), 1024u);
  for (const char* bad : {"", "lots", "4Gb", "-1Gi", "64Mi", "1..2G"}) {
    EXPECT_THROW(parse_memory_mib(bad, "memory"), cachefs::UsageError) << bad;
  }
  EXPECT_EQ(parse_cpus("2", "c"), 2u);
  EXPECT_EQ(parse_cpus("1500m", "c"), 2u);
  EXPECT_EQ(parse_cpus("250m", "c"), 1u);
  for (const char* bad : {"", "0", "two", "-1", "1.5", "999"}) {
    EXPECT_THROW(parse_cpus(bad, "cpus"), cachefs::UsageError) << bad;
  }
}

TEST_F(QemuPartsTest, NinePIsADiscardMountVirtiofsIsPassthrough) {
  ::unsetenv("QEMU_USE_VIRTIOFS");
  EXPECT_EQ(qemu_cache_mount_args(), (std::vector<std::string>{"--write-mode", "discard"}));
  ::setenv("QEMU_USE_VIRTIOFS", "1", 1);
  EXPECT_TRUE(qemu_cache_mount_args().empty());
  ::unsetenv("QEMU_USE_VIRTIOFS");
}

}  // namespace

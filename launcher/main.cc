// launch: runs a melange-format build with the dependency cache mounted at
// /var/cache/melange. `launch build pkg.yaml` — resolve the plan (every mistake
// reported before anything starts), check the sandbox root, mount the cache,
// run the steps in bubblewrap, copy the outputs, report what the cache did, and
// leave nothing behind.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "common/error.h"
#include "common/json.h"
#include "common/units.h"
#include "launcher/cache_env.h"
#include "launcher/cache_source.h"
#include "launcher/pipeline_library.h"
#include "launcher/plan.h"
#include "runners/runner.h"
#include "runners/cache_mount.h"
#include "runners/guest_kernel.h"
#include "runners/packages.h"
#include "runners/process.h"

namespace fs = std::filesystem;
using namespace cachefs;

namespace {

std::atomic<int> g_signal{0};

void on_signal(int sig) {
  g_signal.store(sig);
}

struct BuildArgs {
  std::string file;
  std::string runner = "bubblewrap";
  std::string cache_dir = "./melange-cache";
  std::string define, policy, store, cache_mount, cache_source;
  std::string workspace_dir, out_dir = "./packages", source_dir, rootfs, image;
  std::vector<std::string> env, vars, pipeline_dirs;
  std::string source_date_epoch = "0";
  bool skip_package_check = false;
  std::string cpus, memory, qemu_accel;  // --cpus, --memory (over package.resources), --qemu-accel
};

// A directory removed when launch ends, however it ends: a janitor process
// waits for launch to go (its end of a pipe closes), for the cache mount in it
// to be gone, then removes what is left without crossing into any mount.
class WorkDir {
 public:
  WorkDir() {
    // $TMPDIR as mktemp(1) honours it; /var/tmp otherwise (disk-backed: a
    // workspace can be large).
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base ? base : "/var/tmp") + "/launch.XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw UsageError::make("cannot create a work directory in {}: {}",
                             tmpl.substr(0, tmpl.rfind('/')), std::strerror(errno));
    }
    path_ = tmpl;
    int p[2];
    if (::pipe(p) != 0) return;
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(p[1]);
      ::setsid();
      // Detach from launch's stdio so a pipe reading launch's output sees EOF.
      const int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
      char c;
      while (::read(p[0], &c, 1) > 0) {
      }
      for (int i = 0; i < 600 && runners::is_cachefs_mount(path_ + "/cache"); ++i) ::usleep(50'000);
      if (!runners::is_cachefs_mount(path_ + "/cache")) {
        std::error_code ec;
        if (fs::exists(path_, ec)) {
          execl("/bin/rm", "rm", "-rf", "--one-file-system", path_.c_str(), static_cast<char*>(nullptr));
        }
      }
      ::_exit(0);
    }
    ::close(p[0]);
    janitor_pipe_ = p[1];
    ::fcntl(janitor_pipe_, F_SETFD, FD_CLOEXEC);
  }
  ~WorkDir() {
    std::error_code ec;
    if (!runners::is_cachefs_mount(path_ + "/cache")) fs::remove_all(path_, ec);
    if (janitor_pipe_ >= 0) ::close(janitor_pipe_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int janitor_pipe_ = -1;
};

// "cache: read 12 files (3.1 MiB), wrote ..., deduplicated ..."
std::string cache_report(const std::string& stats) {
  const auto doc = Json::parse(stats);
  const Json* counts = doc ? doc->find("counters") : nullptr;
  if (counts == nullptr) return "cache: no statistics (the mount did not answer)";
  auto n = [&](std::string_view key) {
    const Json* v = counts->find(key);
    return v != nullptr && v->is_number() ? static_cast<uint64_t>(v->number()) : 0;
  };
  return fmt::format(
      "cache: read {} files ({}), wrote {} files ({}), deduplicated {} files ({} saved), {} "
      "private copies",
      n("files_read"), human_bytes(n("bytes_read")), n("files_written"),
      human_bytes(n("bytes_written")), n("dedup_linked") + n("dedup_adopted"),
      human_bytes(n("dedup_bytes_saved")), n("cow_breaks"));
}

// "cache: discarded ..." for a discard-mode mount (qemu over 9p), else empty.
std::string discard_report(const std::string& stats) {
  const auto doc = Json::parse(stats);
  const Json* d = doc ? doc->find("discard") : nullptr;
  if (d == nullptr) return "";
  auto n = [&](std::string_view key) {
    const Json* v = d->find(key);
    return v != nullptr && v->is_number() ? static_cast<uint64_t>(v->number()) : 0;
  };
  return fmt::format(
      "cache: discarded what the build wrote to {}: {} files created, {} changed, {} deleted ({}); to "
      "keep a build's cache writes use QEMU_USE_VIRTIOFS=1 or --runner bubblewrap",
      launcher::kCacheRoot, n("files_created"), n("files_changed"), n("files_deleted"),
      human_bytes(n("bytes")));
}

int run_command(const std::vector<std::string>& argv) {
  runners::SpawnOptions so;
  so.argv = argv;
  so.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}};
  std::string err;
  const int st = runners::run_streaming(so, [&](std::string_view l, bool) { err += std::string(l) + "\n"; });
  if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) std::cerr << err;
  return st;
}

int build(const BuildArgs& a, const char* self) {
  // An unknown runner fails before anything is read or started.
  const std::vector<std::string> runner_mount_args = runners::cache_mount_args(a.runner);
  launcher::PlanOptions po;
  std::vector<fs::path> user_dirs(a.pipeline_dirs.begin(), a.pipeline_dirs.end());
  for (const auto& d : user_dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) throw UsageError::make("--pipeline-dir '{}' is not a directory", d.string());
  }
  po.pipeline_dirs = launcher::pipeline_search_path(user_dirs);
  for (const std::string& kv : a.env) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw UsageError::make("--env '{}': expected KEY=VALUE", kv);
    po.environment[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  // --var NAME=VALUE: launch's own (melange has no such flag); the value wins
  // over the build file's `vars:` default and is visible to its var-transforms.
  for (const std::string& kv : a.vars) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw UsageError::make("--var '{}': expected NAME=VALUE", kv);
    po.vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  po.source_date_epoch = a.source_date_epoch;
  std::error_code ec;
  if (!fs::is_regular_file(a.file, ec)) throw UsageError::make("build file '{}': no such file", a.file);
  const launcher::BuildFile file = launcher::parse_build_file(a.file);
  // A --var the file does not declare is a typo, not a new variable.
  for (const auto& [name, value] : po.vars) {
    bool declared = false;
    std::string names;
    for (const auto& [k, v] : file.vars) {
      declared = declared || k == name;
      names += (names.empty() ? "" : ", ") + k;
    }
    if (!declared) {
      throw UsageError::make("--var {}: {} declares no such var (its vars: {})", name, a.file,
                             names.empty() ? "none" : names);
    }
  }
  const launcher::Plan plan = launcher::resolve_plan(file, po);

  // A docker image is the user's choice and is not inspected (melange builds one
  // from the list; launch does not).
  if (!a.skip_package_check && a.runner != "docker") {
    const auto missing = runners::missing_packages(a.rootfs.empty() ? "/" : a.rootfs, plan.packages);
    if (!missing.empty()) {
      std::string list;
      for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
      throw UsageError::make(
          "{}: the sandbox root lacks package(s) {} — install them on the host, give --rootfs "
          "DIR with them, or pass --skip-package-check",
          a.file, list);
    }
  }
  std::string source = a.source_dir;
  if (source.empty()) {
    const fs::path guess = fs::path(a.file).parent_path() / plan.package.name;
    if (fs::is_directory(guess, ec)) source = guess;
  } else if (!fs::is_directory(source, ec)) {
    throw UsageError::make("--source-dir '{}' is not a directory", source);
  }
  if (a.cache_mount.empty()) {
    fs::create_directories(a.cache_dir, ec);
    if (ec) throw UsageError::make("--cache-dir '{}': {}", a.cache_dir, ec.message());
  }
  if (!a.cache_source.empty()) launcher::preload_cache(self, a.cache_source, a.cache_dir, !a.cache_mount.empty());

  WorkDir work;
  std::string workspace = a.workspace_dir;
  if (workspace.empty()) {
    workspace = work.path() + "/workspace";
  }
  fs::create_directories(workspace, ec);
  if (ec) throw UsageError::make("--workspace-dir '{}': {}", workspace, ec.message());
  workspace = fs::canonical(workspace);
  if (!source.empty()) {
    fs::copy(source, workspace, fs::copy_options::recursive | fs::copy_options::copy_symlinks |
                                    fs::copy_options::overwrite_existing);
  }

  runners::CacheMountOptions mo;
  mo.cachefs = runners::find_cachefs(self);
  mo.existing = a.cache_mount;
  mo.work_dir = work.path();
  mo.args = {"--cache-directory", fs::absolute(a.cache_dir).string()};
  if (!a.define.empty()) mo.args.insert(mo.args.end(), {"--define-cache-directories", a.define});
  if (!a.policy.empty()) mo.args.insert(mo.args.end(), {"--resolution-policy", a.policy});
  if (!a.store.empty()) mo.args.insert(mo.args.end(), {"--store", a.store});
  mo.args.insert(mo.args.end(), runner_mount_args.begin(), runner_mount_args.end());
  runners::CacheMount mount(mo);
  runners::RunnerSpec spec;
  spec.rootfs = a.rootfs;
  spec.image = a.image;
  spec.workspace = workspace;
  spec.cache = mount.path();
  spec.work_dir = work.path();
  spec.cpus = a.cpus.empty() ? plan.package.resources.cpu : a.cpus;
  spec.memory = a.memory.empty() ? plan.package.resources.memory : a.memory;
  spec.qemu_accel = a.qemu_accel;
  const std::unique_ptr<runners::Runner> runner = runners::make_runner(a.runner, spec);
  // Finished on every way out of this function (the destructor finishes too,
  // but a runner's teardown must come before the mount's).
  struct Finish {
    runners::Runner& r;
    ~Finish() { r.finish(); }
  } finish{*runner};
  const auto print_line = [](const std::string& prefix) {
    return [prefix](std::string_view l, bool is_err) {
      (is_err ? std::cerr : std::cout) << prefix << l << std::endl;
    };
  };
  const auto stopping = [] { return g_signal.load() != 0; };
  runner->start(print_line("[" + a.runner + "] "), stopping);
  if (stopping()) {
    std::cerr << "launch: interrupted while starting the " << a.runner << " runner" << std::endl;
    return 128 + g_signal.load();
  }

  std::cout << "launch: building " << plan.package.name << " " << plan.package.full_version
            << " (" << plan.arch << ") with the cache at " << launcher::kCacheRoot << " <- "
            << (a.cache_mount.empty() ? fs::absolute(a.cache_dir).string() : a.cache_mount)
            << std::endl;
  const auto started = std::chrono::steady_clock::now();
  for (const launcher::PackagePlan& pkg : plan.builds) {
    fs::create_directories(workspace + "/melange-out/" + pkg.name);
    size_t skipped = 0;
    for (size_t i = 0; i <= pkg.steps.size(); ++i) {
      while (skipped < pkg.skipped.size() && pkg.skipped[skipped].before == i) {
        std::cout << "[" << pkg.name << "] skipped " << pkg.skipped[skipped].name << " (if: "
                  << pkg.skipped[skipped].condition << ")" << std::endl;
        ++skipped;
      }
      if (i == pkg.steps.size()) break;
      const launcher::PlanStep& step = pkg.steps[i];
      const std::string prefix = "[" + pkg.name + "/" + step.name + "] ";
      std::cout << "==> " << pkg.name << ": " << step.name << std::endl;
      const auto t0 = std::chrono::steady_clock::now();
      runners::Env env(step.environment.begin(), step.environment.end());
      // melange's PATH when the build does not set one.
      env.try_emplace("PATH", "/usr/local/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/sbin:/bin");
      const int status =
          runner->run(step.script, step.working_directory, env, print_line(prefix), stopping);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (g_signal.load() != 0) {
        std::cerr << "launch: interrupted during " << pkg.name << ": " << step.name << std::endl;
        return 128 + g_signal.load();
      }
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        std::cerr << "launch: step '" << step.name << "' of " << pkg.name << " failed ("
                  << runners::describe_status(status) << ", " << step.where.str() << ")"
                  << std::endl;
        std::cerr << "launch: " << cache_report(mount.stats()) << std::endl;
        return 1;
      }
      std::cout << "    " << step.name << " done in " << fmt::format("{:.2f}", secs) << " s"
                << std::endl;
    }
  }
  // Outputs: each package's tree and a .tar.gz of it.
  fs::create_directories(a.out_dir, ec);
  if (ec) throw UsageError::make("--out-dir '{}': {}", a.out_dir, ec.message());
  for (const launcher::PackagePlan& pkg : plan.builds) {
    const std::string from = workspace + "/melange-out/" + pkg.name;
    const std::string to = a.out_dir + "/" + pkg.name;
    fs::remove_all(to, ec);
    if (run_command({"cp", "-a", from, to}) != 0) return 1;
    const std::string tarball =
        a.out_dir + "/" + pkg.name + "-" + plan.package.full_version + ".tar.gz";
    if (run_command({"tar", "-czf", tarball, "-C", from, "."}) != 0) return 1;
  }
  const std::string stats = mount.stats();
  runner->finish();
  mount.stop();
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "launch: built " << plan.builds.size() << " package(s) in "
            << fmt::format("{:.2f}", total) << " s; outputs in " << fs::absolute(a.out_dir).string()
            << std::endl;
  std::cout << "launch: " << cache_report(stats) << std::endl;
  if (const std::string d = discard_report(stats); !d.empty()) std::cout << "launch: " << d << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"launch: run melange-format builds with a shared, deduplicated cache", "launch"};
  app.set_version_flag("-V,--version", "launch " CACHEFS_VERSION);
  app.require_subcommand(1);
  BuildArgs a;
  CLI::App* b = app.add_subcommand("build", "build a package from a melange build file");
  b->add_option("file", a.file, "the build file (pkg.yaml)")->required();
  b->add_option("--runner", a.runner, runners::runner_names() + " (default bubblewrap)");
  b->add_option("--cache-dir", a.cache_dir, "the cache's default backing directory (default ./melange-cache)");
  b->add_option("--cache-source", a.cache_source, "preload the cache from a remote store (DIR or URL) or a plain cache tree");
  b->add_option("--define-cache-directories", a.define, "routes: 'DIR1=REGEX1|DIR2=REGEX2|...'");
  b->add_option("--resolution-policy", a.policy, "strict (default) or weak");
  b->add_option("--store", a.store, "object store (default <cache dir>/.cachefs)");
  b->add_option("--cache-mount", a.cache_mount, "use this running cachefs mount instead of starting one");
  b->add_option("--workspace-dir", a.workspace_dir, "keep the workspace here (default: a temporary one)");
  b->add_option("--out-dir", a.out_dir, "where package trees and .tar.gz files go (default ./packages)");
  b->add_option("--source-dir", a.source_dir, "sources copied into the workspace (default ./<package>)");
  b->add_option("--rootfs", a.rootfs, "sandbox root (default: the host's, read-only)");
  b->add_option("--image", a.image, "the image steps run in (--runner docker; required there)");
  b->add_option("--env", a.env, "KEY=VALUE over the build file's environment (repeatable)");
  b->add_option("--var", a.vars, "NAME=VALUE over the build file's vars: (repeatable; not in melange)");
  b->add_option("--pipeline-dir", a.pipeline_dirs, "more pipelines for uses: (repeatable)");
  b->add_option("--source-date-epoch", a.source_date_epoch, "SOURCE_DATE_EPOCH (default 0)");
  b->add_flag("--skip-package-check", a.skip_package_check,
              "do not check environment.contents.packages against the root");
  b->add_option("--cpus", a.cpus, "CPUs for the VM or container (default package.resources.cpu)");
  b->add_option("--memory", a.memory, "memory for the VM or container, e.g. 4Gi (default package.resources.memory)");
  b->add_option("--qemu-accel", a.qemu_accel, "qemu: kvm, tcg or auto (default: KVM if a probe boots, else TCG)");
  std::string kernel_dir = "/var/cache/launch/kernel";
  CLI::App* fk = app.add_subcommand(
      "fetch-kernel", "download and unpack Debian's kernel for --runner qemu; prints the variables to set");
  fk->add_option("dir", kernel_dir, "where to unpack it (default /var/cache/launch/kernel)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::CallForVersion&) {
    std::cout << app.version() << "\n";
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << "launch: " << e.what() << "\n";
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  try {
    char self[4096] = {};
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (fk->parsed()) {
      const runners::GuestKernel k =
          runners::fetch_kernel(kernel_dir, [](std::string_view l) { std::cerr << l << std::endl; });
      std::cout << runners::kernel_env_lines(k);
      return 0;
    }
    return build(a, n > 0 ? self : argv[0]);
  } catch (const UsageError& e) {
    std::cerr << "launch: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "launch: " << e.what() << "\n";
    return 1;
  }
}

#include "runners/docker.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "common/error.h"
#include "common/units.h"

extern char** environ;

namespace cachefs::runners {
namespace {

using namespace std::chrono_literals;

// The container's main process: a shell that waits until it is told to stop.
// Any image with /bin/sh and sleep has what it needs; the image's own
// entrypoint is bypassed.
constexpr const char* kHold = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  size_t b = 0;
  while (b < s.size() && s[b] == ' ') ++b;
  return s.substr(b);
}

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string l;
  std::getline(in, l);
  return trim(l);
}

// Field 22 of /proc/PID/stat (the start time in clock ticks since boot), or
// empty if there is no such process.
std::string start_time(const std::string& pid) {
  const std::string stat = read_first_line("/proc/" + pid + "/stat");
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return "";
  std::istringstream f(stat.substr(paren + 2));
  std::string field;
  for (int i = 3; i <= 22 && (f >> field); ++i) {
    if (i == 22) return field;
  }
  return "";
}

// "<boot id>/<pid namespace inode>/<pid>/<start time>": who owns a container,
// comparable by any later launch on the same kernel.
std::string owner_of_self() {
  char ns[128] = {};
  const ssize_t n = ::readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
  std::string pidns = n > 0 ? std::string(ns, static_cast<size_t>(n)) : "?";
  const size_t open = pidns.find('['), close = pidns.find(']');
  if (open != std::string::npos && close != std::string::npos)
    pidns = pidns.substr(open + 1, close - open - 1);
  const std::string pid = std::to_string(::getpid());
  return read_first_line("/proc/sys/kernel/random/boot_id") + "/" + pidns + "/" + pid + "/" +
         start_time(pid);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

// A field of docker's --mount value (CSV): quoted when it holds a comma or quote.
std::string csv_field(const std::string& f) {
  if (f.find_first_of(",\"") == std::string::npos) return f;
  std::string q = "\"";
  for (char c : f) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string bind_mount(const std::string& src, const std::string& dst) {
  return "type=bind," + csv_field("src=" + src) + "," + csv_field("dst=" + dst);
}

std::string random_hex(size_t n) {
  std::random_device rd;
  std::string s;
  while (s.size() < n) s += fmt::format("{:08x}", rd());
  return s.substr(0, n);
}

}  // namespace

std::string docker_cpus(const std::string& quantity) {
  const bool milli = !quantity.empty() && quantity.back() == 'm';
  const std::string num = milli ? quantity.substr(0, quantity.size() - 1) : quantity;
  const bool digits_ok = !num.empty() && num != "." && num.size() <= 12 &&
                         std::count(num.begin(), num.end(), '.') <= 1 &&
                         std::all_of(num.begin(), num.end(),
                                     [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
  const double v = digits_ok ? std::strtod(num.c_str(), nullptr) / (milli ? 1000.0 : 1.0) : 0;
  if (!(v > 0)) {
    throw UsageError::make(
        "package.resources.cpu '{}': expected a number of CPUs such as 2, 0.5 or 500m", quantity);
  }
  return fmt::format("{:g}", v);
}

std::string docker_memory(const std::string& size) {
  const auto bytes = parse_size(size);
  if (!bytes || *bytes == 0) {
    throw UsageError::make(
        "package.resources.memory '{}': expected a size such as 4Gi, 512Mi or 2G", size);
  }
  return std::to_string(*bytes);
}

bool DockerRunner::Result::ok() const {
  return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string DockerRunner::Result::message() const {
  std::string last;
  for (const std::string& l : split(err, '\n')) {
    if (!trim(l).empty()) last = trim(l);
  }
  if (!last.empty()) return last;
  return status < 0 ? "docker could not be started" : "docker " + describe_status(status);
}

DockerRunner::DockerRunner(DockerSpec spec) : spec_(std::move(spec)) {
  if (spec_.image.empty()) {
    throw UsageError(
        "--runner docker needs --image IMAGE (an image with /bin/sh; launch does not build one "
        "from the package list)");
  }
  docker_ = find_in_path("docker");
  if (docker_.empty()) {
    throw UsageError(
        "docker CLI not found in PATH: install it (docker.io or docker-ce-cli; podman's engine "
        "works through it, see launch(1))");
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(spec_.workspace, ec)) {
    throw UsageError::make("workspace '{}' is not a directory", spec_.workspace);
  }
  if (!spec_.cpus.empty()) spec_.cpus = docker_cpus(spec_.cpus);
  if (!spec_.memory.empty()) spec_.memory = docker_memory(spec_.memory);
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) env_[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  name_ = fmt::format("cachefs-launch-{}-{}", ::getpid(), random_hex(8));
  owner_ = owner_of_self();
}

DockerRunner::~DockerRunner() {
  finish();
}

std::string DockerRunner::engine() const {
  const auto host = env_.find("DOCKER_HOST");
  if (host != env_.end() && !host->second.empty()) return "DOCKER_HOST=" + host->second;
  const auto context = env_.find("DOCKER_CONTEXT");
  if (context != env_.end() && !context->second.empty()) return "DOCKER_CONTEXT=" + context->second;
  return "the docker CLI's default engine (DOCKER_HOST is unset)";
}

DockerRunner::Result DockerRunner::docker(std::vector<std::string> args,
                                          std::chrono::milliseconds timeout,
                                          const StopCheck& stop) const {
  SpawnOptions so;
  so.argv = {docker_};
  so.argv.insert(so.argv.end(), args.begin(), args.end());
  so.env = env_;
  Result r;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  r.status = run_streaming(
      so,
      [&](std::string_view l, bool is_err) { (is_err ? r.err : r.out) += std::string(l) + "\n"; },
      [&] {
        if (std::chrono::steady_clock::now() > deadline) r.timed_out = true;
        return r.timed_out || (stop && stop());
      },
      1s);
  if (r.timed_out) r.err += fmt::format("no answer within {} s\n", timeout.count() / 1000);
  return r;
}

void DockerRunner::start(const LineSink& line, const StopCheck& stop) {
  // One call probes the engine and the image (`docker version` would cost
  // 0.75 s against podman's engine; this costs 25 ms).
  const Result img =
      docker({"image", "inspect", "--format", "{{.Id}}", spec_.image}, spec_.timeout, stop);
  if (stop && stop()) return;
  if (!img.ok()) {
    std::string lower = img.err;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (lower.find("no such image") != std::string::npos) {
      throw UsageError::make(
          "--image {}: no such image on the engine at {} (docker pull, load or import it first)",
          spec_.image, engine());
    }
    if (lower.find("invalid reference") != std::string::npos) {
      throw UsageError::make("--image {}: {}", spec_.image, img.message());
    }
    throw UsageError::make("docker engine not reachable at {}: {}", engine(), img.message());
  }
  remove_orphans(line);

  std::vector<std::string> run = {
      "run", "-d", "--name", name_, "--label", std::string(kOwnerLabel) + "=" + owner_, "--label",
      std::string(kPidLabel) + "=" + std::to_string(::getpid()),
      // The image was checked; never reach out to a registry.
      "--pull", "never",
      // As bubblewrap: the host's network (a fetch from 127.0.0.1 works).
      "--network", "host", "--user", "0:0", "--workdir", kBuildHome, "--mount",
      bind_mount(spec_.workspace, kBuildHome)};
  if (!spec_.cache.empty()) run.insert(run.end(), {"--mount", bind_mount(spec_.cache, kCacheDir)});
  if (!spec_.cpus.empty()) run.insert(run.end(), {"--cpus", spec_.cpus});
  if (!spec_.memory.empty()) run.insert(run.end(), {"--memory", spec_.memory});
  run.insert(run.end(), {"--entrypoint", "/bin/sh", spec_.image, "-c", kHold});
  start_watchdog();
  // Not interruptible: once asked for, the container is waited for, so that
  // finish() finds (and removes) it rather than racing its creation.
  created_ = true;
  const Result r = docker(run, spec_.timeout);
  if (!r.ok())
    throw UsageError::make("docker run of image {} failed: {}", spec_.image, r.message());
}

void DockerRunner::remove_orphans(const LineSink& line) {
  const Result ps = docker({"ps", "-a", "--filter", std::string("label=") + kOwnerLabel, "--format",
                            std::string("{{.Names}} {{.Label \"") + kOwnerLabel + "\"}}"},
                           spec_.timeout);
  if (!ps.ok()) return;
  const std::vector<std::string> mine = split(owner_, '/');
  std::vector<std::string> gone;
  for (const std::string& l : split(ps.out, '\n')) {
    const size_t sp = l.find(' ');
    if (sp == std::string::npos) continue;
    const std::vector<std::string> o = split(l.substr(sp + 1), '/');
    // Only containers of this kernel and pid namespace can be judged here.
    if (o.size() != 4 || mine.size() != 4 || o[0] != mine[0] || o[1] != mine[1] || o[2].empty())
      continue;
    if (start_time(o[2]) != o[3]) gone.push_back(l.substr(0, sp));
  }
  if (gone.empty()) return;
  std::vector<std::string> rm = {"rm", "-f"};
  rm.insert(rm.end(), gone.begin(), gone.end());
  docker(rm, spec_.timeout);
  std::string names;
  for (const auto& g : gone) names += (names.empty() ? "" : ", ") + g;
  line("removed " + std::to_string(gone.size()) +
           " container(s) left by launches that are gone: " + names,
       true);
}

// A process in its own session that outlives launch: it waits on a pipe only
// launch holds; a byte means finish() did the work, end-of-file means launch
// died, and then it removes the container itself.
void DockerRunner::start_watchdog() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return;  // best effort: the labels remain
  // Everything the child uses is prepared before fork (async-signal-safe after).
  std::vector<std::string> argv_s = {docker_, "rm", "-f", name_};
  std::vector<std::string> env_s;
  for (const auto& [k, v] : env_) env_s.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    if (p[0] != 3) {
      ::dup2(p[0], 3);
      ::close(p[0]);
    }
    ::close_range(4, ~0U, 0);  // the write end and whatever else launch holds
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    char c;
    ssize_t n;
    while ((n = ::read(3, &c, 1)) < 0 && errno == EINTR) {
    }
    if (n == 1) ::_exit(0);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(p[0]);
  if (pid < 0) {
    ::close(p[1]);
    return;
  }
  watchdog_ = pid;
  watchdog_pipe_ = p[1];
}

std::vector<std::string> DockerRunner::exec_command(const std::string& script,
                                                    const std::string& workdir,
                                                    const Env& env) const {
  std::vector<std::string> a = {docker_, "exec", "--workdir", kBuildHome};
  for (const auto& [k, v] : env) a.insert(a.end(), {"-e", k + "=" + v});
  a.insert(a.end(), {name_, "/bin/sh", "-c", step_script(script, workdir)});
  return a;
}

int DockerRunner::run(const std::string& script, const std::string& workdir, const Env& env,
                      const LineSink& line, const StopCheck& stop) {
  SpawnOptions so;
  so.argv = exec_command(script, workdir, env);
  so.env = env_;
  // Stopping ends the docker exec client; what it ran in the container ends
  // with the container (finish()).
  return run_streaming(so, line, stop, 2s);
}

void DockerRunner::finish() {
  bool removed = true;
  if (created_) {
    created_ = false;
    const Result r = docker({"rm", "-f", name_}, 60s);
    removed = r.ok() || r.err.find("no such container") != std::string::npos ||
              r.err.find("No such container") != std::string::npos;
    if (!removed) {
      std::fprintf(stderr, "launch: could not remove container %s: %s\n", name_.c_str(),
                   r.message().c_str());
    }
  }
  if (watchdog_pipe_ >= 0) {
    // Released only when the container is gone; otherwise the watchdog tries too.
    if (removed) {
      const char done = 'd';
      while (::write(watchdog_pipe_, &done, 1) < 0 && errno == EINTR) {
      }
    }
    ::close(watchdog_pipe_);
    watchdog_pipe_ = -1;
    if (removed) {
      while (::waitpid(watchdog_, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    watchdog_ = -1;
  }
}

}  // namespace cachefs::runners

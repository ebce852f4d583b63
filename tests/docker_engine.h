// A real container engine for the docker runner's tests: podman's
// Docker-compatible service on a private socket (started and stopped by the
// test), driven through the real docker CLI via DOCKER_HOST, and a tiny
// busybox image imported once and kept in podman's storage for later tests.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace cachefs_test {

inline constexpr const char* kTestImage = "localhost/cachefs-test-busybox:1";
inline constexpr const char* kPidLabel = "cachefs.launch.pid";

// Runs a shell command; its stdout and stderr in `out` (if given), its status
// as std::system returns it.
inline int run_sh(const std::string& cmd, std::string* out = nullptr) {
  std::string text;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  const int st = ::pclose(p);
  if (out != nullptr) *out = text;
  return st;
}

inline bool sh_ok(const std::string& cmd, std::string* out = nullptr) {
  const int st = run_sh(cmd, out);
  return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

class PodmanEngine {
 public:
  // Starts `podman system service` on DIR/podman.sock with its own
  // containers.conf (runc, cgroupfs: what works on these machines, see
  // /work/shared/ENVIRONMENT.md), points DOCKER_HOST at it for this process
  // and its children, and makes sure kTestImage exists. error() says why not.
  explicit PodmanEngine(const std::string& dir) : dir_(dir) {
    using namespace std::chrono_literals;
    if (!sh_ok("command -v podman && command -v docker")) {
      error_ = "podman or the docker CLI is not installed (bash scripts/install-deps.sh)";
      return;
    }
    std::ofstream(dir_ + "/containers.conf") << "[containers]\ndefault_ulimits = []\n"
                                                "[engine]\ncgroup_manager = \"cgroupfs\"\n"
                                                "runtime = \"runc\"\n";
    const std::string sock = dir_ + "/podman.sock";
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open((dir_ + "/podman.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::setpgid(0, 0);
      ::setenv("CONTAINERS_CONF", (dir_ + "/containers.conf").c_str(), 1);
      const std::string uri = "unix://" + sock;
      ::execlp("podman", "podman", "system", "service", "--time=0", uri.c_str(),
               static_cast<char*>(nullptr));
      ::_exit(127);
    }
    host_ = "unix://" + sock;
    ::setenv("DOCKER_HOST", host_.c_str(), 1);
    std::string out;
    bool up = false;
    for (int i = 0; i < 400 && !up; ++i) {
      std::this_thread::sleep_for(50ms);
      up = std::filesystem::exists(sock) && sh_ok("docker image ls -q", &out);
    }
    if (!up) {
      error_ = "podman's service did not come up: " + out + slurp(dir_ + "/podman.log");
      return;
    }
    if (!sh_ok(std::string("docker image inspect ") + kTestImage + " >/dev/null")) import_image();
  }
  ~PodmanEngine() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      for (int i = 0; i < 100; ++i) {
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
      }
    }
    ::unsetenv("DOCKER_HOST");
  }
  PodmanEngine(const PodmanEngine&) = delete;
  PodmanEngine& operator=(const PodmanEngine&) = delete;

  const std::string& error() const { return error_; }
  const std::string& host() const { return host_; }

  // Containers (any state) labelled with launch's pid `pid`.
  std::vector<std::string> containers_of(pid_t pid) const {
    std::string out;
    sh_ok("docker ps -a -q --filter label=" + std::string(kPidLabel) + "=" + std::to_string(pid),
          &out);
    std::vector<std::string> ids;
    size_t start = 0;
    while (start < out.size()) {
      size_t nl = out.find('\n', start);
      if (nl == std::string::npos) nl = out.size();
      if (nl > start) ids.push_back(out.substr(start, nl - start));
      start = nl + 1;
    }
    return ids;
  }
  // Removes them (after a failed check, so the next test starts clean).
  void remove_containers_of(pid_t pid) const {
    for (const auto& id : containers_of(pid)) sh_ok("docker rm -f " + id);
  }

 private:
  static std::string slurp(const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // A root of busybox-static and its applet links, as an image whose PATH
  // finds them.
  void import_image() {
    namespace fs = std::filesystem;
    const std::string root = dir_ + "/rootfs";
    for (const char* d : {"/bin", "/tmp", "/etc", "/home/build", "/var/cache/melange"})
      fs::create_directories(root + d);
    std::error_code ec;
    fs::copy_file("/bin/busybox", root + "/bin/busybox", ec);
    if (ec) {
      error_ = "no /bin/busybox to build the test image from (apt-get install busybox-static)";
      return;
    }
    std::string list;
    sh_ok("/bin/busybox --list", &list);
    size_t start = 0;
    while (start < list.size()) {
      size_t nl = list.find('\n', start);
      if (nl == std::string::npos) nl = list.size();
      const std::string applet = list.substr(start, nl - start);
      if (!applet.empty() && applet != "busybox")
        fs::create_symlink("busybox", root + "/bin/" + applet, ec);
      start = nl + 1;
    }
    std::string out;
    if (!sh_ok("tar -C '" + root +
                   "' -c . | docker import --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' - " +
                   kTestImage,
               &out)) {
      error_ = "docker import of the busybox image failed: " + out;
    }
    fs::remove_all(root, ec);
  }

  std::string dir_, host_, error_;
  pid_t pid_ = -1;
};

}  // namespace cachefs_test

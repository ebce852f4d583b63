// The docker runner: the build's steps run in one long-lived container of the
// user's image, started with the real `docker` CLI (DOCKER_HOST, contexts and
// the rest of its environment honoured) — `docker run -d` of a shell that only
// waits, one `docker exec` per step, `docker rm -f` at the end. The workspace
// is a bind volume at /home/build and the build's cachefs mount (passthrough,
// allow_other) one at /var/cache/melange, so cache writes persist.
//
// Nothing is left behind: finish() removes the container on every way out; a
// watchdog process (its own session) removes it if launch is killed with
// SIGKILL; and every container is labelled with its owner (boot id, pid
// namespace, pid, start time), so a later launch removes any whose owner is
// gone (the watchdog killed too, a reboot).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "runners/runner.h"

namespace cachefs::runners {

struct DockerSpec {
  std::string image;      // required
  std::string workspace;  // host directory bound read-write at /home/build
  std::string cache;      // host path (the cachefs mount) bound at /var/cache/melange; may be empty
  std::string cpus;       // Kubernetes-style CPU quantity ("2", "0.5", "500m"); empty: no limit
  std::string memory;     // size ("4Gi", "512Mi", "2G", bytes); empty: no limit
  // How long one docker call of the set-up (probe, image check, run) may take.
  std::chrono::milliseconds timeout = std::chrono::seconds(30);
};

// Labels on every container launch starts: the owner ("<boot id>/<pid ns
// inode>/<pid>/<start time>", for the clean-up of a dead launch's containers)
// and launch's pid (for people and tests filtering with `docker ps`).
inline constexpr const char* kOwnerLabel = "cachefs.launch.owner";
inline constexpr const char* kPidLabel = "cachefs.launch.pid";

// docker's --cpus value for a CPU quantity ("500m" -> "0.5"); throws UsageError
// naming package.resources.cpu.
std::string docker_cpus(const std::string& quantity);
// docker's --memory value (bytes) for a size ("4Gi" -> "4294967296"); throws
// UsageError naming package.resources.memory.
std::string docker_memory(const std::string& size);

class DockerRunner : public Runner {
 public:
  // Checks what can be checked without the engine; throws UsageError (no
  // docker CLI in PATH, no --image, a bad resource value, no workspace).
  explicit DockerRunner(DockerSpec spec);
  ~DockerRunner() override;
  DockerRunner(const DockerRunner&) = delete;
  DockerRunner& operator=(const DockerRunner&) = delete;

  // Probes the engine (one clear UsageError if unreachable or the image is
  // missing), removes containers of dead launches, starts the container.
  void start(const LineSink& line, const StopCheck& stop) override;
  int run(const std::string& script, const std::string& workdir, const Env& env,
          const LineSink& line, const StopCheck& stop) override;
  // Removes the container (and stops the watchdog). Idempotent, never throws.
  void finish() override;

  // The container's name ("cachefs-launch-<pid>-<random>").
  const std::string& container() const { return name_; }
  // The `docker exec` command line of one step.
  std::vector<std::string> exec_command(const std::string& script, const std::string& workdir,
                                        const Env& env) const;

 private:
  struct Result {
    int status = -1;
    bool timed_out = false;
    std::string out, err;
    bool ok() const;
    std::string message() const;  // docker's last line of stderr, or what happened
  };
  Result docker(std::vector<std::string> args, std::chrono::milliseconds timeout,
                const StopCheck& stop = nullptr) const;
  std::string engine() const;  // "DOCKER_HOST=..." or how the CLI picks its engine
  void remove_orphans(const LineSink& line);
  void start_watchdog();

  DockerSpec spec_;
  std::string docker_;
  Env env_;  // launch's environment, for the CLI
  std::string name_, owner_;
  bool created_ = false;  // docker run was attempted: finish() removes name_
  pid_t watchdog_ = -1;
  int watchdog_pipe_ = -1;
};

}  // namespace cachefs::runners

#include "runners/qemu.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "runners/initramfs.h"
#include "runners/process.h"

namespace cachefs::runners {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The 9p message size: the most Linux's virtio transport takes (125 pages).
constexpr const char* kMsize = "512000";

// The guest's /init (busybox sh, PID 1). It loads the modules, finds the two
// ports the host named, mounts the root overlay, the workspace and the cache,
// says "ready" and then runs `run N` (the host's /ctl/N.sh) and `halt`
// commands from the control port: a step's stdout goes to the control port,
// its stderr to the other, and "<RS><token> <status>" ends the step on both.
constexpr const char* kInit = R"SH(#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
TOKEN= CACHE=none MSIZE=512000 PORTS=
for a in $(cat /proc/cmdline); do
  case $a in
    launch.token=*) TOKEN=${a#*=} ;;
    launch.cache=*) CACHE=${a#*=} ;;
    launch.msize=*) MSIZE=${a#*=} ;;
  esac
done
die() {
  echo "launch-init: $*" >/dev/console
  [ -n "$PORTS" ] && printf '\036%s error %s\n' "$TOKEN" "$*" >&3
  sync
  poweroff -f
  sleep 10
}
for m in $(cat /lib/modules/order); do
  insmod /lib/modules/$m.ko || die "cannot load the kernel module $m"
done
CTL= ERR= i=0
while [ $i -lt 500 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] || continue
    case $(cat "$p/name") in
      launch.ctl) CTL=/dev/${p##*/} ;;
      launch.err) ERR=/dev/${p##*/} ;;
    esac
  done
  [ -n "$CTL" ] && [ -n "$ERR" ] && [ -c "$CTL" ] && [ -c "$ERR" ] && break
  i=$((i + 1))
  usleep 10000
done
[ -n "$CTL" ] && [ -n "$ERR" ] || die "the control ports did not appear"
exec 3<>"$CTL" 4>"$ERR"
PORTS=1
P9="trans=virtio,version=9p2000.L,msize=$MSIZE"
R=/newroot
mkdir -p /lower /upper /ctl $R
mount -t 9p -o "$P9,cache=loose,ro" root /lower || die "cannot mount the root over 9p"
mount -t tmpfs -o mode=0755 upper /upper && mkdir -p /upper/u /upper/w
mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w root $R ||
  die "cannot mount the root overlay"
mount -t 9p -o "$P9,ro" ctl /ctl || die "cannot mount the control directory over 9p"
for d in proc sys dev tmp run home/build var/cache/melange; do
  [ -d $R/$d ] || mkdir -p $R/$d || die "cannot create /$d in the root"
done
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t tmpfs -o mode=1777 tmp $R/tmp
mount -t tmpfs -o mode=0755 run $R/run
mount -t 9p -o "$P9,cache=mmap" ws $R/home/build || die "cannot mount the workspace over 9p"
# The cache: loose caching over 9p is safe (the discard mount is this build's
# alone) and saves a round trip per lookup, which TCG makes expensive.
case $CACHE in
  9p) mount -t 9p -o "$P9,cache=loose" cache $R/var/cache/melange ;;
  virtiofs) mount -t virtiofs cache $R/var/cache/melange ;;
  *) true ;;
esac || die "cannot mount the cache over $CACHE"
hostname launch
# The network: qemu's user-mode NAT (the host is 10.0.2.2, its DNS proxy 10.0.2.3).
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
  ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
  rm -f $R/etc/resolv.conf && echo "nameserver 10.0.2.3" >$R/etc/resolv.conf
fi
echo launch >$R/etc/hostname 2>/dev/null
printf '\036%s ready\n' "$TOKEN" >&3
while read -r cmd arg <&3; do
  case $cmd in
    run)
      setsid sh "/ctl/$arg.sh" </dev/null >&3 2>&4 &
      pid=$!
      wait $pid
      st=$?
      kill -9 -$pid 2>/dev/null
      sync
      printf '\036%s %s\n' "$TOKEN" "$st" >&4
      printf '\036%s %s\n' "$TOKEN" "$st" >&3
      ;;
    halt) break ;;
  esac
done
sync
poweroff -f
)SH";

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string env_or(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v != nullptr && *v ? v : fallback;
}

bool executable(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

std::string tail_of(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  std::string l;
  while (std::getline(in, l)) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    if (!l.empty()) all.push_back(l);
  }
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
    out += "\n  " + all[i];
  }
  return out;
}

// Waits up to `limit` for `pid` to exit; true if it did (reaped).
bool wait_exit(pid_t pid, std::chrono::milliseconds limit) {
  const auto end = Clock::now() + limit;
  do {
    int st;
    const pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    std::this_thread::sleep_for(10ms);
  } while (Clock::now() < end);
  return false;
}

// SIGTERM to the process group, SIGKILL after `grace`; reaped.
void stop_process(pid_t& pid, std::chrono::milliseconds grace) {
  if (pid <= 0) return;
  ::kill(-pid, SIGTERM);
  if (!wait_exit(pid, grace)) {
    ::kill(-pid, SIGKILL);
    wait_exit(pid, 5s);
  }
  ::kill(-pid, SIGKILL);  // whatever else was in its group
  pid = -1;
}

int connect_unix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string random_token() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}", rd(), rd());
}

}  // namespace

bool qemu_use_virtiofs() {
  return env_or("QEMU_USE_VIRTIOFS") == "1";
}

std::vector<std::string> qemu_cache_mount_args() {
  if (qemu_use_virtiofs()) return {};  // passthrough: virtiofsd serves it, writes persist
  // 9p: the build may write, nothing persists (launch reports what went).
  return {"--write-mode", "discard"};
}

std::string find_virtiofsd() {
  if (std::string p = env_or("QEMU_VIRTIOFS_PATH"); !p.empty()) {
    if (!executable(p)) {
      throw UsageError::make(
          "QEMU_VIRTIOFS_PATH '{}': no such executable (QEMU_USE_VIRTIOFS=1 needs "
          "virtiofsd: apt-get install qemu-system-common, or unset QEMU_USE_VIRTIOFS "
          "for 9p)",
          p);
    }
    return p;
  }
  for (const char* p : {"/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"}) {
    if (executable(p)) return p;
  }
  std::string p = find_in_path("virtiofsd");
  if (p.empty()) {
    throw UsageError(
        "QEMU_USE_VIRTIOFS=1 but virtiofsd is not in /usr/libexec, /usr/lib/qemu or PATH "
        "(apt-get install qemu-system-common, set QEMU_VIRTIOFS_PATH, or unset "
        "QEMU_USE_VIRTIOFS for 9p)");
  }
  return p;
}

uint64_t parse_memory_mib(const std::string& value, const std::string& what) {
  size_t end = 0;
  while (end < value.size() &&
         (std::isdigit(static_cast<unsigned char>(value[end])) || value[end] == '.')) {
    ++end;
  }
  const std::string num = value.substr(0, end), unit = value.substr(end);
  double n = 0;
  try {
    size_t used = 0;
    n = num.empty() ? -1 : std::stod(num, &used);
    if (used != num.size()) n = -1;
  } catch (const std::exception&) {
    n = -1;
  }
  static const std::pair<const char*, double> units[] = {{"", 1.0},
                                                         {"Ki", 1024.0},
                                                         {"Mi", 1048576.0},
                                                         {"Gi", 1073741824.0},
                                                         {"Ti", 1099511627776.0},
                                                         {"K", 1e3},
                                                         {"M", 1e6},
                                                         {"G", 1e9},
                                                         {"T", 1e12},
                                                         {"k", 1e3},
                                                         {"KiB", 1024.0},
                                                         {"MiB", 1048576.0},
                                                         {"GiB", 1073741824.0}};
  double mult = -1;
  for (const auto& [u, m] : units) {
    if (unit == u) mult = m;
  }
  if (n <= 0 || mult < 0) {
    throw UsageError::make("{} '{}': expected a size such as 512Mi, 4Gi or 2G", what, value);
  }
  const double mib = n * mult / 1048576.0;
  const auto r = static_cast<uint64_t>(mib + 0.999999);
  if (r < 128) throw UsageError::make("{} '{}': the VM needs at least 128Mi", what, value);
  return r;
}

unsigned parse_cpus(const std::string& value, const std::string& what) {
  std::string v = value;
  bool milli = !v.empty() && v.back() == 'm';
  if (milli) v.pop_back();
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 9) {
    throw UsageError::make("{} '{}': expected a number of CPUs (2, or 1500m)", what, value);
  }
  unsigned long n = std::stoul(v);
  if (milli) n = (n + 999) / 1000;
  if (n == 0 || n > 255) throw UsageError::make("{} '{}': expected 1 to 255 CPUs", what, value);
  return static_cast<unsigned>(n);
}

QemuRunner::QemuRunner(RunnerSpec spec) : spec_(std::move(spec)) {
  qemu_ = env_or("QEMU_BINARY", find_in_path("qemu-system-x86_64"));
  if (qemu_.empty() || !executable(qemu_)) {
    throw UsageError("qemu-system-x86_64 not found in PATH: apt-get install qemu-system-x86");
  }
  if (spec_.qemu_accel.empty()) spec_.qemu_accel = "auto";
  if (spec_.qemu_accel != "auto" && spec_.qemu_accel != "kvm" && spec_.qemu_accel != "tcg") {
    throw UsageError::make("--qemu-accel {}: expected kvm, tcg or auto", spec_.qemu_accel);
  }
  std::error_code ec;
  if (!spec_.rootfs.empty() && !fs::is_directory(spec_.rootfs, ec)) {
    throw UsageError::make("--rootfs '{}' is not a directory", spec_.rootfs);
  }
  if (!fs::is_directory(spec_.workspace, ec)) {
    throw UsageError::make("workspace '{}' is not a directory", spec_.workspace);
  }
  cpus_ = spec_.cpus.empty() ? std::max(1u, std::thread::hardware_concurrency())
                             : parse_cpus(spec_.cpus, "cpus");
  memory_mib_ = spec_.memory.empty() ? 2048 : parse_memory_mib(spec_.memory, "memory");
  kernel_ = guest_kernel_from_env();
  virtiofs_ = qemu_use_virtiofs();
  if (virtiofs_) virtiofsd_ = find_virtiofsd();
  if (!is_static_elf("/bin/busybox")) {
    throw UsageError(
        "the qemu runner needs a static /bin/busybox for the guest: apt-get install "
        "busybox-static");
  }
  dir_ = spec_.work_dir + "/qemu";
  // Socket paths must fit sockaddr_un.
  if (dir_.size() + 16 > sizeof(sockaddr_un::sun_path)) {
    throw UsageError::make(
        "the work directory '{}' is too long for qemu's sockets (set TMPDIR to a "
        "shorter path)",
        spec_.work_dir);
  }
}

QemuRunner::~QemuRunner() {
  finish();
}

std::string QemuRunner::diagnostics() const {
  std::string d;
  const std::string con = tail_of(dir_ + "/console.log", 8);
  if (!con.empty()) d += "\nguest console:" + con;
  const std::string q = tail_of(dir_ + "/qemu.log", 5);
  if (!q.empty()) d += "\nqemu:" + q;
  if (virtiofs_) {
    const std::string v = tail_of(dir_ + "/virtiofsd.log", 5);
    if (!v.empty()) d += "\nvirtiofsd:" + v;
  }
  return d;
}

// KVM works if the guest kernel boots under it to its first panic ("no root")
// and powers off within a few seconds; where /dev/kvm hangs, it does not.
std::string QemuRunner::probe_accel() {
  if (spec_.qemu_accel != "auto") return spec_.qemu_accel;
  if (::access("/dev/kvm", R_OK | W_OK) != 0) return "tcg";
  SpawnOptions so;
  so.argv = {qemu_,
             "-accel",
             "kvm",
             "-cpu",
             "host",
             "-machine",
             "q35",
             "-m",
             "256",
             "-nodefaults",
             "-no-user-config",
             "-display",
             "none",
             "-no-reboot",
             "-kernel",
             kernel_.image,
             "-append",
             "console=ttyS0 panic=-1 root=/dev/launch-probe-none",
             "-serial",
             "null"};
  so.env = {{"PATH", "/usr/bin:/bin"}};
  const pid_t pid = spawn_logged(so, dir_ + "/kvm-probe.log");
  if (pid < 0) return "tcg";
  const auto end = Clock::now() + 4s;
  int st = 0;
  while (Clock::now() < end) {
    if (::waitpid(pid, &st, WNOHANG) == pid)
      return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "kvm" : "tcg";
    std::this_thread::sleep_for(20ms);
  }
  pid_t p = pid;
  stop_process(p, 100ms);
  return "tcg";
}

void QemuRunner::start(const LineSink& line, const StopCheck& stop) {
  std::error_code ec;
  fs::create_directories(dir_ + "/steps", ec);
  if (ec) throw std::runtime_error("cannot create " + dir_ + ": " + ec.message());
  token_ = random_token();
  const std::string initramfs = dir_ + "/initramfs.cpio";
  write_initramfs({"/bin/busybox", kernel_.modules_dir, kInit}, initramfs);

  accel_ = probe_accel();
  if (spec_.qemu_accel == "auto" && accel_ == "tcg" && ::access("/dev/kvm", F_OK) == 0) {
    line("KVM did not boot the guest within 4 s: using TCG (--qemu-accel tcg skips this check)",
         true);
  }
  if (stop && stop()) return;

  const std::string cache_mode = spec_.cache.empty() ? "none" : virtiofs_ ? "virtiofs" : "9p";
  if (virtiofs_ && !spec_.cache.empty()) {
    SpawnOptions vo;
    vo.argv = {virtiofsd_, "--socket-path=" + dir_ + "/vfs.sock",
               "-o",       "source=" + spec_.cache,
               "-o",       "cache=auto",
               "-o",       "xattr"};
    vo.env = {{"PATH", "/usr/sbin:/usr/bin:/sbin:/bin"}};
    virtiofsd_pid_ = spawn_logged(vo, dir_ + "/virtiofsd.log");
    if (virtiofsd_pid_ < 0)
      throw std::runtime_error("cannot start " + virtiofsd_ + ": " + std::strerror(errno));
    const auto end = Clock::now() + 10s;
    while (!fs::exists(dir_ + "/vfs.sock", ec)) {
      if (wait_exit(virtiofsd_pid_, 0ms)) {
        virtiofsd_pid_ = -1;
        throw std::runtime_error("virtiofsd exited before serving the cache:" +
                                 tail_of(dir_ + "/virtiofsd.log", 5));
      }
      if (Clock::now() > end) throw std::runtime_error("virtiofsd did not start within 10 s");
      std::this_thread::sleep_for(5ms);
    }
  }

  const std::string mem = std::to_string(memory_mib_);
  SpawnOptions qo;
  qo.argv = {qemu_,
             "-name",
             "launch",
             "-nodefaults",
             "-no-user-config",
             "-display",
             "none",
             "-no-reboot",
             "-accel",
             accel_,
             "-machine",
             "q35",
             "-cpu",
             accel_ == "kvm" ? "host" : "max",
             "-smp",
             std::to_string(cpus_),
             "-m",
             mem,
             "-kernel",
             kernel_.image,
             "-initrd",
             initramfs,
             "-append",
             "console=ttyS0 quiet panic=-1 launch.token=" + token_ + " launch.cache=" + cache_mode +
                 " launch.msize=" + kMsize,
             "-chardev",
             "file,id=con,path=" + dir_ + "/console.log",
             "-serial",
             "chardev:con",
             "-device",
             "virtio-serial-pci,id=vser",
             "-chardev",
             "socket,id=ctl,path=" + dir_ + "/ctl.sock,server=on,wait=on",
             "-device",
             "virtserialport,bus=vser.0,chardev=ctl,name=launch.ctl",
             "-chardev",
             "socket,id=err,path=" + dir_ + "/err.sock,server=on,wait=on",
             "-device",
             "virtserialport,bus=vser.0,chardev=err,name=launch.err",
             "-netdev",
             "user,id=net",
             "-device",
             "virtio-net-pci,netdev=net",
             "-virtfs",
             "local,path=" + (spec_.rootfs.empty() ? std::string("/") : spec_.rootfs) +
                 ",mount_tag=root,security_model=none,readonly=on,multidevs=remap",
             "-virtfs",
             "local,path=" + spec_.workspace + ",mount_tag=ws,security_model=none,multidevs=remap",
             "-virtfs",
             "local,path=" + dir_ + "/steps,mount_tag=ctl,security_model=none,readonly=on"};
  if (cache_mode == "9p") {
    qo.argv.insert(qo.argv.end(),
                   {"-virtfs", "local,path=" + spec_.cache +
                                   ",mount_tag=cache,security_model=none,multidevs=remap"});
  } else if (cache_mode == "virtiofs") {
    qo.argv.insert(qo.argv.end(), {"-chardev", "socket,id=vfs,path=" + dir_ + "/vfs.sock",
                                   "-device", "vhost-user-fs-pci,chardev=vfs,tag=cache", "-object",
                                   "memory-backend-memfd,id=mem,size=" + mem + "M,share=on",
                                   "-numa", "node,memdev=mem"});
  }
  qo.env = {{"PATH", "/usr/bin:/bin"}};
  qemu_pid_ = spawn_logged(qo, dir_ + "/qemu.log");
  if (qemu_pid_ < 0)
    throw std::runtime_error("cannot start " + qemu_ + ": " + std::strerror(errno));

  // qemu waits for both ports' clients before it starts the guest.
  const auto connect_deadline = Clock::now() + 20s;
  for (auto [fd, name] :
       {std::pair<int*, const char*>{&ctl_fd_, "ctl.sock"}, {&err_fd_, "err.sock"}}) {
    while ((*fd = connect_unix(dir_ + "/" + name)) < 0) {
      if (wait_exit(qemu_pid_, 0ms)) {
        qemu_pid_ = -1;
        throw std::runtime_error("qemu exited before starting the guest:" + diagnostics());
      }
      if (Clock::now() > connect_deadline || (stop && stop())) {
        if (stop && stop()) return;
        throw std::runtime_error("qemu did not open its control socket within 20 s:" +
                                 diagnostics());
      }
      std::this_thread::sleep_for(5ms);
    }
  }
  std::string result;
  const Pump end = pump(false, line, stop, 300s, result);
  if (end == Pump::Stopped) return;
  if (end == Pump::Timeout)
    throw std::runtime_error("the VM did not come up within 300 s:" + diagnostics());
  if (end == Pump::VmGone)
    throw std::runtime_error("the VM stopped while booting:" + diagnostics());
  if (result != "ready") {
    throw std::runtime_error(
        "the VM could not start the build: " + result.substr(result.find(' ') + 1) + diagnostics());
  }
}

QemuRunner::Pump QemuRunner::pump(bool with_err, const LineSink& line, const StopCheck& stop,
                                  std::chrono::seconds limit, std::string& result) {
  const std::string marker = "\036" + token_ + " ";
  bool done[2] = {false, !with_err};
  const int fds[2] = {ctl_fd_, err_fd_};
  const auto deadline = Clock::now() + limit;
  // Emits the complete lines of pending_[i] before `upto`; with `all`, the
  // unterminated rest too (the step's last words before its marker).
  auto emit = [&](int i, size_t upto, bool all) {
    std::string& p = pending_[i];
    size_t start = 0, nl;
    while ((nl = p.find('\n', start)) != std::string::npos && nl < upto) {
      std::string_view l(p.data() + start, nl - start);
      if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
      line(l, i == 1);
      start = nl + 1;
    }
    if (all && start < upto) line(std::string_view(p.data() + start, upto - start), i == 1);
    p.erase(0, all ? upto : start);
  };
  while (!(done[0] && done[1])) {
    pollfd pfd[2] = {{done[0] ? -1 : fds[0], POLLIN, 0}, {done[1] ? -1 : fds[1], POLLIN, 0}};
    ::poll(pfd, 2, 50);
    for (int i = 0; i < 2; ++i) {
      if (done[i] || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      const ssize_t n = ::read(fds[i], buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        emit(i, pending_[i].size(), true);
        return Pump::VmGone;
      }
      pending_[i].append(buf, static_cast<size_t>(n));
      const size_t m = pending_[i].find(marker);
      if (m == std::string::npos) {
        emit(i, pending_[i].size(), false);
        continue;
      }
      const size_t eol = pending_[i].find('\n', m);
      if (eol == std::string::npos) {  // the marker's line is not complete yet
        emit(i, m, false);
        continue;
      }
      emit(i, m, true);  // pending_[i] now starts with the marker
      const size_t end = pending_[i].find('\n');
      if (i == 0) result = pending_[i].substr(marker.size(), end - marker.size());
      pending_[i].erase(0, end + 1);
      done[i] = true;
    }
    if (stop && stop()) return Pump::Stopped;
    if (Clock::now() > deadline) return Pump::Timeout;
  }
  return Pump::Done;
}

int QemuRunner::run(const std::string& script, const std::string& workdir, const Env& env,
                    const LineSink& line, const StopCheck& stop) {
  if (qemu_pid_ <= 0 || ctl_fd_ < 0) throw std::runtime_error("the VM is not running");
  // The step, as the guest's init runs it: exactly `env`, in the root.
  std::string sh = "exec /bin/busybox env -i";
  for (const auto& [k, v] : env) {
    sh += ' ';
    std::string kv = k;
    kv += '=';
    kv += v;
    sh += shell_quote(kv);
  }
  sh += " /bin/busybox chroot /newroot /bin/sh -c " + shell_quote(step_script(script, workdir)) +
        "\n";
  const std::string n = std::to_string(++steps_);
  {
    std::ofstream f(dir_ + "/steps/" + n + ".sh");
    f << sh;
    if (!f.flush()) throw std::runtime_error("cannot write the step to " + dir_ + "/steps");
  }
  const std::string cmd = "run " + n + "\n";
  if (::send(ctl_fd_, cmd.data(), cmd.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(cmd.size())) {
    throw std::runtime_error("the VM is gone:" + diagnostics());
  }
  std::string result;
  switch (pump(true, line, stop, std::chrono::hours(24 * 365), result)) {
    case Pump::Stopped:
      kill_vm();
      return SIGTERM;  // as waitpid reports a step killed by SIGTERM
    case Pump::VmGone:
    case Pump::Timeout:
      throw std::runtime_error("the VM stopped during the step:" + diagnostics());
    case Pump::Done:
      break;
  }
  // The guest's $? (0-255; 128+N for a signal): as waitpid reports an exit status.
  char* end = nullptr;
  const long st = std::strtol(result.c_str(), &end, 10);
  if (end == result.c_str() || *end != '\0' || st < 0 || st > 255) {
    throw std::runtime_error("the VM's init sent a bad status '" + result + "'");
  }
  return static_cast<int>(st) << 8;
}

void QemuRunner::kill_vm() {
  stop_process(qemu_pid_, 2s);
}

void QemuRunner::finish() {
  if (finished_) return;
  finished_ = true;
  if (qemu_pid_ > 0 && ctl_fd_ >= 0) {
    // A clean poweroff (sync first), then the hard way.
    const char halt[] = "halt\n";
    if (::send(ctl_fd_, halt, sizeof halt - 1, MSG_NOSIGNAL) == sizeof halt - 1 &&
        wait_exit(qemu_pid_, 5s)) {
      qemu_pid_ = -1;
    }
  }
  kill_vm();
  // virtiofsd ends when qemu disconnects; make sure.
  if (virtiofsd_pid_ > 0 && wait_exit(virtiofsd_pid_, 2s)) virtiofsd_pid_ = -1;
  stop_process(virtiofsd_pid_, 2s);
  for (int* fd : {&ctl_fd_, &err_fd_}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

}  // namespace cachefs::runners

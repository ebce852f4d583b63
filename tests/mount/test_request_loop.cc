// The daemon's request loop (fs/request_loop.h): one worker listens and
// busy-polls, the others wait in user space and take over when the listener is
// stuck on one request. What must hold: a request blocked inside the daemon does
// not hold up the others (unless --threads 1), an idle mount burns no CPU, and
// the loop without busy-polling serves and stops like the default one. Then the
// same over io_uring (fs/uring_loop.h): requests are served from the rings, a
// blocked one leaves its CPU served, and the daemon stops and dies cleanly.
//
// A request is made to block for as long as the test likes through the write
// lock protocol (store/object_store.h): a write to a deduplicated branch takes
// LOCK_SH on the backing file first, and waits while anyone holds LOCK_EX (as
// dedup or cachectl import do for a moment).
#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>
#include <vector>

#include "mount_fixture.h"

namespace cachefs_test {
namespace {

using namespace std::chrono_literals;

// Keeps the calling thread on one CPU (-1: any), so that its requests go to
// that CPU's io_uring queue.
void PinTo(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  EXPECT_SYS_OK(::sched_setaffinity(0, sizeof set, &set));
}

class RequestLoopTest : public MountTest {
 protected:
  // Starts a write to `name` through the mount that blocks in the daemon until
  // the returned lock descriptor is closed. `done` turns true when it returns.
  // The file is looked up through the mount before it is locked; the writer
  // runs on CPU `cpu` (-1: any).
  Fd BlockAWrite(const std::string& name, std::atomic<bool>& done, std::thread& writer,
                 int cpu = -1) {
    EXPECT_TRUE(WriteFile(InBacking(0, name), "before"));
    EXPECT_EQ(ReadFile(Mnt(name)), "before");
    Fd lock(::open(InBacking(0, name).c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_SYS_OK(::flock(lock.get(), LOCK_EX));
    writer = std::thread([this, name, &done, cpu] {
      PinTo(cpu);
      Fd fd(::open(Mnt(name).c_str(), O_WRONLY | O_CLOEXEC));
      EXPECT_TRUE(fd.valid()) << ErrnoName(errno);
      EXPECT_EQ(::pwrite(fd.get(), "after!", 6, 0), 6) << ErrnoName(errno);
      done = true;
    });
    std::this_thread::sleep_for(300ms);
    EXPECT_FALSE(done.load()) << "the write did not wait for the lock: the test proves nothing";
    return lock;
  }

  // Lookups of names that do not exist (never cached: negative timeout 0), each
  // a round trip, and a file created and read back; run on another thread.
  std::future<bool> OtherRequests(int cpu = -1) {
    return std::async(std::launch::async, [this, cpu] {
      PinTo(cpu);
      struct stat st {};
      for (int i = 0; i < 50; ++i) {
        if (::lstat(Mnt("absent-" + std::to_string(i)).c_str(), &st) == 0 || errno != ENOENT) {
          return false;
        }
      }
      return WriteFile(Mnt("other"), "other") && ReadFile(Mnt("other")) == "other";
    });
  }

  // CPU time (user + system) the daemon has used, in clock ticks.
  long DaemonTicks() {
    std::ifstream in("/proc/" + std::to_string(mount().pid()) + "/stat");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Fields after the command name, which is in parentheses and may hold spaces.
    std::istringstream rest(all.substr(all.rfind(')') + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stol(field);
      if (i == 15) stime = std::stol(field);
    }
    return utime + stime;
  }
};

TEST_F(RequestLoopTest, ARequestBlockedInTheDaemonDoesNotHoldUpOthers) {
  ASSERT_TRUE(StartMount(SingleArgs()));
  std::atomic<bool> done{false};
  std::thread writer;
  Fd lock = BlockAWrite("held", done, writer);
  std::future<bool> others = OtherRequests();
  // Served by another worker once the watch sees the listener stuck (200 µs,
  // seen within 2.2 ms).
  ASSERT_EQ(others.wait_for(10s), std::future_status::ready)
      << "other requests waited for the blocked one";
  EXPECT_TRUE(others.get());
  EXPECT_FALSE(done.load());
  lock.reset();
  writer.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(ReadFile(InBacking(0, "held")), "after!");
  ASSERT_TRUE(mount().Stop());
}

// The same with one worker: everything waits for the blocked request, which is
// what --threads 1 means (and shows the test above can fail).
TEST_F(RequestLoopTest, WithOneWorkerABlockedRequestHoldsUpTheRest) {
  if (OverIoUring()) GTEST_SKIP() << "over io_uring each CPU has its own threads (see below)";
  std::vector<std::string> args = SingleArgs();
  args.push_back("--threads=1");
  ASSERT_TRUE(StartMount(args));
  std::atomic<bool> done{false};
  std::thread writer;
  Fd lock = BlockAWrite("held", done, writer);
  std::future<bool> others = OtherRequests();
  EXPECT_EQ(others.wait_for(500ms), std::future_status::timeout);
  lock.reset();
  writer.join();
  ASSERT_EQ(others.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(others.get());
  EXPECT_EQ(ReadFile(InBacking(0, "held")), "after!");
  ASSERT_TRUE(mount().Stop());
}

// Several clients at once (a parallel build): the listener finds requests
// queued and calls more workers to listen beside it (counted in the mount's
// stats), so the load spreads over workers instead of one serving everything
// in turn.
TEST_F(RequestLoopTest, ParallelClientsCallMoreListeners) {
  if (OverIoUring()) GTEST_SKIP() << "over io_uring no listener reads /dev/fuse";
  ASSERT_TRUE(StartMount(SingleArgs()));
  const auto called = [this] { return Counter(Stats(), "workers_called"); };
  const uint64_t before = called();
  ASSERT_NE(before, UINT64_MAX) << "no workers_called in the stats";
  // Clients as light as can be (paths made beforehand), until a call is seen
  // or 10 s have passed.
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < 16; ++c) {
    clients.emplace_back([this, c, &stop] {
      std::vector<std::string> paths;
      for (int i = 0; i < 50; ++i) {
        paths.push_back(Mnt("absent-" + std::to_string(c) + "-" + std::to_string(i)));
      }
      struct stat cst {};
      for (size_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        ::lstat(paths[i % paths.size()].c_str(), &cst);
      }
    });
  }
  uint64_t now = before;
  for (int i = 0; i < 200 && now <= before; ++i) {
    std::this_thread::sleep_for(50ms);
    now = called();
  }
  stop = true;
  for (std::thread& t : clients) t.join();
  EXPECT_GT(now, before) << "16 clients at once never called a second listener in 10 s";
  ASSERT_TRUE(mount().Stop());
}

// Busy-polling lasts only while requests keep coming: after a burst, an idle
// mount sleeps (no spinning listener, no watch looking every 200 µs).
TEST_F(RequestLoopTest, AnIdleMountUsesNoCpu) {
  ASSERT_TRUE(StartMount(SingleArgs()));
  struct stat st {};
  for (int i = 0; i < 2000; ++i) ::lstat(Mnt("absent-" + std::to_string(i % 100)).c_str(), &st);
  std::this_thread::sleep_for(200ms);
  const long before = DaemonTicks();
  std::this_thread::sleep_for(2s);
  const long used = DaemonTicks() - before;
  // A listener spinning on would use ~200 ticks here, a watch that never sleeps
  // several; an idle daemon none.
  EXPECT_LE(used, 2) << "ticks of CPU in 2 s of idleness (" << sysconf(_SC_CLK_TCK) << "/s)";
  ASSERT_TRUE(mount().Stop());
}

// The stats say how the listener came by its requests, so that an operator can
// tell whether --busy-poll fits the host: a client that keeps asking is caught
// while the listener polls; without polling every request that was not already
// waiting comes after a sleep. Each caught or slept-for request is counted once
// in the histogram of how long after the previous one it came.
TEST_F(RequestLoopTest, TheStatsSayHowTheListenerCameByItsRequests) {
  if (OverIoUring()) GTEST_SKIP() << "over io_uring no listener reads /dev/fuse";
  struct Seen {
    uint64_t window, waiting, caught, slept, gaps = 0;
  };
  const auto seen = [this] {
    const std::string j = Stats();
    Seen s{Counter(j, "busy_poll_us"), Counter(j, "found_waiting"), Counter(j, "caught_polling"),
           Counter(j, "after_sleep")};
    for (const char* b : {"up_to_25us", "up_to_50us", "up_to_100us", "up_to_200us", "up_to_500us",
                          "up_to_1000us", "longer"}) {
      const uint64_t v = Counter(j, b);
      EXPECT_NE(v, UINT64_MAX) << "no " << b << " in " << j;
      s.gaps += v;
    }
    EXPECT_NE(s.caught, UINT64_MAX) << j;
    return s;
  };
  // 2,000 names never looked up before: one LOOKUP each, one after the other.
  const auto burst = [this](const std::string& prefix) {
    struct stat st {};
    for (int i = 0; i < 2000; ++i) ::lstat(Mnt(prefix + std::to_string(i)).c_str(), &st);
  };
  size_t started = 0;
  for (const unsigned window : {1000u, 0u}) {
    SCOPED_TRACE("--busy-poll " + std::to_string(window));
    std::vector<std::string> args = SingleArgs();
    args.push_back("--busy-poll=" + std::to_string(window));
    ASSERT_TRUE(StartMount(args));
    const Seen a = seen();
    EXPECT_EQ(a.window, window);
    burst("absent-");
    const Seen b = seen();
    // Every request the listener read: the 2,000 LOOKUPs, the stats, a few the
    // kernel sends of its own accord.
    const uint64_t got = (b.waiting - a.waiting) + (b.caught - a.caught) + (b.slept - a.slept);
    EXPECT_GE(got, 2000u);
    EXPECT_LE(got, 2100u);
    // Read on the same thread as it is counted: the histogram matches exactly.
    EXPECT_EQ(b.gaps, b.caught + b.slept);
    // How many of each depends on the machine's load (a listener or client
    // descheduled finds its request waiting, or comes too late); which kinds
    // there are does not.
    if (window == 0) {
      EXPECT_EQ(b.caught, 0u) << "caught while polling, with polling off";
      EXPECT_GT(b.slept, a.slept);
    } else {
      EXPECT_GT(b.caught, a.caught) << "a lone client's requests, and none caught by a 1 ms window";
    }
    ASSERT_TRUE(mount(started++).Stop());
  }
}

// The watch looks every 2 ms (RequestLoop::kWatchPeriod), and once more 200 µs
// later when nobody was listening: at most 1,000 looks in a second, whatever
// the load (a loaded machine only makes them rarer). Looking every 200 µs, as
// it did, made 3,405 in this test on the 2-vCPU test machine, each a timer
// wake-up on a CPU the clients need.
TEST_F(RequestLoopTest, TheWatchLooksAtMostEveryTwoMilliseconds) {
  if (OverIoUring()) GTEST_SKIP() << "over io_uring no listener reads /dev/fuse";
  std::vector<std::string> args = SingleArgs();
  args.push_back("--busy-poll=1000");
  ASSERT_TRUE(StartMount(args));
  const uint64_t before = Counter(Stats(), "watch_looks");
  ASSERT_NE(before, UINT64_MAX) << Stats();
  const auto start = std::chrono::steady_clock::now();
  struct stat st {};
  uint64_t requests = 0;
  while (std::chrono::steady_clock::now() - start < 1s) {
    ::lstat(Mnt("absent-" + std::to_string(requests++)).c_str(), &st);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const uint64_t looks = Counter(Stats(), "watch_looks") - before;
  EXPECT_GT(requests, 100u) << "hardly a burst";
  EXPECT_LE(static_cast<double>(looks), 1000 * seconds + 20)
      << looks << " looks in " << seconds << " s of " << requests << " requests";
  ASSERT_TRUE(mount().Stop());
}

// Without busy-polling the loop sleeps in poll(2) between requests; it must
// serve, overlap blocked requests and stop the same way.
TEST_F(RequestLoopTest, WithoutBusyPollingRequestsAreServedAndTheDaemonStops) {
  std::vector<std::string> args = SingleArgs();
  args.push_back("--busy-poll=0");
  ASSERT_TRUE(StartMount(args));
  ASSERT_SYS_OK(::mkdir(Mnt("d").c_str(), 0755));
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(WriteFile(Mnt("d/f" + std::to_string(i)), std::to_string(i)));
  }
  ASSERT_SYS_OK(::rename(Mnt("d/f0").c_str(), Mnt("d/g0").c_str()));
  EXPECT_EQ(ReadFile(Mnt("d/g0")), "0");
  EXPECT_EQ(ReadFile(InBacking(0, "d/f99")), "99");
  std::atomic<bool> done{false};
  std::thread writer;
  Fd lock = BlockAWrite("held", done, writer);
  std::future<bool> others = OtherRequests();
  ASSERT_EQ(others.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(others.get());
  lock.reset();
  writer.join();
  ASSERT_TRUE(mount().Stop(SIGINT));
}

// fusermount3 -u while workers wait, listen and watch: the daemon notices and
// exits 0.
TEST_F(RequestLoopTest, UnmountedFromOutsideTheDaemonExits) {
  ASSERT_TRUE(StartMount(SingleArgs()));
  ASSERT_TRUE(WriteFile(Mnt("f"), "x"));
  const CommandResult r = RunCommand({"fusermount3", "-u", Mnt()});
  ASSERT_TRUE(r.Exited0()) << r.Describe();
  for (int i = 0; i < 100 && !mount().EndedUnexpectedly(); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(mount().running()) << "the daemon is still running after its mount went";
  EXPECT_TRUE(WIFEXITED(mount().last_status()) && WEXITSTATUS(mount().last_status()) == 0)
      << "status " << mount().last_status();
}

// ---------------------------------------------------------------------------
// FUSE over io_uring

constexpr const char* kUringSwitch = "/sys/module/fuse/parameters/enable_uring";

// The first CPU this process may run on.
int FirstCpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) return c;
  }
  return 0;
}

class UringTest : public RequestLoopTest {
 protected:
  void SetUp() override {
    if (OverIoUring()) GTEST_SKIP() << "these choose the transport themselves";
    if (::access(kUringSwitch, F_OK) != 0) {
      GTEST_SKIP() << "this kernel has no FUSE over io_uring (CONFIG_FUSE_IO_URING, 6.14+)";
    }
  }
  std::vector<std::string> UringArgs(const std::string& mode = "on") const {
    std::vector<std::string> args = SingleArgs();
    args.push_back("--io-uring=" + mode);
    return args;
  }
  uint64_t Served() const { return Counter(Stats(), "uring_served"); }
  // A little of everything, each a request or more.
  void Exercise(const std::string& dir) {
    ASSERT_SYS_OK(::mkdir(Mnt(dir).c_str(), 0755));
    struct stat st {};
    for (int i = 0; i < 100; ++i) {
      EXPECT_EQ(::lstat(Mnt(dir + "/absent-" + std::to_string(i)).c_str(), &st), -1);
    }
    ASSERT_TRUE(WriteFile(Mnt(dir + "/small"), "small"));
    EXPECT_EQ(ReadFile(Mnt(dir + "/small")), "small");
    ASSERT_SYS_OK(::rename(Mnt(dir + "/small").c_str(), Mnt(dir + "/renamed").c_str()));
    EXPECT_EQ(ListDirSet(Mnt(dir)), (std::set<std::string>{"renamed"}));
  }
};

// --io-uring on switches the kernel's io_uring on if it was off, and then
// requests of every kind are served from the rings: writes (their data handed
// over where the kernel put it), reads (read straight into the ring's buffer),
// larger than one request; a create the kernel then writes itself
// (passthrough, whose reply is patched on the way out); xattrs, names.
TEST_F(UringTest, OnServesEveryKindOfRequestFromTheRings) {
  ASSERT_TRUE(StartMount(UringArgs()));
  EXPECT_EQ(ReadFile(kUringSwitch).value_or(""), "Y\n");
  const uint64_t before = Served();
  ASSERT_NE(before, UINT64_MAX) << "no uring_served in the stats";
  Exercise("d");
  const std::string big = Pattern(3 << 20, 7);
  ASSERT_TRUE(WriteFile(Mnt("d/big"), big));
  EXPECT_EQ(ReadFile(InBacking(0, "d/big")), big);
  EXPECT_EQ(ReadFile(Mnt("d/big")), big);
  const uint64_t kernel_written = Counter(Stats(), "kernel_written");
  ASSERT_TRUE(WriteFile(Mnt("d/tar-made"), big, O_WRONLY | O_CREAT | O_EXCL, 0644));
  EXPECT_EQ(Counter(Stats(), "kernel_written"), kernel_written + 1) << "no passthrough handle";
  EXPECT_EQ(ReadFile(InBacking(0, "d/tar-made")), big);
  ASSERT_SYS_OK(::setxattr(Mnt("d/big").c_str(), "user.k", "value", 5, 0));
  char v[8] = {};
  EXPECT_EQ(::getxattr(Mnt("d/big").c_str(), "user.k", v, sizeof v), 5);
  EXPECT_STREQ(v, "value");
  EXPECT_GE(Served() - before, 100u + 3 * 8) << Stats();
  EXPECT_EQ(Counter(Stats(), "busy_poll_us"), 0u) << "the listener polls no more over io_uring";
  ASSERT_TRUE(mount().Stop());
  EXPECT_NE(mount().Log().find("io_uring: serving requests"), std::string::npos) << mount().Log();
}

// off: nothing comes from the rings even with the kernel's switch on; auto:
// the rings as soon as the kernel offers them.
TEST_F(UringTest, OffAndAutoFollowTheFlagAndTheKernel) {
  ASSERT_TRUE(StartMount(UringArgs()));  // the switch is on from here
  ASSERT_TRUE(mount().Stop());
  ASSERT_TRUE(StartMount(UringArgs("off")));
  Exercise("off");
  EXPECT_EQ(Served(), 0u);
  ASSERT_TRUE(mount(1).Stop());  // the second daemon started
  ASSERT_TRUE(StartMount(UringArgs("auto")));
  Exercise("auto");
  EXPECT_GE(Served(), 100u);
  ASSERT_TRUE(mount(2).Stop());
}

// The requests of one CPU go to its queue: while one of them is blocked in the
// daemon, another thread of that queue serves the rest.
TEST_F(UringTest, ABlockedRequestLeavesItsCpuServed) {
  ASSERT_TRUE(StartMount(UringArgs()));
  const int cpu = FirstCpu();
  std::atomic<bool> done{false};
  std::thread writer;
  Fd lock = BlockAWrite("held", done, writer, cpu);
  const uint64_t before = Served();
  std::future<bool> others = OtherRequests(cpu);
  ASSERT_EQ(others.wait_for(10s), std::future_status::ready)
      << "other requests waited for the blocked one";
  EXPECT_TRUE(others.get());
  EXPECT_GE(Served() - before, 50u);
  EXPECT_FALSE(done.load());
  lock.reset();
  writer.join();
  EXPECT_EQ(ReadFile(InBacking(0, "held")), "after!");
  ASSERT_TRUE(mount().Stop());
}

// With one thread per queue (--threads 1) the same requests wait: what shows
// the test above can fail.
TEST_F(UringTest, WithOneThreadPerQueueABlockedRequestHoldsUpItsCpu) {
  std::vector<std::string> args = UringArgs();
  args.push_back("--threads=1");
  ASSERT_TRUE(StartMount(args));
  const int cpu = FirstCpu();
  std::atomic<bool> done{false};
  std::thread writer;
  Fd lock = BlockAWrite("held", done, writer, cpu);
  std::future<bool> others = OtherRequests(cpu);
  EXPECT_EQ(others.wait_for(500ms), std::future_status::timeout);
  lock.reset();
  writer.join();
  ASSERT_EQ(others.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(others.get());
  ASSERT_TRUE(mount().Stop());
}

// A queue that cannot be set up (no ring, no thread) would hold every request:
// the daemon makes the kernel give io_uring up for the connection, and the
// mount is served through /dev/fuse.
TEST_F(UringTest, AQueueThatCannotBeSetUpGivesTheRingsUp) {
  ::setenv("CACHEFS_TEST_URING_FAIL_QUEUE", "0", 1);
  const auto started = StartMount(UringArgs());
  ::unsetenv("CACHEFS_TEST_URING_FAIL_QUEUE");
  ASSERT_TRUE(started);
  std::future<void> work = std::async(std::launch::async, [this] { Exercise("d"); });
  ASSERT_EQ(work.wait_for(10s), std::future_status::ready) << "requests are held\n"
                                                           << mount().Log();
  work.get();
  EXPECT_EQ(Served(), 0u);
  EXPECT_NE(mount().Log().find("requests go through /dev/fuse"), std::string::npos)
      << mount().Log();
  ASSERT_TRUE(mount().Stop());
}

// --io-uring on where the switch is off and cannot be turned on (here: a
// read-only copy saying N, bind-mounted over it in a mount namespace of the
// daemon's own): one clear error, and nothing is mounted.
TEST_F(UringTest, OnFailsClearlyWhenTheSwitchCannotBeTurnedOn) {
  const std::string off = temp_.Path("enable_uring-off");
  ASSERT_TRUE(WriteFile(off, "N\n"));
  const CommandResult r =
      RunCommand({"unshare", "--mount", "--propagation", "private", "sh", "-c",
                  "mount --bind -o ro \"$1\" \"$2\" && exec \"$3\" --cache-directory \"$4\" "
                  "--io-uring on -f \"$5\"",
                  "sh", off, kUringSwitch, kCachefsBinary, Backing(0), Mnt()});
  ASSERT_TRUE(WIFEXITED(r.status)) << r.Describe();
  EXPECT_EQ(WEXITSTATUS(r.status), 1) << r.Describe();
  EXPECT_NE(r.output.find("--io-uring on: cannot switch on " + std::string(kUringSwitch) +
                          " (write refused)"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(IsAnythingMounted(Mnt()));
}

// SIGTERM while a file is open on the mount: the mount is detached, the ring
// threads stopped before the session goes, and the daemon exits 0.
TEST_F(UringTest, StopsWithAFileStillOpen) {
  ASSERT_TRUE(StartMount(UringArgs()));
  ASSERT_TRUE(WriteFile(Mnt("open"), "data"));
  Fd fd(::open(Mnt("open").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  char c = 0;
  ASSERT_EQ(::read(fd.get(), &c, 1), 1);
  ASSERT_TRUE(mount().Stop());
  EXPECT_EQ(ReadFile(InBacking(0, "open")), "data");
}

// kill -9: the rings die with the process, fusermount3 -u clears the dead
// mount, and the next daemon serves from its rings again.
TEST_F(UringTest, AfterKillNineTheMountClearsAndTheNextDaemonServes) {
  ASSERT_TRUE(StartMount(UringArgs()));
  ASSERT_TRUE(WriteFile(Mnt("f"), "x"));
  mount().Kill();
  const CommandResult r = RunCommand({"fusermount3", "-u", Mnt()});
  ASSERT_TRUE(r.Exited0()) << r.Describe();
  EXPECT_FALSE(IsAnythingMounted(Mnt()));
  ASSERT_TRUE(mount().Start());
  EXPECT_EQ(ReadFile(Mnt("f")), "x");
  EXPECT_GT(Served(), 0u);
  ASSERT_TRUE(mount().Stop());
}

}  // namespace
}  // namespace cachefs_test

// The daemon's request loop (fs/request_loop.h): one worker listens and
// busy-polls, the others wait in user space and take over when the listener is
// stuck on one request. What must hold: a request blocked inside the daemon does
// not hold up the others (unless --threads 1), an idle mount burns no CPU, and
// the loop without busy-polling serves and stops like the default one.
//
// A request is made to block for as long as the test likes through the write
// lock protocol (store/object_store.h): a write to a deduplicated branch takes
// LOCK_SH on the backing file first, and waits while anyone holds LOCK_EX (as
// dedup or cachectl import do for a moment).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
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

class RequestLoopTest : public MountTest {
 protected:
  // Starts a write to `name` through the mount that blocks in the daemon until
  // the returned lock descriptor is closed. `done` turns true when it returns.
  Fd BlockAWrite(const std::string& name, std::atomic<bool>& done, std::thread& writer) {
    EXPECT_TRUE(WriteFile(InBacking(0, name), "before"));
    Fd lock(::open(InBacking(0, name).c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_SYS_OK(::flock(lock.get(), LOCK_EX));
    writer = std::thread([this, name, &done] {
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
  std::future<bool> OtherRequests() {
    return std::async(std::launch::async, [this] {
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
  ASSERT_TRUE(WriteFile(InBacking(0, "held"), "before"));  // looked up before it is locked
  ASSERT_EQ(ReadFile(Mnt("held")), "before");
  std::atomic<bool> done{false};
  std::thread writer;
  Fd lock = BlockAWrite("held", done, writer);
  std::future<bool> others = OtherRequests();
  // Served by another worker once the watch sees the listener stuck (200 µs).
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
  std::vector<std::string> args = SingleArgs();
  args.push_back("--threads=1");
  ASSERT_TRUE(StartMount(args));
  ASSERT_TRUE(WriteFile(InBacking(0, "held"), "before"));
  ASSERT_EQ(ReadFile(Mnt("held")), "before");
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
  ASSERT_TRUE(StartMount(SingleArgs()));
  const auto called = [this] { return Counter(Stats(), "listeners_called"); };
  const uint64_t before = called();
  ASSERT_NE(before, UINT64_MAX) << "no listeners_called in the stats";
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

}  // namespace
}  // namespace cachefs_test

// The shipped `fetch` pipeline's script, run for real with /bin/sh against a
// local HTTP server (python3 -m http.server on 127.0.0.1), with the cache root
// moved to a temporary directory through MELANGE_CACHE_DIR.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/launcher/helpers.h"

namespace cachefs::launcher::testing {
namespace {

using ::testing::HasSubstr;

extern "C" char** environ;

struct Result {
  int status = -1;  // exit code, or 128+signal
  std::string output;
};

// Runs `argv` in `cwd` with `env`, stdout and stderr captured together.
Result run(const std::vector<std::string>& argv, const fs::path& cwd,
           const std::vector<std::string>& env, const fs::path& log) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ::chdir(cwd.c_str()) != 0) ::_exit(126);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  Result r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  return r;
}

std::string capture(const std::string& command, const fs::path& cwd) {
  TempDir scratch;
  return run({"/bin/sh", "-c", command}, cwd, {"PATH=/usr/local/bin:/usr/bin:/bin"},
             scratch.path() / "out")
      .output;
}

std::string sha256_of(const fs::path& file) {
  std::string out = capture("sha256sum '" + file.string() + "'", file.parent_path());
  return out.substr(0, out.find(' '));
}

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool ok = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(s);
  EXPECT_TRUE(ok) << "no free loopback port";
  return ntohs(addr.sin_port);
}

bool can_connect(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(s);
  return ok;
}

// python3 -m http.server serving `dir` on 127.0.0.1; stopped by stop() or the destructor.
class HttpServer {
 public:
  explicit HttpServer(const fs::path& dir) : port_(free_port()) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      const std::string port = std::to_string(port_);
      ::execlp("python3", "python3", "-m", "http.server", port.c_str(), "--bind", "127.0.0.1",
               "--directory", dir.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (!can_connect(port_) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~HttpServer() { stop(); }
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  bool up() const { return can_connect(port_); }
  int port() const { return port_; }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  int port_;
  pid_t pid_ = -1;
};

class Fetch : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path src = root_.path() / "src" / "hello-1.0";
    fs::create_directories(src / "bin");
    std::ofstream(src / "README") << "hello from the tarball\n";
    std::ofstream(src / "bin" / "tool") << "#!/bin/sh\necho tool\n";
    fs::create_directories(serve());
    fs::create_directories(cache());
    fs::create_directories(root_.path() / "tmp");
    capture("tar -czf '" + (serve() / "hello-1.0.tar.gz").string() + "' hello-1.0",
            root_.path() / "src");
    digest_ = sha256_of(serve() / "hello-1.0.tar.gz");
    ASSERT_EQ(digest_.size(), 64u);
  }

  fs::path serve() const { return root_.path() / "serve"; }
  fs::path cache() const { return root_.path() / "cache"; }

  // The fetch step's script, resolved by the planner for `with`.
  std::string script(const std::string& with) const {
    const Plan p = plan_of(std::string(kHead) + "pipeline:\n  - uses: fetch\n    with:\n" + with);
    EXPECT_EQ(p.builds[0].steps.size(), 1u);
    return p.builds[0].steps.at(0).script;
  }

  std::string with_for(int port, const std::string& digest) const {
    return "      uri: http://127.0.0.1:" + std::to_string(port) + "/hello-1.0.tar.gz\n" +
           "      expected-sha256: " + digest + "\n";
  }

  // Runs a script the way the runner will: /bin/sh -c 'set -e; ...' in a fresh
  // working directory.
  Result run_in(const std::string& workdir, const std::string& body,
                const fs::path& cache_root) const {
    const fs::path wd = root_.path() / workdir;
    fs::create_directories(wd);
    return run({"/bin/sh", "-c", "set -e\n" + body}, wd,
               {"PATH=/usr/local/bin:/usr/bin:/bin", "MELANGE_CACHE_DIR=" + cache_root.string(),
                "TMPDIR=" + (root_.path() / "tmp").string(), "HOME=" + root_.path().string()},
               root_.path() / (workdir + ".log"));
  }

  std::vector<std::string> cache_names() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(cache())) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

  TempDir root_;
  std::string digest_;
};

TEST_F(Fetch, DownloadsVerifiesStoresThenHitsTheCache) {
  HttpServer server(serve());
  ASSERT_TRUE(server.up()) << "python3 -m http.server did not start";
  const std::string body = script(with_for(server.port(), digest_));

  const Result first = run_in("first", body, cache());
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_THAT(first.output, HasSubstr("downloading"));
  EXPECT_TRUE(fs::exists(root_.path() / "first" / "README"));
  EXPECT_TRUE(fs::exists(root_.path() / "first" / "bin" / "tool"));
  EXPECT_TRUE(fs::exists(root_.path() / "first" / "hello-1.0.tar.gz"));  // delete: false
  EXPECT_EQ(cache_names(), std::vector<std::string>{"sha256:" + digest_});
  EXPECT_EQ(sha256_of(cache() / ("sha256:" + digest_)), digest_);
  EXPECT_TRUE(fs::is_empty(root_.path() / "tmp"));  // the temp download is cleaned up

  server.stop();
  ASSERT_FALSE(server.up());
  const Result second = run_in("second", body, cache());
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_THAT(second.output, HasSubstr("cache hit"));
  EXPECT_THAT(second.output, ::testing::Not(HasSubstr("downloading")));
  EXPECT_TRUE(fs::exists(root_.path() / "second" / "README"));
}

TEST_F(Fetch, WrongChecksumFailsAndCachesNothing) {
  HttpServer server(serve());
  ASSERT_TRUE(server.up());
  const std::string wrong(64, 'a');
  const Result r = run_in("wrong", script(with_for(server.port(), wrong)), cache());
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("sha256 mismatch"));
  EXPECT_THAT(r.output, HasSubstr(digest_));  // says what it got
  EXPECT_TRUE(cache_names().empty());
  EXPECT_FALSE(fs::exists(cache() / ("sha256:" + wrong)));
  EXPECT_FALSE(fs::exists(root_.path() / "wrong" / "README"));
  EXPECT_TRUE(fs::is_empty(root_.path() / "tmp"));
}

TEST_F(Fetch, CorruptCacheEntryIsReplacedByAVerifiedDownload) {
  std::ofstream(cache() / ("sha256:" + digest_)) << "not the tarball";
  HttpServer server(serve());
  ASSERT_TRUE(server.up());
  const Result r = run_in("corrupt", script(with_for(server.port(), digest_)), cache());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("does not match"));
  EXPECT_EQ(sha256_of(cache() / ("sha256:" + digest_)), digest_);
  EXPECT_EQ(cache_names().size(), 1u);
}

TEST_F(Fetch, WorksWithoutAWritableCacheAndHonoursInputs) {
  HttpServer server(serve());
  ASSERT_TRUE(server.up());
  const std::string body = script(with_for(server.port(), digest_) +
                                  "      directory: unpacked\n"
                                  "      strip-components: 0\n"
                                  "      delete: true\n");
  const Result r = run_in("nocache", body, root_.path() / "no-such-cache");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(fs::exists(root_.path() / "nocache" / "unpacked" / "hello-1.0" / "README"));
  EXPECT_FALSE(fs::exists(root_.path() / "nocache" / "hello-1.0.tar.gz"));
  EXPECT_FALSE(fs::exists(root_.path() / "no-such-cache"));

  const Result no_extract =
      run_in("raw", script(with_for(server.port(), digest_) + "      extract: false\n"), cache());
  ASSERT_EQ(no_extract.status, 0) << no_extract.output;
  EXPECT_TRUE(fs::exists(root_.path() / "raw" / "hello-1.0.tar.gz"));
  EXPECT_FALSE(fs::exists(root_.path() / "raw" / "README"));
}

TEST_F(Fetch, Sha512NamesTheCacheEntry) {
  std::string out = capture("sha512sum hello-1.0.tar.gz", serve());
  const std::string sha512 = out.substr(0, out.find(' '));
  ASSERT_EQ(sha512.size(), 128u);
  HttpServer server(serve());
  ASSERT_TRUE(server.up());
  const Result r = run_in("sha512",
                          script("      uri: http://127.0.0.1:" + std::to_string(server.port()) +
                                 "/hello-1.0.tar.gz\n      expected-sha512: " + sha512 + "\n"),
                          cache());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(cache_names(), std::vector<std::string>{"sha512:" + sha512});
}

TEST_F(Fetch, NoChecksumIsAnError) {
  const Result r = run_in("nosum", script("      uri: http://127.0.0.1:1/x.tar.gz\n"), cache());
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("expected-sha256 or expected-sha512 is required"));
}

}  // namespace
}  // namespace cachefs::launcher::testing

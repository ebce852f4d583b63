// cachectl push and pull against real servers on loopback, started here: nginx
// as a WebDAV (PUT) store with basic auth and a rate-limited location, s3rver
// behind a SigV4 signature check, and a plain directory. Round trips give
// identical trees; only missing content travels (counted in the servers' logs);
// damaged or missing objects, a server killed mid-pull and a push killed
// mid-way leave nothing wrong behind; every bad URL or credential is one line
// that never shows the password.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "common/json.h"
#include "tests/cachectl_child.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using cachefs::Json;
using namespace std::chrono_literals;

const char* kPassword = "pa55-w0rd-x7";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write(const fs::path& p, const std::string& data, mode_t mode = 0644) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
  ::chmod(p.c_str(), mode);
}

// Deterministic, incompressible-enough content of `n` bytes for seed `s`.
std::string blob(size_t n, uint64_t s) {
  std::string out(n, '\0');
  uint64_t x = s * 0x9e3779b97f4a7c15ULL + 1;
  for (char& c : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return out;
}

using Result = cachefs_test::CachectlResult;
using Cachectl = cachefs_test::CachectlChild;

uint64_t num(const Json& j, std::string_view key) {
  const Json* v = j.find(key);
  EXPECT_TRUE(v && v->is_number()) << key << " in " << j.dump();
  return v && v->is_number() ? static_cast<uint64_t>(v->number()) : ~0ull;
}

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

bool port_open(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

// A server process of a test: started, waited for on its port, stopped.
class Server {
 public:
  virtual ~Server() { stop(SIGTERM); }
  void stop(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  int port() const { return port_; }
  // The access log once it stops growing: a server logs a request after it
  // has sent the response, so the client may be done before the last line is.
  std::string settled_log() const {
    std::string last = slurp(log_);
    for (int i = 0; i < 40; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::string now = slurp(log_);
      if (now == last) break;
      last = std::move(now);
    }
    return last;
  }
  // "METHOD PATH STATUS BYTES" lines: bytes of response bodies with `method`
  // under `path_part`, status 2xx. `settle`: once the log stops growing (after
  // a client is done); without, as it is now (to watch a transfer in flight).
  uint64_t bytes_sent(const std::string& method, const std::string& path_part,
                      bool settle = true) const {
    std::istringstream in(settle ? settled_log() : slurp(log_));
    std::string m, p;
    int status;
    uint64_t bytes, total = 0;
    while (in >> m >> p >> status >> bytes) {
      if (m == method && p.find(path_part) != std::string::npos && status / 100 == 2) total += bytes;
    }
    return total;
  }
  size_t requests(const std::string& method, const std::string& path_part,
                  bool settle = true) const {
    std::istringstream in(settle ? settled_log() : slurp(log_));
    std::string m, p;
    int status;
    uint64_t bytes;
    size_t n = 0;
    while (in >> m >> p >> status >> bytes) n += m == method && p.find(path_part) != std::string::npos;
    return n;
  }
  void clear_log() { ::truncate(log_.c_str(), 0); }

 protected:
  void start(std::vector<std::string> args, const fs::path& dir) {
    const int e = ::open((dir / "server.stderr").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_ = cachefs_test::Spawn(std::move(args), {}, e, e);
    ::close(e);
    ASSERT_GT(pid_, 0);
    // Up to 30 s: node (s3rver) reading its modules from a cold page cache on a
    // loaded machine took more than 5 s once. A server that exits instead (a
    // port taken meanwhile, say) is reported at once.
    for (int i = 0; i < 1200 && !port_open(port_); ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL() << "the server exited before it listened: " << slurp(dir / "server.stderr");
      }
      std::this_thread::sleep_for(25ms);
    }
    ASSERT_TRUE(port_open(port_)) << slurp(dir / "server.stderr");
  }
  pid_t pid_ = -1;
  int port_ = 0;
  fs::path log_;
};

// nginx in the foreground as one process (SIGKILL stops all of it), with its
// own prefix: / is a WebDAV store, /private/ wants basic auth (user "u"),
// /forbidden/ denies all, /slow/ serves at most 50 requests a second.
class Nginx : public Server {
 public:
  explicit Nginx(const fs::path& dir) : dir_(dir) {
    fs::create_directories(dir / "data");
    fs::create_directories(dir / "body");
    log_ = dir / "access.log";
    // openssl passwd -apr1: the hash nginx's auth_basic reads.
    const int o = ::open((dir / "htpasswd.hash").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const pid_t p = cachefs_test::Spawn({"openssl", "passwd", "-apr1", kPassword}, {}, o, -1);
    ::close(o);
    ::waitpid(p, nullptr, 0);
    std::string hash = slurp(dir / "htpasswd.hash");
    while (!hash.empty() && hash.back() == '\n') hash.pop_back();
    write(dir / "htpasswd", "u:" + hash + "\n");
    port_ = free_port();
    const std::string d = dir.string();
    const std::string dav = "dav_methods PUT DELETE MKCOL; create_full_put_path on;";
    write(dir / "nginx.conf",
          "daemon off;\nmaster_process off;\nworker_processes 1;\n"
          "error_log " + d + "/error.log;\npid " + d + "/nginx.pid;\n"
          "events { worker_connections 256; }\n"
          "http {\n"
          "  log_format bytes '$request_method $uri $status $body_bytes_sent';\n"
          "  access_log " + d + "/access.log bytes;\n"
          "  client_body_temp_path " + d + "/body;\n  proxy_temp_path " + d + "/body;\n"
          "  fastcgi_temp_path " + d + "/body;\n  uwsgi_temp_path " + d + "/body;\n"
          "  scgi_temp_path " + d + "/body;\n  client_max_body_size 0;\n"
          "  limit_req_zone $binary_remote_addr zone=slow:1m rate=50r/s;\n"
          "  server {\n    listen 127.0.0.1:" + std::to_string(port_) + ";\n"
          "    root " + d + "/data;\n"
          "    location / { " + dav + " }\n"
          "    location /private/ { auth_basic cache; auth_basic_user_file " + d + "/htpasswd; " + dav + " }\n"
          "    location /forbidden/ { deny all; }\n"
          "    location /slow/ { limit_req zone=slow burst=100000; " + dav + " }\n"
          "  }\n}\n");
    restart();
  }
  void restart() {
    start({"nginx", "-p", dir_.string(), "-c", (dir_ / "nginx.conf").string(), "-e",
           (dir_ / "error.log").string()},
          dir_);
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + path;
  }
  fs::path data() const { return dir_ / "data"; }

 private:
  fs::path dir_;
};

// s3rver behind tests/remote/s3rver_sigv4.js (s3rver itself does not check
// SigV4 signatures), with bucket "cache"; key id and secret S3RVER.
class S3 : public Server {
 public:
  explicit S3(const fs::path& dir) {
    const char* mod = std::getenv("CACHEFS_S3RVER_DIR");
    const std::string module = mod && *mod ? mod : "/opt/cachefs-test/node_modules/s3rver";
    if (!fs::exists(fs::path(module) / "package.json")) {
      ADD_FAILURE() << "s3rver not found at " << module << ": run scripts/install-deps.sh";
      return;
    }
    fs::create_directories(dir / "s3data");
    log_ = dir / "s3.log";
    port_ = free_port();
    start({"node", S3RVER_WRAPPER, module, (dir / "s3data").string(), std::to_string(port_), "cache",
           log_.string()},
          dir);
  }
  std::vector<std::string> env(const std::string& secret = "S3RVER") const {
    return {"AWS_ACCESS_KEY_ID=S3RVER", "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_REGION=eu-west-1",
            "AWS_ENDPOINT_URL=http://127.0.0.1:" + std::to_string(port_)};
  }
};

struct Node {
  char type;  // 'd', 'f', 'l'
  mode_t mode;
  std::string data;  // file bytes or link target
  bool operator==(const Node&) const = default;
};

// Everything under `dir` but the store: path -> type, mode, bytes or target.
std::map<std::string, Node> tree(const fs::path& dir) {
  std::map<std::string, Node> m;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    const std::string rel = fs::relative(it->path(), dir).string();
    if (rel == ".cachefs") {
      it.disable_recursion_pending();
      continue;
    }
    struct stat st {};
    ::lstat(it->path().c_str(), &st);
    if (S_ISDIR(st.st_mode)) m[rel] = {'d', st.st_mode & 07777, ""};
    else if (S_ISLNK(st.st_mode)) m[rel] = {'l', 0, fs::read_symlink(it->path()).string()};
    else m[rel] = {'f', st.st_mode & 07777, slurp(it->path())};
  }
  return m;
}

class Remote : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/var/tmp/cachefs-remote-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
  }
  void TearDown() override {
    nginx_.reset();
    s3_.reset();
    fs::remove_all(root_);
  }

  Result run(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    return cachefs_test::RunCachectl(std::move(args), env);
  }
  Nginx& nginx() {
    if (!nginx_) nginx_ = std::make_unique<Nginx>(root_ / "nginx");
    return *nginx_;
  }
  S3& s3() {
    if (!s3_) s3_ = std::make_unique<S3>(root_ / "s3");
    return *s3_;
  }

  // A cache tree: files of several sizes and modes, a duplicate, an empty file,
  // an empty directory, a directory with its own mode, symlinks.
  fs::path make_cache(const std::string& name) {
    const fs::path c = root_ / name;
    write(c / "go/mod/cache/download/a.zip", blob(200000, 1));
    write(c / "go/mod/cache/download/a.mod", "module a\n");
    write(c / "pip/wheels/b.whl", blob(70000, 2), 0600);
    write(c / "pip/wheels/copy-of-b.whl", blob(70000, 2), 0600);
    write(c / "bin/tool", "#!/bin/sh\necho hi\n", 0755);
    write(c / "npm/_cacache/empty", "");
    fs::create_directories(c / "empty/dir");
    fs::create_directories(c / "locked");
    write(c / "locked/inside", "x");
    ::chmod((c / "locked").c_str(), 0750);
    fs::create_symlink("download/a.zip", c / "go/mod/cache/latest.zip");
    fs::create_symlink("/nonexistent/target", c / "dangling");
    return c;
  }

  fs::path root_;
  std::unique_ptr<Nginx> nginx_;
  std::unique_ptr<S3> s3_;
};

void expect_one_line(const Result& r, int code, const std::string& part) {
  EXPECT_EQ(r.code(), code) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(part), std::string::npos) << "want '" << part << "' in: " << r.err;
  EXPECT_EQ(r.err.find(kPassword), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("S3RVER-SECRET"), std::string::npos) << r.err;
}

TEST_F(Remote, HttpRoundTripGivesAnIdenticalTree) {
  const fs::path c = make_cache("a");
  const std::string url = nginx().url("ci/cache");
  Result r = run({"push", c.string(), url, "--json"});
  ASSERT_EQ(r.code(), 0) << r.err;
  Json j = r.json();
  EXPECT_EQ(num(j, "files"), 7u);
  // a.zip, a.mod, b.whl (twice), tool, inside, the empty file: 6 contents.
  EXPECT_EQ(num(j, "objects"), 6u);
  EXPECT_EQ(num(j, "objects_transferred"), 6u);
  EXPECT_TRUE(fs::exists(nginx().data() / "ci/cache/refs/latest"));

  const fs::path d = root_ / "b";
  r = run({"pull", url, d.string(), "--json"});
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(tree(c), tree(d));
  j = r.json();
  EXPECT_EQ(num(j, "bytes_transferred"), 200000u + 9 + 70000 + 18 + 1);
  EXPECT_EQ(nginx().bytes_sent("GET", "/objects/"), num(j, "bytes_transferred"));
  // Pulled files are store objects, shared: the two copies of b.whl are one inode.
  EXPECT_EQ(fs::hard_link_count(d / "pip/wheels/b.whl"), 3u);
  EXPECT_TRUE(fs::exists(d / ".cachefs/cachefs-store"));

  // Nothing new: a second push uploads nothing, a second pull downloads nothing.
  nginx().clear_log();
  r = run({"push", c.string(), url, "--json"});
  EXPECT_EQ(num(r.json(), "objects_transferred"), 0u);
  EXPECT_EQ(nginx().requests("PUT", "/objects/"), 0u);
  r = run({"pull", url, d.string(), "--json"});
  EXPECT_EQ(num(r.json(), "objects_transferred"), 0u);
  EXPECT_EQ(num(r.json(), "files_in_place"), 7u);
  EXPECT_EQ(nginx().requests("GET", "/objects/"), 0u);
  // The puller's own store names the hashes: pushing the pulled tree hashes nothing.
  r = run({"push", d.string(), url, "--json", "--ref", "from-b"});
  EXPECT_EQ(num(r.json(), "bytes_hashed"), 0u);
  EXPECT_EQ(num(r.json(), "objects_transferred"), 0u);
}

TEST_F(Remote, OnlyMissingContentTravels) {
  // Host A's cache: 50 files of 20 KiB; host B pulls it; A gains 10 more files
  // and pushes; B pulls again: only those 10 travel, both ways.
  const fs::path a = root_ / "hostA";
  for (int i = 0; i < 50; ++i) write(a / ("m/f" + std::to_string(i)), blob(20480, 100 + i));
  const std::string url = nginx().url("farm");
  ASSERT_EQ(run({"push", a.string(), url}).code(), 0);
  const fs::path b = root_ / "hostB";
  ASSERT_EQ(run({"pull", url, b.string()}).code(), 0);
  for (int i = 50; i < 60; ++i) write(a / ("m/f" + std::to_string(i)), blob(20480, 100 + i));
  nginx().clear_log();
  Result r = run({"push", a.string(), url, "--json"});
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(num(r.json(), "objects_transferred"), 10u);
  EXPECT_EQ(num(r.json(), "bytes_transferred"), 10u * 20480);
  EXPECT_EQ(num(r.json(), "objects_skipped"), 50u);
  EXPECT_EQ(nginx().requests("PUT", "/objects/"), 10u);
  nginx().clear_log();
  r = run({"pull", url, b.string(), "--json"});
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(num(r.json(), "bytes_transferred"), 10u * 20480);
  EXPECT_EQ(num(r.json(), "files_in_place"), 50u);
  EXPECT_EQ(nginx().bytes_sent("GET", "/objects/"), 10u * 20480);
  EXPECT_EQ(tree(a), tree(b));

  // Content in B's store but no longer in its tree is not downloaded either.
  fs::remove_all(b / "m");
  nginx().clear_log();
  r = run({"pull", url, b.string(), "--json"});
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(num(r.json(), "bytes_transferred"), 0u);
  EXPECT_EQ(num(r.json(), "objects_skipped"), 60u);
  EXPECT_EQ(nginx().requests("GET", "/objects/"), 0u);
  EXPECT_EQ(tree(a), tree(b));
}

TEST_F(Remote, DamagedOrMissingObjectFailsThePullAndChangesNothing) {
  const fs::path c = make_cache("a");
  const std::string url = nginx().url("c");
  ASSERT_EQ(run({"push", c.string(), url}).code(), 0);
  // Damage a.zip's object on the server (same size, other bytes).
  fs::path victim;
  for (const auto& e : fs::recursive_directory_iterator(nginx().data() / "c/objects"))
    if (e.is_regular_file() && e.file_size() == 200000) victim = e.path();
  ASSERT_FALSE(victim.empty());
  write(victim, blob(200000, 999));
  const fs::path d = root_ / "d";
  Result r = run({"pull", url, d.string()});
  expect_one_line(r, 1, "does not match its hash");
  EXPECT_NE(r.err.find(victim.filename().string()), std::string::npos) << r.err;
  EXPECT_EQ(tree(d), (std::map<std::string, Node>{}));  // nothing but the store

  fs::remove(victim);
  r = run({"pull", url, d.string()});
  expect_one_line(r, 1, "is missing");
  EXPECT_EQ(tree(d), (std::map<std::string, Node>{}));

  // A damaged manifest or ref is refused too.
  write(nginx().data() / "c/refs/latest", "not-a-hash\n");
  r = run({"pull", url, d.string()});
  expect_one_line(r, 1, "does not hold a manifest hash");
}

TEST_F(Remote, ServerKilledMidPullLeavesNoFileAndTheNextPullFinishes) {
  const fs::path c = root_ / "a";
  for (int i = 0; i < 40; ++i) write(c / ("f" + std::to_string(i)), blob(65536, 300 + i));
  const std::string url = nginx().url("slow/c");  // 50 requests a second
  ASSERT_EQ(run({"push", c.string(), url, "-j", "8"}).code(), 0);
  nginx().clear_log();
  const fs::path d = root_ / "d";
  Cachectl pull({"pull", url, d.string(), "-j", "1", "--retries", "1", "--timeout", "2"});
  for (int i = 0; i < 200 && nginx().requests("GET", "/objects/", false) < 5; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_GE(nginx().requests("GET", "/objects/", false), 5u);
  nginx().stop(SIGKILL);
  Result r = pull.finish();
  // Refused, reset or cut short, depending on where the kill fell.
  expect_one_line(r, 1, "was not changed");
  EXPECT_NE(r.err.find("GET http://127.0.0.1"), std::string::npos) << r.err;
  EXPECT_EQ(tree(d), (std::map<std::string, Node>{}));

  nginx().restart();
  nginx().clear_log();
  r = run({"pull", url, d.string(), "--json", "-j", "8"});
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_GE(num(r.json(), "objects_skipped"), 4u);  // kept from the first attempt
  EXPECT_EQ(num(r.json(), "objects_transferred") + num(r.json(), "objects_skipped"), 40u);
  EXPECT_EQ(tree(c), tree(d));
}

TEST_F(Remote, PushKilledMidwayLeavesTheOldRef) {
  const fs::path v1 = make_cache("v1");
  const std::string url = nginx().url("slow/p");
  ASSERT_EQ(run({"push", v1.string(), url}).code(), 0);
  const std::string ref_before = slurp(nginx().data() / "slow/p/refs/latest");
  const fs::path v2 = root_ / "v2";
  for (int i = 0; i < 60; ++i) write(v2 / ("f" + std::to_string(i)), blob(32768, 500 + i));
  nginx().clear_log();
  Cachectl push({"push", v2.string(), url, "-j", "2"});
  for (int i = 0; i < 200 && nginx().requests("PUT", "/objects/", false) < 5; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_GE(nginx().requests("PUT", "/objects/", false), 5u);
  ::kill(push.pid(), SIGKILL);
  push.finish();
  EXPECT_EQ(slurp(nginx().data() / "slow/p/refs/latest"), ref_before);
  EXPECT_EQ(nginx().requests("PUT", "/refs/"), 0u);
  const fs::path d = root_ / "d";
  ASSERT_EQ(run({"pull", url, d.string()}).code(), 0);
  EXPECT_EQ(tree(v1), tree(d));
}

TEST_F(Remote, BasicAuthAndHttpErrorsAreOneLineWithoutThePassword) {
  const fs::path c = make_cache("a");
  const std::string host = "127.0.0.1:" + std::to_string(nginx().port());
  const std::string good = "http://u:" + std::string(kPassword) + "@" + host + "/private/c";
  Result r = run({"push", c.string(), good});
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(r.out.find(kPassword), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("u:***@"), std::string::npos) << r.out;
  // The same through --user and through the environment.
  ASSERT_EQ(run({"pull", "http://" + host + "/private/c", (root_ / "d1").string(), "--user",
                 std::string("u:") + kPassword})
                .code(),
            0);
  ASSERT_EQ(run({"pull", "http://" + host + "/private/c", (root_ / "d2").string()},
                {"CACHEFS_REMOTE_USER=u", std::string("CACHEFS_REMOTE_PASSWORD=") + kPassword})
                .code(),
            0);
  EXPECT_EQ(tree(c), tree(root_ / "d2"));

  const std::string wrong = "http://u:" + std::string(kPassword) + "x@" + host + "/private/c";
  r = run({"pull", wrong, (root_ / "e").string()});
  expect_one_line(r, 1, "401 Unauthorized");
  EXPECT_NE(r.err.find("u:***@"), std::string::npos) << r.err;
  r = run({"push", c.string(), wrong});
  expect_one_line(r, 1, "401 Unauthorized");
  r = run({"pull", "http://" + host + "/private/c", (root_ / "e").string()});
  expect_one_line(r, 1, "401 Unauthorized");
  r = run({"pull", "http://" + host + "/forbidden/c", (root_ / "e").string()});
  expect_one_line(r, 1, "403 Forbidden");
  r = run({"pull", "http://" + host + "/nothing-here", (root_ / "e").string()});
  expect_one_line(r, 1, "no ref 'latest'");
  r = run({"pull", "http://" + host + "/private/c", (root_ / "e").string(), "--ref", "other"},
          {"CACHEFS_REMOTE_USER=u", std::string("CACHEFS_REMOTE_PASSWORD=") + kPassword});
  expect_one_line(r, 1, "no ref 'other'");

  // Nobody listening: retried, then one line.
  const int dead = free_port();
  r = run({"pull", "http://u:" + std::string(kPassword) + "@127.0.0.1:" + std::to_string(dead) + "/c",
           (root_ / "e").string(), "--retries", "1"});
  expect_one_line(r, 1, "cannot connect");
  EXPECT_FALSE(fs::exists(root_ / "e/go"));
}

TEST_F(Remote, BadUrlsAreUsageErrors) {
  const std::string pw = kPassword;
  const fs::path c = make_cache("a");
  struct Case {
    std::string url, part;
  };
  for (const Case& k : std::vector<Case>{
           {"ftp://u:" + pw + "@host/x", "unknown scheme 'ftp'"},
           {"s3://", "no bucket"},
           {"s3:///prefix", "no bucket"},
           {"s3://Bad_Bucket/x", "not a bucket name"},
           {"s3://u:" + pw + "@bucket/x", "no credentials in an s3:// URL"},
           {"s3://bucket/x", "no S3 credentials"},
           {"http:///x", "no host"},
           {"http://u:" + pw + "@/x", "no host"},
           {"https://host/x?y=1", "query or fragment"},
           {"http://host/../x", "the path may hold"},
           {"file://relative/x", "absolute path"},
           {"://x", "no scheme"},
       }) {
    for (const char* cmd : {"push", "pull"}) {
      Result r = std::string(cmd) == "push" ? run({"push", c.string(), k.url})
                                            : run({"pull", k.url, (root_ / "d").string()});
      SCOPED_TRACE(std::string(cmd) + " " + k.url);
      expect_one_line(r, 2, k.part);
    }
  }
  Result r = run({"push", c.string(), (root_ / "r").string(), "--ref", "../x"});
  expect_one_line(r, 2, "a ref name is");
  r = run({"push", (root_ / "missing").string(), (root_ / "r").string()});
  expect_one_line(r, 2, "push: CACHE_DIR");
  r = run({"pull"});
  EXPECT_EQ(r.code(), 2);
  r = run({"pull", "s3://bucket/x", (root_ / "d").string(), "--endpoint", "ftp://h"},
          {"AWS_ACCESS_KEY_ID=k", "AWS_SECRET_ACCESS_KEY=S3RVER-SECRET"});
  expect_one_line(r, 2, "endpoint 'ftp://h'");
}

TEST_F(Remote, S3RoundTripSignedWithSigV4) {
  const fs::path c = make_cache("a");
  const std::string url = "s3://cache/ci/x";
  Result r = run({"push", c.string(), url, "--json"}, s3().env());
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(num(r.json(), "objects_transferred"), 6u);
  const fs::path d = root_ / "d";
  r = run({"pull", url, d.string(), "--json"}, s3().env());
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(tree(c), tree(d));
  // node logs a response when it has flushed it, which may come after curl has it all.
  const uint64_t want = num(r.json(), "bytes_transferred");
  for (int i = 0; i < 100 && s3().bytes_sent("GET", "/cache/ci/x/objects/", false) < want; ++i)
    std::this_thread::sleep_for(20ms);
  EXPECT_EQ(s3().bytes_sent("GET", "/cache/ci/x/objects/"), want);
  r = run({"push", c.string(), url, "--json"}, s3().env());
  EXPECT_EQ(num(r.json(), "objects_transferred"), 0u);

  // --endpoint and --region flags instead of the environment.
  auto env = s3().env();
  const std::string endpoint = env.back().substr(std::string("AWS_ENDPOINT_URL=").size());
  env.pop_back();
  r = run({"pull", url, (root_ / "e").string(), "--endpoint", endpoint, "--region", "us-west-2"}, env);
  ASSERT_EQ(r.code(), 0) << r.err;

  r = run({"pull", url, (root_ / "f").string()}, s3().env("S3RVER-SECRET"));
  expect_one_line(r, 1, "403 Forbidden (SignatureDoesNotMatch)");
  r = run({"push", c.string(), url}, s3().env("S3RVER-SECRET"));
  expect_one_line(r, 1, "403 Forbidden");  // HEAD: no body to name the code
  r = run({"pull", url, (root_ / "f").string()},
          {"AWS_ACCESS_KEY_ID=nobody", "AWS_SECRET_ACCESS_KEY=S3RVER-SECRET",
           "AWS_ENDPOINT_URL=http://127.0.0.1:" + std::to_string(s3().port())});
  expect_one_line(r, 1, "InvalidAccessKeyId");
  EXPECT_FALSE(fs::exists(root_ / "f/go"));
}

TEST_F(Remote, DirectoryRemoteAndPlainTreeSource) {
  const fs::path c = make_cache("a");
  const fs::path remote = root_ / "remote";
  Result r = run({"push", c.string(), "file://" + remote.string(), "--ref", "v1"});
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_TRUE(fs::is_regular_file(remote / "refs/v1"));
  EXPECT_TRUE(fs::is_empty(remote / "tmp"));  // nothing half-written left
  const fs::path d = root_ / "d";
  r = run({"pull", remote.string(), d.string(), "--ref", "v1"});
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(tree(c), tree(d));

  // A plain cache tree (no refs/) as the source: copied, deduplicated.
  const fs::path e = root_ / "e";
  r = run({"pull", c.string(), e.string(), "--json"});
  ASSERT_EQ(r.code(), 0) << r.err;
  EXPECT_EQ(tree(c), tree(e));
  EXPECT_EQ(fs::hard_link_count(e / "pip/wheels/b.whl"), 3u);
}

}  // namespace

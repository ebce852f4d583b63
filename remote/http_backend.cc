// HTTP(S) and S3 remotes through libcurl: HEAD to ask whether a key exists, GET
// to download, PUT to upload (nginx WebDAV, bazel-remote-style caches, S3 with
// SigV4 signed by libcurl, path-style). Transient failures (5xx, 408, 429,
// refused or reset connections, stalls) are retried with exponential backoff;
// everything else fails at once with one line that never holds a credential.
#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "remote/internal.h"

namespace cachefs::remote::detail {
namespace {

struct Transfer {
  int out_fd = -1;  // GET: where a 2xx body goes
  off_t out_off = 0;
  int in_fd = -1;  // PUT: what is sent
  off_t in_off = 0;
  uint64_t in_size = 0;
  std::string error_body;  // the start of a non-2xx body (for S3's <Code>)
  int write_errno = 0;
  CURL* h = nullptr;
};

size_t on_write(char* data, size_t, size_t n, void* p) {
  auto* t = static_cast<Transfer*>(p);
  long status = 0;
  curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status >= 300 || t->out_fd < 0) {
    if (t->error_body.size() < 4096) t->error_body.append(data, std::min<size_t>(n, 4096));
    return n;
  }
  for (size_t done = 0; done < n;) {
    const ssize_t w = ::pwrite(t->out_fd, data + done, n - done, t->out_off);
    if (w < 0) {
      t->write_errno = errno;
      return 0;  // aborts the transfer
    }
    done += static_cast<size_t>(w);
    t->out_off += w;
  }
  return n;
}

size_t on_read(char* buf, size_t, size_t n, void* p) {
  auto* t = static_cast<Transfer*>(p);
  const uint64_t left = t->in_size - static_cast<uint64_t>(t->in_off);
  if (left == 0) return 0;
  const ssize_t r = ::pread(t->in_fd, buf, std::min<uint64_t>(n, left), t->in_off);
  if (r <= 0) return CURL_READFUNC_ABORT;  // the file shrank or failed under us
  t->in_off += r;
  return static_cast<size_t>(r);
}

int on_seek(void* p, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(p);
  if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > t->in_size)
    return CURL_SEEKFUNC_CANTSEEK;
  t->in_off = static_cast<off_t>(offset);
  return CURL_SEEKFUNC_OK;
}

// The <Code> of an S3 error document, if any.
std::string s3_code(const std::string& body) {
  const size_t a = body.find("<Code>");
  const size_t b = body.find("</Code>");
  if (a == std::string::npos || b == std::string::npos || b < a) return "";
  std::string code = body.substr(a + 6, b - a - 6);
  if (code.size() > 64) code.resize(64);
  return code;
}

std::string reason(long status) {
  switch (status) {
    case 400: return "400 Bad Request";
    case 401: return "401 Unauthorized";
    case 403: return "403 Forbidden";
    case 404: return "404 Not Found";
    case 405: return "405 Method Not Allowed (does the server accept PUT? nginx: dav_methods PUT)";
    case 408: return "408 Request Timeout";
    case 409: return "409 Conflict (nginx: create_full_put_path on)";
    case 413: return "413 Payload Too Large (nginx: client_max_body_size)";
    case 429: return "429 Too Many Requests";
    case 500: return "500 Internal Server Error";
    case 502: return "502 Bad Gateway";
    case 503: return "503 Service Unavailable";
    case 504: return "504 Gateway Timeout";
    default: return std::to_string(status);
  }
}

bool transient_status(long s) {
  return s >= 500 || s == 408 || s == 429;
}

bool transient_code(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

class HttpBackend : public Backend {
 public:
  explicit HttpBackend(HttpConfig cfg) : cfg_(std::move(cfg)) {
    global_init();
    if (cfg_.s3) sigv4_ = "aws:amz:" + cfg_.region + ":s3";
  }
  ~HttpBackend() override {
    for (CURL* h : pool_) curl_easy_cleanup(h);
  }

  std::string describe() const override { return cfg_.display; }

  bool exists(const std::string& key) override {
    Transfer t;
    const long s = perform("HEAD", key, t);
    if (s == 404) return false;
    if (s >= 200 && s < 300) return true;
    fail_status("HEAD", key, s, t);
  }

  bool get(const std::string& key, int fd) override {
    Transfer t;
    t.out_fd = fd;
    const long s = perform("GET", key, t);
    if (s == 404) return false;
    if (s >= 200 && s < 300) return true;
    fail_status("GET", key, s, t);
  }

  void put(const std::string& key, int fd, uint64_t size) override {
    Transfer t;
    t.in_fd = fd;
    t.in_size = size;
    const long s = perform("PUT", key, t);
    if (s >= 200 && s < 300) return;
    fail_status("PUT", key, s, t);
  }

 private:
  CURL* acquire() {
    {
      std::lock_guard lock(mu_);
      if (!pool_.empty()) {
        CURL* h = pool_.back();
        pool_.pop_back();
        return h;
      }
    }
    CURL* h = curl_easy_init();
    if (h == nullptr) throw RemoteError("curl_easy_init failed");
    return h;
  }
  void release(CURL* h) {
    std::lock_guard lock(mu_);
    pool_.push_back(h);  // keeps its connection for the next request
  }

  // Runs one request with retries; returns the final HTTP status (throws on a
  // transport failure that did not clear up).
  long perform(const char* method, const std::string& key, Transfer& t) {
    CURL* h = acquire();
    struct Guard {
      HttpBackend* b;
      CURL* h;
      ~Guard() { b->release(h); }
    } guard{this, h};
    t.h = h;
    const std::string url = cfg_.base + key;
    std::mt19937 rng(std::random_device{}());
    for (int attempt = 0;; ++attempt) {
      t.out_off = 0;
      t.in_off = 0;
      t.error_body.clear();
      t.write_errno = 0;
      if (t.out_fd >= 0 && ::ftruncate(t.out_fd, 0) != 0)
        throw RemoteError(std::string("truncate: ") + std::strerror(errno));
      char errbuf[CURL_ERROR_SIZE] = "";
      curl_slist* headers = nullptr;
      curl_easy_reset(h);
      curl_easy_setopt(h, CURLOPT_URL, url.c_str());
      curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
      curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
      curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
      curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(cfg_.timeout * 1000));
      // A stall (under 1 byte/s for `timeout`) is a failure, a slow big transfer is not.
      curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
      curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, std::max(1L, static_cast<long>(cfg_.timeout)));
      curl_easy_setopt(h, CURLOPT_USERAGENT, "cachectl");
      curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
      curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
      if (std::strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
      } else if (std::strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &t);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, &t);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(t.in_size));
        headers = curl_slist_append(headers, "Expect:");
        headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
      }
      if (cfg_.s3) {
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4_.c_str());
        curl_easy_setopt(h, CURLOPT_USERNAME, cfg_.user.c_str());
        curl_easy_setopt(h, CURLOPT_PASSWORD, cfg_.password.c_str());
        // Objects are verified by their xxh3 name on download; not hashing the
        // body twice for the signature keeps uploads streaming.
        headers = curl_slist_append(headers, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
        if (!cfg_.session_token.empty()) {
          const std::string tok = "x-amz-security-token: " + cfg_.session_token;
          headers = curl_slist_append(headers, tok.c_str());
        }
      } else if (!cfg_.user.empty()) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, cfg_.user.c_str());
        curl_easy_setopt(h, CURLOPT_PASSWORD, cfg_.password.c_str());
      } else if (!cfg_.bearer.empty()) {
        const std::string auth = "Authorization: Bearer " + cfg_.bearer;
        headers = curl_slist_append(headers, auth.c_str());
      }
      if (headers != nullptr) curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
      const CURLcode rc = curl_easy_perform(h);
      curl_slist_free_all(headers);
      long status = 0;
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
      const bool last = attempt >= cfg_.retries;
      if (rc == CURLE_OK) {
        if (!transient_status(status) || last) return status;
      } else {
        if (t.write_errno != 0)
          throw RemoteError(fmt(method, key) + ": writing the download: " +
                            std::strerror(t.write_errno));
        if (!transient_code(rc) || last) fail_transport(method, key, rc, errbuf, attempt);
      }
      // Backoff: 0.25 s, 0.5 s, 1 s, ... (capped at 8 s), with jitter.
      const double base = std::min(8.0, 0.25 * static_cast<double>(1 << std::min(attempt, 5)));
      const double wait = base * std::uniform_real_distribution<double>(0.75, 1.25)(rng);
      std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    }
  }

  std::string fmt(const char* method, const std::string& key) const {
    return std::string(method) + " " + cfg_.display + (cfg_.display.ends_with("/") ? "" : "/") + key;
  }

  [[noreturn]] void fail_transport(const char* method, const std::string& key, CURLcode rc,
                                   const char* errbuf, int attempt) const {
    std::string what = *errbuf ? errbuf : curl_easy_strerror(rc);
    // Messages from curl name hosts and ports, never our credentials (they are
    // not in the URL); keep the line short all the same.
    if (what.size() > 200) what.resize(200);
    std::string prefix;
    if (rc == CURLE_COULDNT_RESOLVE_HOST) prefix = "cannot resolve the host: ";
    else if (rc == CURLE_COULDNT_CONNECT) prefix = "cannot connect: ";
    else if (rc == CURLE_OPERATION_TIMEDOUT) prefix = "timed out: ";
    std::string tries = attempt > 0 ? " (after " + std::to_string(attempt + 1) + " attempts)" : "";
    throw RemoteError(fmt(method, key) + ": " + prefix + what + tries);
  }

  [[noreturn]] void fail_status(const char* method, const std::string& key, long status,
                                const Transfer& t) const {
    std::string msg = fmt(method, key) + ": " + reason(status);
    if (const std::string code = s3_code(t.error_body); !code.empty()) msg += " (" + code + ")";
    if (status == 401 || status == 403) {
      msg += cfg_.s3 ? ": check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the region"
                     : ": check the user and password (URL, --user, CACHEFS_REMOTE_USER/"
                       "CACHEFS_REMOTE_PASSWORD) or CACHEFS_REMOTE_TOKEN";
    }
    throw RemoteError(msg);
  }

  const HttpConfig cfg_;
  std::string sigv4_;
  std::mutex mu_;
  std::vector<CURL*> pool_;
};

}  // namespace

std::unique_ptr<Backend> make_http_backend(const HttpConfig& cfg) {
  return std::make_unique<HttpBackend>(cfg);
}

}  // namespace cachefs::remote::detail

// Remote URLs: which backend, where, and with which credentials. Every mistake
// is one UsageError line that names the remote with its password masked.
#include <curl/curl.h>

#include <cctype>
#include <mutex>

#include "common/error.h"
#include "remote/internal.h"
#include "remote/remote.h"

namespace cachefs::remote {
namespace {

constexpr const char* kSchemes = "a directory, file://PATH, http://, https:// or s3://BUCKET[/PREFIX]";

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() &&
        std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// A path a key may be appended to: safe characters only, no empty, "." or ".."
// component (S3 prefixes and HTTP paths are used as they are, unescaped).
bool safe_path(std::string_view p) {
  size_t start = 0;
  while (start <= p.size()) {
    size_t slash = p.find('/', start);
    if (slash == std::string_view::npos) slash = p.size();
    const std::string_view part = p.substr(start, slash - start);
    if (part == "." || part == "..") return false;
    for (char c : part) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view("-._~%+@:=,").find(c) ==
                                                             std::string_view::npos)
        return false;
    }
    start = slash + 1;
  }
  return true;
}

std::string env_or(const GetEnv& getenv, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (const char* v = getenv(n); v != nullptr && *v != '\0') return v;
  }
  return "";
}

struct Parsed {
  std::string scheme, userinfo, hostport, path;  // path without the leading '/'
};

// scheme://[userinfo@]hostport[/path]; no query or fragment.
Parsed split_url(const std::string& spec) {
  Parsed p;
  const size_t colon = spec.find("://");
  p.scheme = spec.substr(0, colon);
  for (char& c : p.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string rest = spec.substr(colon + 3);
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  p.path = slash == std::string::npos ? "" : rest.substr(slash + 1);
  if (const size_t at = authority.rfind('@'); at != std::string::npos) {
    p.userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
  }
  p.hostport = authority;
  while (!p.path.empty() && p.path.back() == '/') p.path.pop_back();
  return p;
}

}  // namespace

std::string mask(std::string_view spec) {
  const size_t colon = spec.find("://");
  if (colon == std::string_view::npos) return std::string(spec);
  const size_t start = colon + 3;
  size_t end = spec.find('/', start);
  if (end == std::string_view::npos) end = spec.size();
  const std::string_view authority = spec.substr(start, end - start);
  const size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(spec);
  const std::string_view userinfo = authority.substr(0, at);
  const size_t pc = userinfo.find(':');
  std::string out(spec.substr(0, start));
  out += pc == std::string_view::npos ? userinfo : userinfo.substr(0, pc);
  if (pc != std::string_view::npos) out += ":***";
  out += spec.substr(start + at);
  return out;
}

bool local_path(const std::string& spec, std::string& path) {
  if (spec.find("://") == std::string::npos) {
    path = spec;
    return true;
  }
  if (spec.size() >= 7 && (spec.compare(0, 7, "file://") == 0 || spec.compare(0, 7, "FILE://") == 0)) {
    std::string rest = spec.substr(7);
    if (rest.starts_with("localhost/")) rest = rest.substr(9);
    path = rest;
    return true;
  }
  return false;
}

std::string object_key(const store::Hash128& h) {
  const std::string hex = h.hex();
  return "objects/" + hex.substr(0, 2) + "/" + hex;
}
std::string manifest_key(const store::Hash128& h) {
  return "manifests/" + h.hex();
}
std::string ref_key(const std::string& name) {
  return "refs/" + name;
}

void check_ref_name(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 128 && name[0] != '.';
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') ok = false;
  }
  if (!ok) throw UsageError::make("--ref '{}': a ref name is letters, digits, '.', '_' and '-'", name);
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::unique_ptr<Backend> open_backend(const std::string& spec, const Options& opt,
                                      const GetEnv& getenv) {
  const std::string shown = mask(spec);
  if (spec.empty()) throw UsageError("remote '': empty (use " + std::string(kSchemes) + ")");
  std::string path;
  if (local_path(spec, path)) {
    if (path.empty() || (spec.find("://") != std::string::npos && path[0] != '/'))
      throw UsageError::make("remote '{}': a file:// URL needs an absolute path (file:///srv/cache)",
                             shown);
    return detail::make_dir_backend(path);
  }
  Parsed u = split_url(spec);
  if (spec.find_first_of("?#") != std::string::npos)
    throw UsageError::make("remote '{}': a query or fragment is not allowed in a remote URL", shown);
  detail::HttpConfig cfg;
  cfg.timeout = opt.timeout;
  cfg.retries = opt.retries;
  if (u.scheme == "http" || u.scheme == "https") {
    if (u.hostport.empty() || u.hostport[0] == ':')
      throw UsageError::make("remote '{}': no host", shown);
    if (!safe_path(u.path))
      throw UsageError::make("remote '{}': the path may hold letters, digits and -._~%+@:=, only",
                             shown);
    cfg.base = u.scheme + "://" + u.hostport + "/" + (u.path.empty() ? "" : u.path + "/");
    cfg.display = shown;
    std::string userinfo = u.userinfo;
    if (!opt.user.empty()) userinfo = opt.user;
    if (userinfo.empty()) {
      const std::string user = env_or(getenv, {"CACHEFS_REMOTE_USER"});
      if (!user.empty()) userinfo = user + ":" + env_or(getenv, {"CACHEFS_REMOTE_PASSWORD"});
    }
    if (!userinfo.empty()) {
      const size_t c = userinfo.find(':');
      cfg.user = percent_decode(userinfo.substr(0, c));
      cfg.password = c == std::string::npos ? env_or(getenv, {"CACHEFS_REMOTE_PASSWORD"})
                                            : percent_decode(userinfo.substr(c + 1));
      if (cfg.user.empty()) throw UsageError::make("remote '{}': empty user name", shown);
    } else {
      cfg.bearer = env_or(getenv, {"CACHEFS_REMOTE_TOKEN"});
    }
    return detail::make_http_backend(cfg);
  }
  if (u.scheme == "s3") {
    if (!u.userinfo.empty())
      throw UsageError::make(
          "remote '{}': no credentials in an s3:// URL (use AWS_ACCESS_KEY_ID and "
          "AWS_SECRET_ACCESS_KEY)",
          shown);
    const std::string& bucket = u.hostport;
    if (bucket.empty())
      throw UsageError::make("remote '{}': no bucket (use s3://BUCKET[/PREFIX])", shown);
    bool ok = bucket.size() >= 3 && bucket.size() <= 63;
    for (char c : bucket) {
      if (!std::islower(static_cast<unsigned char>(c)) && !std::isdigit(static_cast<unsigned char>(c)) &&
          c != '-' && c != '.')
        ok = false;
    }
    if (!ok)
      throw UsageError::make(
          "remote '{}': bucket '{}' is not a bucket name (3-63 of a-z, 0-9, '.', '-')", shown, bucket);
    if (!safe_path(u.path))
      throw UsageError::make("remote '{}': the prefix may hold letters, digits and -._~%+@:=, only",
                             shown);
    std::string region = opt.region;
    if (region.empty()) region = env_or(getenv, {"AWS_REGION", "AWS_DEFAULT_REGION"});
    if (region.empty()) region = "us-east-1";
    for (char c : region) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-')
        throw UsageError::make("--region '{}': not a region name", region);
    }
    std::string endpoint = opt.endpoint;
    if (endpoint.empty()) endpoint = env_or(getenv, {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"});
    if (endpoint.empty()) endpoint = "https://s3." + region + ".amazonaws.com";
    if (endpoint.find("://") == std::string::npos)
      throw UsageError::make("endpoint '{}': not a URL (use http(s)://HOST[:PORT])", mask(endpoint));
    const Parsed e = split_url(endpoint);
    if ((e.scheme != "http" && e.scheme != "https") || e.hostport.empty() || !e.userinfo.empty() ||
        !safe_path(e.path))
      throw UsageError::make("endpoint '{}': not an http(s)://HOST[:PORT] URL", mask(endpoint));
    cfg.user = env_or(getenv, {"AWS_ACCESS_KEY_ID"});
    cfg.password = env_or(getenv, {"AWS_SECRET_ACCESS_KEY"});
    if (cfg.user.empty() || cfg.password.empty())
      throw UsageError::make(
          "remote '{}': no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", shown);
    cfg.session_token = env_or(getenv, {"AWS_SESSION_TOKEN"});
    cfg.s3 = true;
    cfg.region = region;
    // Path-style addressing: works with AWS, MinIO, s3rver and other S3 servers alike.
    cfg.base = e.scheme + "://" + e.hostport + "/" + (e.path.empty() ? "" : e.path + "/") + bucket +
               "/" + (u.path.empty() ? "" : u.path + "/");
    cfg.display = shown + " (" + e.scheme + "://" + e.hostport + ")";
    return detail::make_http_backend(cfg);
  }
  if (u.scheme.empty()) throw UsageError::make("remote '{}': no scheme (use {})", shown, kSchemes);
  throw UsageError::make("remote '{}': unknown scheme '{}' (use {})", shown, u.scheme, kSchemes);
}

}  // namespace cachefs::remote

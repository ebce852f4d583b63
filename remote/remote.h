// A remote store: content objects, manifests and refs under one root, reached
// through a backend (a directory, HTTP(S) with GET/PUT/HEAD, or S3 with SigV4).
// The layout (docs/remote-format.md):
//
//   <root>/objects/<ab>/<xxh3-128 hex>   a file's bytes; <ab> = first two hex digits
//   <root>/manifests/<xxh3-128 hex>      a manifest (JSON), named by its own hash
//   <root>/refs/<name>                   the hash of the latest manifest pushed as <name>
//
// Keys given to a backend are these relative paths. Every write lands under its
// final key complete or not at all, so a reader never sees half an object and
// a ref always names a manifest whose objects were all uploaded first.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "store/hash.h"

namespace cachefs::remote {

// A failure talking to a remote (unreachable, refused, denied, damaged): one
// line, credentials never in it. Usage mistakes (bad URLs) are UsageError.
class RemoteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using GetEnv = std::function<const char*(const char*)>;

struct Options {
  std::string user;      // --user USER[:PASSWORD] (HTTP basic auth)
  std::string endpoint;  // --endpoint URL (S3)
  std::string region;    // --region NAME (S3)
  double timeout = 30;   // seconds: connecting, and the longest stall of a transfer
  int retries = 3;       // further attempts after a transient failure
};

class Backend {
 public:
  virtual ~Backend() = default;
  // The remote as messages name it: URL with any password masked.
  virtual std::string describe() const = 0;
  // Whether `key` exists.
  virtual bool exists(const std::string& key) = 0;
  // Writes the content of `key` to `fd` (an empty file, written from offset 0;
  // truncated again before a retry). False if there is no such key.
  virtual bool get(const std::string& key, int fd) = 0;
  // Stores the first `size` bytes of `fd` (read with pread from offset 0) as `key`,
  // replacing what it held; the key holds either its old or its new content.
  virtual void put(const std::string& key, int fd, uint64_t size) = 0;
  // Makes the remote ready for push (a directory: create it).
  virtual void prepare_for_push() {}

  // Small documents (refs, manifests) through memory.
  std::optional<std::string> get_text(const std::string& key);
  void put_text(const std::string& key, std::string_view text);
};

// Parses REMOTE (a path, file://PATH, http(s)://[user[:pass]@]host[:port]/path,
// s3://bucket[/prefix]) and opens its backend. Throws UsageError for a bad URL,
// missing credentials or a bad option.
std::unique_ptr<Backend> open_backend(const std::string& spec, const Options& opt,
                                      const GetEnv& getenv);

// REMOTE with the password of any userinfo replaced by "***" (for messages).
std::string mask(std::string_view spec);

// True if `spec` names a local directory (a path or file://), setting `path`.
bool local_path(const std::string& spec, std::string& path);

// Object, manifest and ref keys.
std::string object_key(const store::Hash128& h);
std::string manifest_key(const store::Hash128& h);
std::string ref_key(const std::string& name);
// A ref name is [A-Za-z0-9._-]+, not starting with '.'; throws UsageError.
void check_ref_name(const std::string& name);

// Initialises libcurl once per process (call before starting threads).
void global_init();

}  // namespace cachefs::remote

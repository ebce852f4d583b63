#include "remote/manifest.h"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <unordered_map>

#include "common/json.h"
#include "remote/remote.h"

namespace cachefs::remote {
namespace {

const char* type_name(Entry::Type t) {
  switch (t) {
    case Entry::Type::kDir: return "dir";
    case Entry::Type::kFile: return "file";
    case Entry::Type::kSymlink: return "symlink";
  }
  return "?";
}

// Orders "a" < "a/b" < "a-b": compare component by component.
bool path_less(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  if (i == a.size() || i == b.size()) return a.size() < b.size();
  const auto key = [](char c) { return c == '/' ? 0 : static_cast<unsigned char>(c) + 1; };
  return key(a[i]) < key(b[i]);
}

[[noreturn]] void bad(const std::string& what) {
  throw RemoteError("manifest: " + what);
}

}  // namespace

bool safe_relative_path(std::string_view p) {
  if (p.empty() || p.size() > 4096) return false;
  size_t start = 0;
  while (start <= p.size()) {
    size_t slash = p.find('/', start);
    if (slash == std::string_view::npos) slash = p.size();
    const std::string_view part = p.substr(start, slash - start);
    if (part.empty() || part == "." || part == ".." || part.size() > 255 ||
        part.find('\0') != std::string_view::npos)
      return false;
    start = slash + 1;
  }
  return true;
}

void Manifest::sort() {
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return path_less(a.path, b.path); });
}

std::string Manifest::to_json() const {
  // One entry per line: readable, and diffs of two manifests stay small.
  std::string out = "{\"format\": \"cachefs-manifest\", \"version\": 1, \"created\": " +
                    Json(created).dump() + ",\n \"entries\": [";
  bool first = true;
  for (const Entry& e : entries) {
    Json j = Json::object().set("path", e.path).set("type", type_name(e.type));
    if (e.type != Entry::Type::kSymlink) j.set("mode", fmt::format("{:04o}", e.mode));
    if (e.type == Entry::Type::kFile) j.set("size", e.size).set("xxh3", e.hash.hex());
    if (e.type == Entry::Type::kSymlink) j.set("target", e.target);
    out += first ? "\n  " : ",\n  ";
    out += j.dump();
    first = false;
  }
  out += "]}\n";
  return out;
}

Manifest Manifest::parse(std::string_view text) {
  std::string err;
  const auto doc = Json::parse(text, &err);
  if (!doc || !doc->is_object()) bad("not JSON (" + err + ")");
  const Json* format = doc->find("format");
  if (!format || !format->is_string() || format->str() != "cachefs-manifest")
    bad("not a cachefs manifest (no \"format\": \"cachefs-manifest\")");
  const Json* version = doc->find("version");
  if (!version || !version->is_number() || version->number() != 1)
    bad("unsupported version (this cachectl reads version 1)");
  Manifest m;
  if (const Json* c = doc->find("created"); c && c->is_string()) m.created = c->str();
  const Json* entries = doc->find("entries");
  if (!entries || !entries->is_array()) bad("no \"entries\" array");
  std::unordered_map<std::string, Entry::Type> seen;
  for (const Json& j : entries->items()) {
    if (!j.is_object()) bad("an entry is not an object");
    auto str = [&](const char* k) -> std::string {
      const Json* v = j.find(k);
      if (!v || !v->is_string()) bad(fmt::format("an entry without a string \"{}\"", k));
      return v->str();
    };
    Entry e;
    e.path = str("path");
    if (!safe_relative_path(e.path)) bad("unsafe path '" + e.path + "'");
    const std::string type = str("type");
    if (type == "dir") e.type = Entry::Type::kDir;
    else if (type == "file") e.type = Entry::Type::kFile;
    else if (type == "symlink") e.type = Entry::Type::kSymlink;
    else bad("'" + e.path + "': unknown type '" + type + "'");
    if (e.type != Entry::Type::kSymlink) {
      const std::string mode = str("mode");
      size_t used = 0;
      unsigned long v = 0;
      try {
        v = std::stoul(mode, &used, 8);
      } catch (...) {
        used = 0;
      }
      if (used == 0 || used != mode.size() || v > 07777) bad("'" + e.path + "': bad mode '" + mode + "'");
      e.mode = static_cast<mode_t>(v);
    }
    if (e.type == Entry::Type::kFile) {
      const Json* size = j.find("size");
      // A whole number in range: a cast of any other double is undefined (found by
      // tests/fuzz/fuzz_manifest with "size": 1e30).
      const std::optional<uint64_t> n = size ? size->as_uint() : std::nullopt;
      if (!n) bad("'" + e.path + "': no size, or not a whole number of bytes");
      e.size = *n;
      const auto h = store::Hash128::parse(str("xxh3"));
      if (!h) bad("'" + e.path + "': bad xxh3 hash");
      e.hash = *h;
    }
    if (e.type == Entry::Type::kSymlink) {
      e.target = str("target");
      if (e.target.empty() || e.target.find('\0') != std::string::npos)
        bad("'" + e.path + "': bad symlink target");
    }
    const size_t slash = e.path.rfind('/');
    if (slash != std::string::npos) {
      const auto parent = seen.find(e.path.substr(0, slash));
      if (parent == seen.end() || parent->second != Entry::Type::kDir)
        bad("'" + e.path + "': its parent is not a directory listed before it");
    }
    if (!seen.emplace(e.path, e.type).second) bad("'" + e.path + "' listed twice");
    m.entries.push_back(std::move(e));
  }
  return m;
}

}  // namespace cachefs::remote

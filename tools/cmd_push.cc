// cachectl push CACHE_DIR REMOTE: the tree as a manifest, the contents the
// remote lacks uploaded (in parallel, -j), then the manifest, then the ref —
// in that order, so whenever a push stops, the ref still names a manifest
// whose every object is there.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <iostream>
#include <mutex>
#include <unordered_set>

#include "common/error.h"
#include "common/units.h"
#include "remote/remote.h"
#include "tools/commands.h"
#include "tools/tree_scan.h"
#include "tools/walk.h"
#include "tools/work_queue.h"

namespace cachefs::tools {
namespace {

std::string now_rfc3339() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool unchanged(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
         a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

}  // namespace

int cmd_push(const Context& ctx, const RemoteArgs& a, const GetEnv& getenv) {
  remote::check_ref_name(a.ref);
  auto backend = remote::open_backend(a.remote, a.options, getenv);
  const auto root = open_root(a.cache_dir, "push: CACHE_DIR");
  const std::string store_dir = a.store.empty() ? a.cache_dir + "/.cachefs" : a.store;
  const auto start = std::chrono::steady_clock::now();

  ScannedTree tree;
  {
    Progress progress("hash", "files");
    tree = scan_tree(a.cache_dir, store_dir, a.jobs, &progress, "push: CACHE_DIR");
  }
  backend->prepare_for_push();

  // Each content once: is it there already, else upload it from its file.
  std::atomic<uint64_t> up_n{0}, up_bytes{0}, skip_n{0}, skip_bytes{0};
  std::mutex mu;
  std::string first_error;
  std::unordered_set<std::string> changed;  // hashes whose file changed since it was hashed
  std::atomic<bool> failed{false};
  uint64_t total_bytes = 0;
  for (const auto& [hex, src] : tree.sources) total_bytes += static_cast<uint64_t>(src.st.st_size);
  {
    Progress progress("push", "objects", tree.sources.size(), total_bytes);
    WorkQueue<std::pair<std::string, ScannedTree::Source>> queue(
        a.jobs, 4 * a.jobs + 16, [&](std::pair<std::string, ScannedTree::Source>& job) {
          if (failed.load()) return;
          const auto& [hex, src] = job;
          const uint64_t size = static_cast<uint64_t>(src.st.st_size);
          try {
            const std::string key = remote::object_key(*store::Hash128::parse(hex));
            if (backend->exists(key)) {
              skip_n.fetch_add(1);
              skip_bytes.fetch_add(size);
            } else {
              UniqueFd dir = open_beneath(root->fd.get(), parent_of(src.rel));
              UniqueFd fd;
              if (dir)
                fd.reset(::openat(dir.get(), name_of(src.rel).c_str(),
                                  O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
              struct stat st {};
              if (!fd || ::fstat(fd.get(), &st) != 0 || !unchanged(st, src.st)) {
                warn(fmt::format("{}: changed since it was hashed; left out", src.rel));
                std::lock_guard lock(mu);
                changed.insert(hex);
              } else {
                backend->put(key, fd.get(), size);
                up_n.fetch_add(1);
                up_bytes.fetch_add(size);
              }
            }
          } catch (const std::exception& e) {
            std::lock_guard lock(mu);
            if (!failed.exchange(true)) first_error = e.what();
          }
          progress.add(1, size);
        });
    for (const auto& s : tree.sources) queue.push(s);
    queue.close();
  }
  if (failed) throw remote::RemoteError("push: " + first_error + " (the remote's refs are unchanged)");

  remote::Manifest& m = tree.manifest;
  if (!changed.empty()) {
    std::erase_if(m.entries, [&](const remote::Entry& e) {
      return e.type == remote::Entry::Type::kFile && changed.count(e.hash.hex()) != 0;
    });
  }
  m.created = now_rfc3339();
  const std::string text = m.to_json();
  const store::Hash128 mh = store::hash_bytes(text.data(), text.size());
  if (!backend->exists(remote::manifest_key(mh))) backend->put_text(remote::manifest_key(mh), text);
  backend->put_text(remote::ref_key(a.ref), mh.hex() + "\n");

  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Json report = Json::object()
                    .set("remote", backend->describe())
                    .set("ref", a.ref)
                    .set("manifest", mh.hex())
                    .set("files", tree.files)
                    .set("dirs", tree.dirs)
                    .set("symlinks", tree.symlinks)
                    .set("bytes", tree.bytes)
                    .set("objects", static_cast<uint64_t>(tree.sources.size()))
                    .set("objects_transferred", up_n.load())
                    .set("bytes_transferred", up_bytes.load())
                    .set("objects_skipped", skip_n.load())
                    .set("bytes_skipped", skip_bytes.load())
                    .set("bytes_hashed", tree.hashed_bytes)
                    .set("hashes_from_store", tree.hashes_from_store)
                    .set("left_out", tree.skipped + changed.size())
                    .set("elapsed_seconds", secs);
  emit(ctx, report, [&] {
    std::cout << "pushed " << a.cache_dir << " to " << backend->describe() << " as '" << a.ref
              << "' (manifest " << mh.hex() << ")\n"
              << "entries        " << tree.files << " files, " << tree.dirs << " directories, "
              << tree.symlinks << " symlinks, " << human_bytes(tree.bytes) << "\n"
              << "uploaded       " << up_n.load() << " objects, " << human_bytes(up_bytes.load())
              << "\n"
              << "already there  " << skip_n.load() << " objects, "
              << human_bytes(skip_bytes.load()) << "\n";
    char line[64];
    std::snprintf(line, sizeof line, "%.2f s", secs);
    std::cout << "elapsed        " << line << "\n";
  });
  return 0;
}

}  // namespace cachefs::tools

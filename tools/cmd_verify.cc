// cachectl verify: rehash every object and check that it is what its name says
// (content, mode, owner) and carries its mark; report stray names under
// objects/ and what is left in tmp/. --repair moves what is wrong to quarantine/.
#include <dirent.h>
#include <fcntl.h>
#include <sys/xattr.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

#include "tools/commands.h"
#include "tools/progress.h"
#include "tools/scan.h"
#include "common/units.h"
#include "tools/work_queue.h"

namespace cachefs::tools {
namespace {

struct Item {
  std::string fan;  // "" for an entry directly under objects/
  std::string name;
  std::optional<store::ObjectKey> key;
};

struct Problem {
  std::string path;  // relative to objects/
  std::string what;
  uint64_t paths = 0;  // other links to the inode (paths sharing a damaged object)
  bool stray = false;
  std::string fan, name;
  bool quarantined = false;
};

std::vector<std::string> list_names(int dirfd) {
  std::vector<std::string> out;
  const int dup = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return out;
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    ::close(dup);
    return out;
  }
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
      out.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string octal(mode_t m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m));
  return buf;
}

// What is wrong with object `item`, or "" if nothing.
std::string check(const store::Store& s, const Item& item, uint64_t& hashed, uint64_t& links) {
  const std::string rel = item.fan + "/" + item.name;
  constexpr int kFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
  UniqueFd fd(::openat(s.objects_fd(), rel.c_str(), kFlags | O_NOATIME));
  if (!fd && errno == EPERM) fd.reset(::openat(s.objects_fd(), rel.c_str(), kFlags));
  if (!fd) {
    if (errno == ENOENT) return "";  // removed meanwhile (gc): nothing to check
    if (errno == ELOOP) return "a symbolic link, not an object";
    return std::string("cannot open: ") + std::strerror(errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return std::string("cannot stat: ") + std::strerror(errno);
  links = st.st_nlink > 0 ? st.st_nlink - 1 : 0;
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  const store::ObjectKey& k = *item.key;
  if ((st.st_mode & 07777) != k.mode)
    return "mode " + octal(st.st_mode & 07777) + " but its name says " + octal(k.mode);
  if (st.st_uid != k.uid || st.st_gid != k.gid) {
    return "owner " + std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid) +
           " but its name says " + std::to_string(k.uid) + ":" + std::to_string(k.gid);
  }
  char mark[128];
  const ssize_t n = ::fgetxattr(fd.get(), store::kObjectXattr, mark, sizeof mark);
  if (n < 0) return std::string("no ") + store::kObjectXattr + " mark";
  if (std::string_view(mark, static_cast<size_t>(n)) != item.name)
    return std::string(store::kObjectXattr) + " mark names another object";
  store::Hash128 h;
  const int err = store::hash_fd(fd.get(), static_cast<uint64_t>(st.st_size), h);
  hashed += static_cast<uint64_t>(st.st_size);
  if (err == EAGAIN) return "changed size while read (objects never change)";
  if (err != 0) return std::string("cannot read: ") + std::strerror(err);
  struct stat after {};
  if (::fstat(fd.get(), &after) == 0 &&
      (after.st_mtim.tv_sec != st.st_mtim.tv_sec || after.st_mtim.tv_nsec != st.st_mtim.tv_nsec ||
       after.st_size != st.st_size)) {
    return "changed while read (objects never change)";
  }
  if (h != k.hash) return "content hash " + h.hex() + " does not match its name";
  return "";
}

}  // namespace

int cmd_verify(const Context& ctx, bool repair, unsigned jobs) {
  const auto store = open_store(ctx, false);
  std::vector<Item> items;
  std::vector<Problem> problems;
  store->for_each_entry([&](int, const std::string& fan, const char* name,
                            const std::optional<store::ObjectKey>& key) {
    if (key) {
      items.push_back(Item{fan, name, key});
    } else {
      Problem p;
      p.path = fan.empty() ? std::string(name) : fan + "/" + name;
      p.what = fan.empty() ? "not a fan-out directory" : "not an object name";
      p.stray = true;
      p.fan = fan;
      p.name = name;
      problems.push_back(std::move(p));
    }
  });

  Progress progress("verify", "objects", items.size());
  std::atomic<uint64_t> hashed{0};
  std::mutex mu;
  {
    std::atomic<size_t> next{0};
    const unsigned n = std::max(1u, std::min<unsigned>(jobs != 0 ? jobs : default_jobs(),
                                                       static_cast<unsigned>(items.size())));
    std::vector<std::thread> workers;
    for (unsigned w = 0; w < n; ++w) {
      workers.emplace_back([&] {
        for (size_t i; (i = next.fetch_add(1)) < items.size();) {
          uint64_t bytes = 0, links = 0;
          std::string what = check(*store, items[i], bytes, links);
          hashed.fetch_add(bytes);
          progress.add(1, bytes);
          if (what.empty()) continue;
          Problem p;
          p.path = items[i].fan + "/" + items[i].name;
          p.what = std::move(what);
          p.paths = links;
          p.fan = items[i].fan;
          p.name = items[i].name;
          std::lock_guard lock(mu);
          problems.push_back(std::move(p));
        }
      });
    }
    for (auto& t : workers) t.join();
  }
  progress.finish();
  std::sort(problems.begin(), problems.end(),
            [](const Problem& a, const Problem& b) { return a.path < b.path; });

  size_t unrepaired = 0;
  for (Problem& p : problems) {
    if (!repair) {
      ++unrepaired;
      continue;
    }
    UniqueFd dir;
    int err = 0;
    if (p.fan.empty()) {
      err = store->quarantine(store->objects_fd(), p.name.c_str());
    } else {
      dir.reset(::openat(store->objects_fd(), p.fan.c_str(),
                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      err = dir ? store->quarantine(dir.get(), p.name.c_str()) : errno;
    }
    if (err == 0 || err == ENOENT) {
      p.quarantined = err == 0;
      if (err == ENOENT) p.what += " (gone meanwhile)";
    } else {
      ++unrepaired;
      warn(fmt::format("objects/{}: cannot quarantine: {}", p.path, std::strerror(err)));
    }
  }

  // tmp/ holds work in progress; entries of processes that are gone are leftovers,
  // which --repair removes (as the next import or mount would).
  if (repair) store->clean_tmp(std::chrono::hours(24));
  const std::string tmp_dir = store->path() + "/tmp";
  UniqueFd tmp(::open(tmp_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  const std::vector<std::string> tmp_entries =
      tmp ? list_names(tmp.get()) : std::vector<std::string>();

  Json damaged = Json::array();
  for (const Problem& p : problems) {
    damaged.push(Json::object()
                     .set("path", "objects/" + p.path)
                     .set("problem", p.what)
                     .set("stray", p.stray)
                     .set("other_links", p.paths)
                     .set("quarantined", p.quarantined));
  }
  Json tmp_json = Json::array();
  for (const auto& n : tmp_entries) tmp_json.push("tmp/" + n);
  Json report = Json::object()
                    .set("store", store->path())
                    .set("objects", items.size())
                    .set("bytes_hashed", hashed.load())
                    .set("damaged", problems.size())
                    .set("problems", damaged)
                    .set("repaired", problems.size() - unrepaired)
                    .set("tmp_entries", tmp_json)
                    .set("ok", unrepaired == 0);
  emit(ctx, report, [&] {
    std::cout << "store     " << store->path() << "\n"
              << "objects   " << items.size() << " checked, " << human_bytes(hashed.load())
              << " hashed\n";
    for (const Problem& p : problems) {
      std::cout << (p.stray ? "stray     " : "damaged   ") << "objects/" << p.path << ": "
                << p.what;
      if (p.paths)
        std::cout << " (shared by " << p.paths << " path" << (p.paths == 1 ? "" : "s") << ")";
      if (p.quarantined) std::cout << " -> moved to quarantine/";
      std::cout << "\n";
    }
    for (const auto& n : tmp_entries) {
      std::cout << "tmp       tmp/" << n
                << ": work in progress, or left by an interrupted process (--repair or the "
                   "next import removes it)\n";
    }
    if (problems.empty()) {
      std::cout << "result    ok\n";
    } else if (unrepaired == 0) {
      std::cout << "result    " << problems.size() << " problem(s), all moved to quarantine/\n";
    } else {
      std::cout << "result    " << unrepaired << " problem(s)"
                << (repair ? " could not be repaired\n" : "; --repair moves them to quarantine/\n");
    }
  });
  return unrepaired == 0 ? 0 : 1;
}

}  // namespace cachefs::tools

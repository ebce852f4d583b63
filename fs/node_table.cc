#include "fs/node_table.h"

#include <cassert>

namespace cachefs {

#include <algorithm>
#include <vector>

NodeTable::NodeTable(size_t branch_count, std::vector<UniqueFd> root_fds)
    : branches_(branch_count) {
  root_ = new_dir_node();
  root_->nlookup = 1;  // the kernel never forgets the root
  for (size_t b = 0; b < branches_; ++b) {
    struct stat st {};
    ::fstat(root_fds[b].get(), &st);
    publish_dir_fd(root_.get(), static_cast<BranchIndex>(b), std::move(root_fds[b]), st);
    root_->dirs[b].slot.pin();  // the roots are never reopened
  }
  root_->cached_path = "/";
}

NodeTable::~NodeTable() {
  // The kernel connection is gone: free everything still known.
  for (Node* n : all_) delete n;
  for (auto& [when, n] : graveyard_) delete n;
}

std::unique_ptr<Node> NodeTable::new_dir_node() {
  auto n = std::make_unique<Node>(Node::Kind::kDirectory);
  n->dirs = std::make_unique<BranchDir[]>(branches_);
  return n;
}

Node* NodeTable::insert_locked(Key key, std::unique_ptr<Node> fresh) {
  Node* n = fresh.release();
  n->parent = const_cast<Node*>(key.parent);
  n->name = key.name;
  ++n->parent->child_refs;
  n->indexed = true;
  names_[std::move(key)] = n;
  all_.insert(n);
  return n;
}

void NodeTable::retire_locked(std::unordered_map<Key, Node*, KeyHash>::iterator it) {
  it->second->indexed = false;
  names_.erase(it);
}

Node* NodeTable::intern_file(Node* parent, std::string_view name,
                             std::shared_ptr<FileBacking> backing, nlink_t nlink) {
  std::lock_guard lock(mu_);
  const InodeKey ik{backing->dev, backing->ino};
  if (nlink > 1) {
    if (auto l = links_.find(ik); l != links_.end()) {
      ++l->second->nlookup;
      return l->second;
    }
  }
  Key key{parent, std::string(name)};
  auto it = names_.find(key);
  Node* n = it == names_.end() ? nullptr : it->second;
  if (n != nullptr) {
    const auto have = n->is_dir() ? nullptr : n->backing();
    if (have == nullptr || have->dev != backing->dev || have->ino != backing->ino) {
      retire_locked(it);
      n = nullptr;
    }
  }
  if (n == nullptr) {
    auto fresh = std::make_unique<Node>(Node::Kind::kOther);
    fresh->set_backing(std::move(backing));
    n = insert_locked(std::move(key), std::move(fresh));
  }
  if (nlink > 1) links_.try_emplace(ik, n);
  ++n->nlookup;
  return n;
}

void NodeTable::add_link(Node* n) {
  std::lock_guard lock(mu_);
  const auto b = n->backing();
  links_[InodeKey{b->dev, b->ino}] = n;
  ++n->nlookup;
}

FdLease NodeTable::publish_dir_fd(Node* dir, BranchIndex b, UniqueFd fd, const struct stat& st) {
  BranchDir& bd = dir->dirs[b];
  // A directory node is the directory at its name: if the branch's directory was
  // replaced, the new one is the member now.
  bd.dev.store(st.st_dev, std::memory_order_relaxed);
  bd.ino.store(st.st_ino, std::memory_order_relaxed);
  bd.known.store(true, std::memory_order_release);
  bd.absent.store(false, std::memory_order_relaxed);
  return bd.slot.install(std::move(fd));
}

Node* NodeTable::find(Node* parent, std::string_view name) {
  std::lock_guard lock(mu_);
  auto it = names_.find(Key{parent, std::string(name)});
  if (it == names_.end()) return nullptr;
  ++it->second->nlookup;
  return it->second;
}

NodeTable::WatchHit NodeTable::find_for_watch(std::string_view rel, std::string_view name) {
  WatchHit hit;
  std::lock_guard lock(mu_);
  Node* dir = root_.get();
  while (!rel.empty()) {
    const size_t slash = rel.find('/');
    auto it = names_.find(Key{dir, std::string(rel.substr(0, slash))});
    if (it == names_.end() || !it->second->is_dir()) return hit;
    dir = it->second;
    rel = slash == std::string_view::npos ? std::string_view() : rel.substr(slash + 1);
  }
  hit.dir = ino(dir);
  if (!name.empty()) {
    auto it = names_.find(Key{dir, std::string(name)});
    if (it != names_.end()) {
      hit.child = ino(it->second);
      hit.child_kernel_written = it->second->kernel_writers.load(std::memory_order_relaxed) != 0;
    }
  }
  return hit;
}

void NodeTable::ref(Node* n) {
  std::lock_guard lock(mu_);
  ++n->nlookup;
}

void NodeTable::evict_idle(int64_t target) {
  std::lock_guard lock(mu_);  // no node is freed meanwhile
  std::vector<std::pair<uint64_t, FdSlot*>> idle;
  auto consider = [&](FdSlot& s) {
    if (s.open()) idle.emplace_back(s.last_use(), &s);
  };
  for (Node* n : all_) {
    if (n->is_dir()) {
      for (size_t b = 0; b < branches_; ++b) consider(n->dirs[b].slot);
    } else if (const auto f = n->backing()) {
      consider(f->path);
      consider(f->rw);
      consider(f->ro);
    }
  }
  std::sort(idle.begin(), idle.end());
  for (auto& [use, slot] : idle) {
    if (FdSlot::open_count() <= target) break;
    slot->evict();
  }
}

Node* NodeTable::intern_dir(Node* parent, std::string_view name, std::span<Found> found,
                            BranchIndex primary) {
  std::lock_guard lock(mu_);
  Key key{parent, std::string(name)};
  auto it = names_.find(key);
  Node* n = it == names_.end() ? nullptr : it->second;
  if (n != nullptr) {
    bool stale = !n->is_dir();
    for (size_t b = 0; !stale && b < branches_; ++b) {
      if (!found[b].present) continue;
      stale = n->dirs[b].known.load(std::memory_order_acquire) &&
              (n->dirs[b].dev.load(std::memory_order_relaxed) != found[b].st.st_dev ||
               n->dirs[b].ino.load(std::memory_order_relaxed) != found[b].st.st_ino);
    }
    if (stale) {
      retire_locked(it);
      n = nullptr;
    }
  }
  if (n == nullptr) n = insert_locked(std::move(key), new_dir_node());
  ++n->nlookup;
  n->primary.store(primary, std::memory_order_relaxed);
  for (size_t b = 0; b < branches_; ++b) {
    if (!found[b].present) continue;
    if (found[b].fd.valid()) {
      if (!n->dirs[b].slot.open()) {
        publish_dir_fd(n, static_cast<BranchIndex>(b), std::move(found[b].fd), found[b].st);
      }
    } else if (!n->dirs[b].known.load(std::memory_order_acquire)) {
      // Known to exist; its descriptor is opened when first needed.
      n->dirs[b].dev.store(found[b].st.st_dev, std::memory_order_relaxed);
      n->dirs[b].ino.store(found[b].st.st_ino, std::memory_order_relaxed);
      n->dirs[b].known.store(true, std::memory_order_release);
    }
    n->dirs[b].absent.store(false, std::memory_order_relaxed);
  }
  return n;
}

void NodeTable::release_locked(Node* n) {
  while (n != nullptr && n != root_.get() && n->nlookup == 0 && n->child_refs == 0) {
    if (n->indexed) names_.erase(Key{n->parent, n->name});
    if (!n->is_dir()) {
      const auto b = n->backing();
      if (auto l = links_.find(InodeKey{b->dev, b->ino}); l != links_.end() && l->second == n) {
        links_.erase(l);
      }
    }
    Node* parent = n->parent;
    all_.erase(n);
    bury_locked(n);
    --parent->child_refs;
    n = parent;
  }
}

void NodeTable::retire_file_slots(Node* n) {
  if (const auto f = n->backing(); f.use_count() <= 2) {  // the node's and ours
    f->path.retire();
    f->rw.retire();
    f->ro.retire();
  }
}

void NodeTable::bury_locked(Node* n) {
  // Nothing reaches a forgotten node by name any more: close what it holds now
  // (a racing request keeps its lease, and the descriptor, until it is done).
  if (n->is_dir()) {
    for (size_t b = 0; b < branches_; ++b) {
      BranchDir& d = n->dirs[b];
      if (dir_forgotten_ && d.marked.load(std::memory_order_acquire) != 0) dir_forgotten_(d);
      d.slot.retire();
    }
  } else {
    retire_file_slots(n);
  }
  constexpr auto kGrace = std::chrono::seconds(5);
  const auto now = std::chrono::steady_clock::now();
  while (!graveyard_.empty() && now - graveyard_.front().first > kGrace) {
    delete graveyard_.front().second;
    graveyard_.pop_front();
  }
  graveyard_.emplace_back(now, n);
}

void NodeTable::forget(Node* n, uint64_t count) {
  std::lock_guard lock(mu_);
  assert(n->nlookup >= count);
  n->nlookup -= count;
  if (n->nlookup != 0 && !n->indexed && !n->is_dir() &&
      n->nlookup == (n->dedup_queued.load(std::memory_order_acquire) ? 1u : 0u)) {
    // An unlinked file the kernel has forgotten, held only by the dedup queue:
    // nobody can open or read it any more, so the descriptors pinned when its
    // name went close now, not when the dedup worker comes to it (which then
    // finds the file gone). After an untar that worker may be tens of thousands
    // of files behind, and an rm -rf meanwhile pinned one descriptor per file
    // until the daemon ran out of them (EMFILE: "Directory not empty").
    retire_file_slots(n);
  }
  release_locked(n);
}

Node* NodeTable::get_parent(Node* n, std::string& name) {
  std::lock_guard lock(mu_);
  name = n->name;
  if (n->parent != nullptr) ++n->parent->child_refs;
  return n->parent;
}

void NodeTable::put_parent(Node* parent) {
  std::lock_guard lock(mu_);
  --parent->child_refs;
  release_locked(parent);
}

void NodeTable::move(Node* parent, std::string_view name, Node* new_parent,
                     std::string_view new_name) {
  std::lock_guard lock(mu_);
  auto dst = names_.find(Key{new_parent, std::string(new_name)});
  if (dst != names_.end()) retire_locked(dst);
  auto src = names_.find(Key{parent, std::string(name)});
  if (src == names_.end()) return;
  Node* n = src->second;
  names_.erase(src);
  if (n->is_dir()) ++rename_gen_;  // every cached path below it is now wrong
  ++new_parent->child_refs;
  n->parent = new_parent;
  n->name = std::string(new_name);
  names_[Key{new_parent, n->name}] = n;
  --parent->child_refs;
  release_locked(parent);
}

void NodeTable::drop(Node* parent, std::string_view name) {
  std::lock_guard lock(mu_);
  auto it = names_.find(Key{parent, std::string(name)});
  if (it != names_.end()) retire_locked(it);
}

const std::string& NodeTable::dir_path_locked(Node* dir) {
  if (dir == root_.get() || dir->cached_gen == rename_gen_) return dir->cached_path;
  const std::string& up = dir_path_locked(dir->parent);
  dir->cached_path.reserve(up.size() + dir->name.size() + 1);
  dir->cached_path.assign(up).append(dir->name).push_back('/');
  dir->cached_gen = rename_gen_;
  return dir->cached_path;
}

std::string NodeTable::child_path(Node* dir, std::string_view name, bool as_dir) {
  std::lock_guard lock(mu_);
  const std::string& base = dir_path_locked(dir);
  std::string p;
  p.reserve(base.size() + name.size() + 1);
  p.append(base).append(name);
  if (as_dir) p.push_back('/');
  return p;
}

}  // namespace cachefs

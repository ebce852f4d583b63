#include "fs/node_table.h"

#include <cassert>

namespace cachefs {

Node::~Node() {
  for (auto* a : {&rw, &ro}) {
    const int d = a->load(std::memory_order_relaxed);
    if (d >= 0) ::close(d);
  }
}

NodeTable::NodeTable(size_t branch_count, std::span<UniqueFd> root_fds) : branches_(branch_count) {
  root_ = new_dir_node();
  root_->nlookup = 1;  // the kernel never forgets the root
  for (size_t b = 0; b < branches_; ++b) {
    struct stat st {};
    ::fstat(root_fds[b].get(), &st);
    root_->dirs[b].dev.store(st.st_dev, std::memory_order_relaxed);
    root_->dirs[b].ino.store(st.st_ino, std::memory_order_relaxed);
    root_->dirs[b].fd.store(root_fds[b].release(), std::memory_order_release);
  }
  root_->cached_path = "/";
  root_->cached_gen = UINT64_MAX;  // never stale
}

static void close_dir_fds(Node* n, size_t branches) {
  if (!n->dirs) return;
  for (size_t b = 0; b < branches; ++b) {
    const int fd = n->dirs[b].fd.load(std::memory_order_acquire);
    if (fd >= 0) ::close(fd);
  }
}

NodeTable::~NodeTable() {
  // The kernel connection is gone: free everything still known.
  for (Node* n : all_) {
    close_dir_fds(n, branches_);
    delete n;
  }
  close_dir_fds(root_.get(), branches_);
}

std::unique_ptr<Node> NodeTable::new_dir_node() {
  auto n = std::make_unique<Node>(Node::Kind::kDirectory);
  n->dirs = std::make_unique<BranchDir[]>(branches_);
  return n;
}

Node* NodeTable::intern_file(BranchIndex b, UniqueFd fd, bool fd_writable, const struct stat& st) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = files_.try_emplace(FileKey{st.st_dev, st.st_ino}, nullptr);
  if (!inserted) {
    ++it->second->nlookup;
    return it->second;  // `fd` closes on return
  }
  auto n = std::make_unique<Node>(Node::Kind::kOther);
  n->branch = b;
  n->fd = std::move(fd);
  n->fd_writable = fd_writable;
  n->dev = st.st_dev;
  n->ino = st.st_ino;
  n->nlookup = 1;
  n->indexed = true;
  it->second = n.release();
  all_.insert(it->second);
  return it->second;
}

int NodeTable::publish_dir_fd(Node* dir, BranchIndex b, UniqueFd fd, const struct stat& st) {
  BranchDir& slot = dir->dirs[b];
  int expected = -1;
  // dev/ino are only read after a successful acquire-load of fd; a racing writer
  // stores identical values for the same directory.
  slot.dev.store(st.st_dev, std::memory_order_relaxed);
  slot.ino.store(st.st_ino, std::memory_order_relaxed);
  if (slot.fd.compare_exchange_strong(expected, fd.get(), std::memory_order_acq_rel)) {
    return fd.release();
  }
  return expected;
}

Node* NodeTable::intern_dir(Node* parent, std::string_view name, std::span<Found> found,
                            BranchIndex primary) {
  std::lock_guard lock(mu_);
  DirKey key{parent, std::string(name)};
  auto it = dirs_.find(key);
  Node* n = it == dirs_.end() ? nullptr : it->second;
  if (n != nullptr) {
    // Stale if a branch directory we hold is not the one now at that name.
    for (size_t b = 0; b < branches_; ++b) {
      if (!found[b].fd.valid()) continue;
      const int have = n->dirs[b].fd.load(std::memory_order_acquire);
      if (have >= 0 && (n->dirs[b].dev.load(std::memory_order_relaxed) != found[b].st.st_dev ||
                        n->dirs[b].ino.load(std::memory_order_relaxed) != found[b].st.st_ino)) {
        unindex_locked(n);
        n = nullptr;
        break;
      }
    }
  }
  if (n == nullptr) {
    auto fresh = new_dir_node();
    n = fresh.release();
    n->parent = parent;
    n->name = key.name;
    ++parent->child_refs;
    n->indexed = true;
    dirs_[std::move(key)] = n;
    all_.insert(n);
  }
  ++n->nlookup;
  n->primary.store(primary, std::memory_order_relaxed);
  for (size_t b = 0; b < branches_; ++b) {
    if (found[b].fd.valid() && n->dirs[b].fd.load(std::memory_order_acquire) < 0) {
      publish_dir_fd(n, static_cast<BranchIndex>(b), std::move(found[b].fd), found[b].st);
    }
  }
  return n;
}

void NodeTable::unindex_locked(Node* n) {
  if (!n->indexed) return;
  n->indexed = false;
  if (n->is_dir()) {
    dirs_.erase(DirKey{n->parent, n->name});
  } else {
    files_.erase(FileKey{n->dev, n->ino});
  }
}

void NodeTable::release_locked(Node* n) {
  while (n != nullptr && n != root_.get() && n->nlookup == 0 && n->child_refs == 0) {
    unindex_locked(n);
    Node* parent = n->parent;
    close_dir_fds(n, branches_);
    all_.erase(n);
    delete n;
    if (parent == nullptr) break;
    --parent->child_refs;
    n = parent;
  }
}

void NodeTable::forget(Node* n, uint64_t count) {
  std::lock_guard lock(mu_);
  assert(n->nlookup >= count);
  n->nlookup -= count;
  release_locked(n);
}

Node* NodeTable::get_parent(Node* dir, std::string& name) {
  std::lock_guard lock(mu_);
  name = dir->name;
  if (dir->parent != nullptr) ++dir->parent->child_refs;
  return dir->parent;
}

void NodeTable::put_parent(Node* parent) {
  std::lock_guard lock(mu_);
  --parent->child_refs;
  release_locked(parent);
}

void NodeTable::move_dir(Node* parent, std::string_view name, Node* new_parent,
                         std::string_view new_name) {
  std::lock_guard lock(mu_);
  ++rename_gen_;
  auto dst = dirs_.find(DirKey{new_parent, std::string(new_name)});
  if (dst != dirs_.end()) {
    dst->second->indexed = false;
    dirs_.erase(dst);
  }
  auto src = dirs_.find(DirKey{parent, std::string(name)});
  if (src == dirs_.end()) return;
  Node* n = src->second;
  dirs_.erase(src);
  ++new_parent->child_refs;
  n->parent = new_parent;
  n->name = std::string(new_name);
  dirs_[DirKey{new_parent, n->name}] = n;
  --parent->child_refs;
  release_locked(parent);
}

void NodeTable::drop_dir(Node* parent, std::string_view name) {
  std::lock_guard lock(mu_);
  auto it = dirs_.find(DirKey{parent, std::string(name)});
  if (it == dirs_.end()) return;
  it->second->indexed = false;
  dirs_.erase(it);
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

size_t NodeTable::size() {
  std::lock_guard lock(mu_);
  return all_.size() + 1;
}

}  // namespace cachefs

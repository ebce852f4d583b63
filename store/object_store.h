// The object store: immutable objects named by content and by what must not be
// merged apart, shared with the backing trees through hard links.
//
//   <store>/cachefs-store            marker (format version); a store has one
//   <store>/objects/<ab>/<name>      one object; <ab> = first two hex digits
//   <store>/tmp/<pid>-<n>            work in progress of a live process
//   <store>/quarantine/<name>        objects `cachectl verify --repair` found damaged
//
// An object name is "<xxh3-128 hex>.<mode, 4 octal digits>.<uid>.<gid>": a hard
// link shares the inode, so content, mode bits and ownership are all part of what
// an object is. An object's inode also carries the xattr trusted.cachefs.object
// (its name): a backing file with more than one link and that xattr is a path of
// a deduplicated object, not a hard link a user made. Objects only ever appear
// under their final name complete: a file is marked, checked unchanged, and
// linked under that name in one step (a link never replaces anything); paths
// are swapped through tmp/ with RENAME_EXCHANGE.
//
// Several processes (two cachefs daemons over one store, cachectl import) may
// write and deduplicate the same backing files, so who may touch a file is
// settled on the file itself, with flock(2) (a lock belongs to an open file
// description, so it is released when its descriptor is closed, also by a
// process that dies):
//  * a writer holds LOCK_SH on the descriptor it writes through for a whole
//    burst of changes, and after taking it looks again at what the inode is:
//    made an object meanwhile (kObjectXattr), or swapped out of its name for an
//    identical object (kReplacedXattr)? Then it must not write it;
//  * dedup holds LOCK_EX, never waiting for it (WriteLock), around its last
//    check that the file is unchanged and the adopt or replace that follows. A
//    file someone is writing is left for later.
#pragma once

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "common/unique_fd.h"
#include "store/hash.h"

namespace cachefs::store {

inline constexpr const char* kObjectXattr = "trusted.cachefs.object";
// Set (to the object's name) on a file dedup swapped out of its name for an
// identical object (Store::replace_by_object): whoever still holds the file open
// for writing writes to the object's path instead (through a private copy),
// rather than into a file no name shows any more.
inline constexpr const char* kReplacedXattr = "trusted.cachefs.replaced";
inline constexpr const char* kMarker = "cachefs-store";
inline constexpr int kFormat = 1;

struct ObjectKey {
  Hash128 hash;
  mode_t mode = 0;  // permission and set-id bits (07777)
  uid_t uid = 0;
  gid_t gid = 0;

  static ObjectKey of(const Hash128& h, const struct stat& st) {
    return ObjectKey{h, static_cast<mode_t>(st.st_mode & 07777), st.st_uid, st.st_gid};
  }
  std::string name() const;
  std::string fanout() const { return hash.hex().substr(0, 2); }
  static std::optional<ObjectKey> parse(std::string_view name);
  bool operator==(const ObjectKey&) const = default;
};

// Why a file is left alone by dedup (kNone: it may be deduplicated).
enum class Skip {
  kNone,
  kNotRegular,
  kEmpty,
  kHardLinked,   // links a user made (or an object already)
  kSetId,        // set-user/group-id bits: never shared
  kXattrs,       // extended attributes of its own, which objects do not carry
  kOtherDevice,  // not on the store's filesystem
};
const char* to_string(Skip s);

// LOCK_EX on a file's open file description, tried once without waiting (see
// the top of this file); released when this goes. busy(): a writer holds
// LOCK_SH on the file (another process, or another descriptor of this one).
class WriteLock {
 public:
  explicit WriteLock(int fd);
  ~WriteLock();
  WriteLock(const WriteLock&) = delete;
  WriteLock& operator=(const WriteLock&) = delete;
  bool held() const { return err_ == 0; }
  bool busy() const { return err_ == EWOULDBLOCK; }
  int error() const { return err_; }

 private:
  int fd_;
  int err_;
};

// The object name of the inode behind `fd` (any descriptor, O_PATH included) if
// it is a store object on device `store_dev`; std::nullopt otherwise.
std::optional<std::string> object_name(int fd, const struct stat& st, dev_t store_dev);

class Store {
 public:
  // Opens the store at `dir`; with `create`, initialises an empty (or missing)
  // directory. Throws UsageError for anything that is not a store of this format.
  static std::unique_ptr<Store> open(const std::string& dir, bool create);

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  int objects_fd() const { return objects_.get(); }
  dev_t dev() const { return dev_; }

  // Why `fd` (stat `st`) may not be deduplicated, kNone if it may.
  Skip skip_reason(int fd, const struct stat& st) const;

  // Opens object `key` read-only; an empty fd with `err` set if it cannot.
  UniqueFd open_object(const ObjectKey& key, int& err) const;

  // What deduplicating a file takes: its key, and the object to share if one
  // with the same key and the same bytes exists (else the file becomes it).
  struct Plan {
    ObjectKey key;
    UniqueFd object;         // an identical object, read-only; empty: adopt the file
    struct stat object_st{};  // its stat, when set
    bool collision = false;  // an object of that key holds other bytes: leave the file
  };
  // Hashes `fd` (stat `st`, a regular file) and looks for its object. Returns 0 or
  // an errno; EAGAIN when the file changed while it was read.
  int plan(int fd, const struct stat& st, Plan& out) const;

  // Makes the inode behind `fd` the object `key`: marks it, links it into place.
  // EEXIST: another process stored that key first (plan again to share it).
  // A file others may write is held under its WriteLock, checked unchanged.
  int adopt(int fd, const ObjectKey& key) const;

  // Replaces `name` in directory `dirfd`, which must still be inode (dev, ino), by
  // the inode behind `fd` (an object, or a private copy made by private_copy), in
  // one atomic exchange. ESTALE when the name holds something else by then (left
  // as it was); EXDEV when the directory is not on the store's filesystem.
  // The inode's data is made durable (fdatasync) before the exchange: a name
  // whose own file was fsync'ed must not come back from a power cut pointing at
  // an inode whose bytes never reached the disk. The directory's atime and
  // mtime are put back: a user sees no change there. `dir_lock`, when given, is
  // held exclusively from the first look at those times to their put-back: the
  // caller's own changes to the directory hold it shared, and none is lost.
  int replace(int dirfd, const char* name, dev_t dev, ino_t ino, int fd,
              std::shared_mutex* dir_lock = nullptr) const;

  // Dedup's replace: `name` in `dirfd`, which must still be the file `file`
  // (stat `st`; the caller holds its WriteLock and found it unchanged), is
  // replaced by `object`, the identical object `key`, as by replace(). The file
  // is marked kReplacedXattr first, so that a process still holding it open for
  // writing can tell "dedup put an identical object at my name" (write there,
  // through a private copy) from "a user replaced or removed the name" (keep
  // writing the file, as POSIX says); the mark is taken away again if the file
  // keeps its name. Returns as replace().
  int replace_by_object(int dirfd, const char* name, int file, const struct stat& st, int object,
                        const ObjectKey& key, std::shared_mutex* dir_lock = nullptr) const;

  // Called after a path of the inode behind `fd` was removed: if that inode is
  // an object and the object's own name is now its last one (what `cachectl gc`
  // would remove), removes it, so deleting a file frees its space at once — on
  // a full disk, that is what the user deleted it for. Best effort, never fails.
  void drop_if_unused(int fd) const;

  // An unlinked copy of the first `len` bytes of `src` with the mode, owner and
  // times of `st`, on the filesystem of directory `dirfd`: what a write to a
  // shared object turns the writer's path into. Empty with `err` set on failure.
  static UniqueFd private_copy(int dirfd, int src, const struct stat& st, uint64_t len, int& err);

  // Every entry under objects/: fn(fan-out directory fd, entry name, parsed key or
  // nullopt for a name that is not an object's).
  void for_each_object(
      const std::function<void(int dirfd, const char* name, const std::optional<ObjectKey>&)>& fn)
      const;

  // The same walk for reports and repairs that must name what they find: also
  // passes the fan-out directory's name, and entries of objects/ itself that are
  // not directories (fan "", dirfd objects_fd(), key nullopt).
  void for_each_entry(const std::function<void(int dirfd, const std::string& fan, const char* name,
                                               const std::optional<ObjectKey>&)>& fn) const;

  // Moves a damaged object out of objects/ into quarantine/.
  int quarantine(int dirfd, const char* name) const;

  // Removes tmp/ entries left by processes that are gone (or older than `age`).
  void clean_tmp(std::chrono::seconds age) const;

 private:
  Store() = default;
  int link_tmp(int fd, std::string& tmpname) const;
  int fanout_dir(const std::string& fan, UniqueFd& out) const;

  std::string path_;
  UniqueFd fd_, objects_, tmp_, quarantine_;
  dev_t dev_ = 0;
};

}  // namespace cachefs::store

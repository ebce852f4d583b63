// The few pieces of the FUSE protocol (linux/fuse.h, a stable ABI) the daemon
// reads and writes itself, below libfuse: the request and reply headers.
// libfuse does not install its copy of the kernel header.
#pragma once

#include <cstdint>

namespace cachefs::fuse_abi {

struct InHeader {  // struct fuse_in_header
  uint32_t len;
  uint32_t opcode;
  uint64_t unique;
  uint64_t nodeid;
  uint32_t uid, gid, pid;
  uint16_t total_extlen, padding;
};
static_assert(sizeof(InHeader) == 40);

struct OutHeader {  // struct fuse_out_header
  uint32_t len;
  int32_t error;
  uint64_t unique;
};
static_assert(sizeof(OutHeader) == 16);

constexpr uint32_t kOpSetattr = 4;   // FUSE_SETATTR
constexpr uint32_t kOpWrite = 16;    // FUSE_WRITE
constexpr uint32_t kOpInit = 26;     // FUSE_INIT

}  // namespace cachefs::fuse_abi

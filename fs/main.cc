// cachefs: mount a routed cache. Usage errors exit 2 with one line on stderr.
#include <cstdio>
#include <cstdlib>

#include "common/error.h"
#include "common/log.h"
#include "fs/filesystem.h"
#include "fs/mount_config.h"

int main(int argc, char** argv) {
  using namespace cachefs;
  try {
    MountConfig cfg;
    if (!parse_mount_args(
            argc, argv, [](const char* n) { return std::getenv(n); }, cfg))
      return 0;
    setup_logging("cachefs", cfg.log_level, false);
    validate_paths(cfg);
    return run_mount(cfg);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "cachefs: %s\n", e.what());
    return 2;
  }
}

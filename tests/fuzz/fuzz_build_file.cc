// melange build files and pipeline files are parsed before anything is
// mounted or started: whatever the bytes, the parser gives a BuildFile /
// PipelineFile or throws UsageError (one line, file:line:col) — never another
// exception, a crash or undefined behaviour. The first byte picks the parser.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.h"
#include "launcher/build_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if ((data[0] & 1) != 0) {
      (void)cachefs::launcher::parse_pipeline_yaml(text, "fuzz.yaml");
    } else {
      (void)cachefs::launcher::parse_build_yaml(text, "fuzz.yaml");
    }
  } catch (const cachefs::UsageError& e) {
    const std::string m = e.what();
    if (m.find('\n') != std::string::npos && m.find("fuzz.yaml") == std::string::npos)
      __builtin_trap();  // errors are one line naming the file
  }
  return 0;
}

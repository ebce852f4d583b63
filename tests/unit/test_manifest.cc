// The remote manifest parser on hostile sizes (tests/fuzz/fuzz_manifest found a
// size of 1e30 cast to uint64_t: undefined behaviour). Only whole numbers in
// uint64_t's range are sizes.
#include <gtest/gtest.h>

#include <string>

#include "remote/manifest.h"
#include "remote/remote.h"

namespace cachefs::remote {
namespace {

std::string WithSize(const std::string& size) {
  return R"({"format": "cachefs-manifest", "version": 1, "created": "x", "entries": [)"
         R"({"path": "a", "type": "file", "mode": "0644", "size": )" +
         size + R"(, "xxh3": "0123456789abcdef0123456789abcdef"}]})";
}

TEST(Manifest, SizesAreWholeNumbersInRange) {
  EXPECT_EQ(Manifest::parse(WithSize("12")).entries.at(0).size, 12u);
  EXPECT_EQ(Manifest::parse(WithSize("1e3")).entries.at(0).size, 1000u);
  EXPECT_EQ(Manifest::parse(WithSize("18446744073709551615")).entries.at(0).size,
            18446744073709551615ull);
  for (const char* bad : {"1e30", "-1", "1.5", "-0.5", "\"12\"", "null", "1e19999"}) {
    EXPECT_THROW(Manifest::parse(WithSize(bad)), RemoteError) << bad;
  }
}

}  // namespace
}  // namespace cachefs::remote

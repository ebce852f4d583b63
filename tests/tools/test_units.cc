// Sizes, ages and the JSON cachectl prints and reads.
#include <gtest/gtest.h>

#include "common/json.h"
#include "common/units.h"

namespace cachefs::tools {
namespace {

TEST(Units, SizesAreBinaryLikeCcache) {
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("100K"), 100u * 1024);
  EXPECT_EQ(parse_size("500M"), 500ull << 20);
  EXPECT_EQ(parse_size("10G"), 10ull << 30);
  EXPECT_EQ(parse_size("1.5G"), 3ull << 29);
  EXPECT_EQ(parse_size("2T"), 2ull << 40);
  EXPECT_EQ(parse_size("10g"), 10ull << 30);
  EXPECT_EQ(parse_size("10GiB"), 10ull << 30);
  EXPECT_EQ(parse_size("10Gi"), 10ull << 30);
  EXPECT_EQ(parse_size("10GB"), 10ull << 30);
  for (const char* bad : {"", "G", "10Q", "1.5", "-1G", "10 G", "1.2.3G", "10GG", "0x10", "1e3"})
    EXPECT_FALSE(parse_size(bad)) << bad;
}

TEST(Units, Ages) {
  EXPECT_EQ(parse_age("45s"), 45u);
  EXPECT_EQ(parse_age("90m"), 90u * 60);
  EXPECT_EQ(parse_age("12h"), 12u * 3600);
  EXPECT_EQ(parse_age("30d"), 30u * 86400);
  EXPECT_EQ(parse_age("2w"), 14u * 86400);
  EXPECT_EQ(parse_age("1.5h"), 5400u);
  for (const char* bad : {"", "30", "d", "3x", "30dd", "-1d", "30 d"})
    EXPECT_FALSE(parse_age(bad)) << bad;
}

TEST(Units, HumanBytes) {
  EXPECT_EQ(human_bytes(512), "512 B");
  EXPECT_EQ(human_bytes(1536), "1.50 KiB");
  EXPECT_EQ(human_bytes(10ull << 30), "10.0 GiB");
}

TEST(JsonTest, RoundTrips) {
  Json o = Json::object()
               .set("s", "a \"q\" \\ \n\x01")
               .set("n", 42)
               .set("big", 18446744073709551615ull)
               .set("neg", -3)
               .set("d", 1.5)
               .set("b", true)
               .set("z", nullptr)
               .set("a", Json(Json::Array{Json(1), Json("x")}));
  for (int indent : {-1, 2}) {
    std::string err;
    auto back = Json::parse(o.dump(indent), &err);
    ASSERT_TRUE(back) << err;
    EXPECT_EQ(back->dump(), o.dump());
  }
  EXPECT_EQ(Json::parse(R"({"u":"\u00e9\ud83d\ude00"})")->find("u")->str(),
            "\xc3\xa9\xf0\x9f\x98\x80");
  for (const char* bad : {"", "{", "{\"a\"}", "[1,]", "tru", "{\"a\":1} x", "\"\x01\""})
    EXPECT_FALSE(Json::parse(bad)) << bad;
}

}  // namespace
}  // namespace cachefs::tools

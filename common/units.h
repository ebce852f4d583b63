// Sizes and ages as users write them (ccache's style) and as reports print them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cachefs {

// "10G", "500M", "1.5G", "2T", "100K", "4096": a number (a decimal fraction is
// allowed with a suffix) and an optional K, M, G or T (binary: ×1024; "Ki",
// "KiB", "KB" and lower case are accepted too). std::nullopt if malformed.
std::optional<uint64_t> parse_size(std::string_view text);

// "30d", "12h", "90m", "45s", "2w": a number and a unit (s, m, h, d, w), in
// seconds. std::nullopt if malformed.
std::optional<uint64_t> parse_age(std::string_view text);

// 1536 -> "1.5 KiB"; below 1 KiB: "512 B".
std::string human_bytes(uint64_t bytes);

}  // namespace cachefs

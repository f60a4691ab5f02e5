// Checksums of stored bytes: XXH64 with seed 0, written in manifests as 16 lowercase hex digits.
// Pure functions, thread safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace strata::storage {

uint64_t xxhash64(std::span<const std::byte> bytes);
std::string checksum_hex(uint64_t h);                          // "ef46db3751d8e999"
std::optional<uint64_t> parse_checksum_hex(std::string_view s);  // nullopt unless 16 hex digits

}  // namespace strata::storage

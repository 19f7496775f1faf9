// Stable, non-cryptographic hashes of keys for file and database names.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace originfs {

// FNV-1a, 64 bits.
uint64_t KeyHash64(std::string_view key);

// 128 bits (FNV-1a plus a multiply-xorshift lane) as 32 lowercase hex digits:
// collisions are not a practical concern for names derived from keys.
std::string KeyHash128Hex(std::string_view key);

}  // namespace originfs

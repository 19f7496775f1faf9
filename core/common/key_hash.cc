#include "core/common/key_hash.h"

#include <spdlog/fmt/fmt.h>

namespace originfs {

uint64_t KeyHash64(std::string_view key) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string KeyHash128Hex(std::string_view key) {
  uint64_t h2 = 0x9e3779b97f4a7c15ull;
  for (unsigned char c : key) {
    h2 = (h2 ^ c) * 0xff51afd7ed558ccdull;
    h2 ^= h2 >> 31;
  }
  return fmt::format("{:016x}{:016x}", KeyHash64(key), h2);
}

}  // namespace originfs

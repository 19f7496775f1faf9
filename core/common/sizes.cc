#include "core/common/sizes.h"

#include <spdlog/fmt/fmt.h>

#include <charconv>

namespace originfs {

Result<uint64_t> ParseSize(std::string_view s) {
  if (s.empty()) return Fail(EINVAL, "empty size");
  uint64_t mult = 1;
  char last = s.back();
  if (last == 'K' || last == 'k') mult = 1ull << 10;
  if (last == 'M' || last == 'm') mult = 1ull << 20;
  if (last == 'G' || last == 'g') mult = 1ull << 30;
  if (last == 'T' || last == 't') mult = 1ull << 40;
  if (mult != 1) s.remove_suffix(1);
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || p != s.data() + s.size() || (n && mult > UINT64_MAX / n))
    return Fail(EINVAL, fmt::format("bad size \"{}\"", s));
  return n * mult;
}

}  // namespace originfs

// Sizes as people write them in options and rules.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/common/error.h"

namespace originfs {

// "512", "64K", "10M", "2G", "1T" (binary multiples, either case). EINVAL
// names the text for anything else, including overflow.
Result<uint64_t> ParseSize(std::string_view s);

}  // namespace originfs

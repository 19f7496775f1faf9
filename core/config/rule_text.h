// Checks of a rules file's text that need no TOML parser (rule_text.cc).
#pragma once

#include <string_view>

#include "core/common/error.h"

namespace originfs {

// TOML allows non-ASCII only inside strings and comments: anything else is
// refused here with the line, before the parser sees it.
Result<void> CheckNonAsciiPlacement(std::string_view text, std::string_view source);

// A duration such as "0s", "90s", "15m", "2h", "1d" (a number and one unit;
// a bare number is seconds), in seconds; EINVAL naming key otherwise.
Result<int64_t> ParseDuration(std::string_view key, std::string_view text);

}  // namespace originfs

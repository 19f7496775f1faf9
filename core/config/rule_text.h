// Checks of a rules file's text that need no TOML parser, and the text
// helpers of soft_404 (rule_text.cc).
#pragma once

#include <string>
#include <string_view>

#include "core/common/error.h"

namespace originfs {

// TOML allows non-ASCII only inside strings and comments: anything else is
// refused here with the line, before the parser sees it.
Result<void> CheckNonAsciiPlacement(std::string_view text, std::string_view source);

// A duration such as "0s", "90s", "15m", "2h", "1d" (a number and one unit;
// a bare number is seconds), in seconds; EINVAL naming key otherwise.
Result<int64_t> ParseDuration(std::string_view key, std::string_view text);

// Blanks and tabs off both ends.
std::string_view TrimSpace(std::string_view s);
// "Text/HTML; charset=utf-8" -> "text/html".
std::string MediaType(std::string_view content_type);
// W/"abc" and "abc" -> abc: a weak and a strong tag of one page are one page.
std::string_view BareEtag(std::string_view etag);

}  // namespace originfs

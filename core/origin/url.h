// Key -> URL mapping.
#pragma once

#include <string>
#include <string_view>

namespace originfs {

// Percent-encodes every byte of key except RFC 3986 unreserved characters and
// '/', which separates path segments. So "a b/%#?é" becomes
// "a%20b/%25%23%3F%C3%A9". Keys arriving through the kernel never contain
// "." or ".." segments; if one does, its dots are encoded so no client or
// server normalises it into a parent reference.
std::string EncodeKey(std::string_view key);

// origin (no trailing '/') + "/" + EncodeKey(key).
std::string KeyUrl(std::string_view origin, std::string_view key);

}  // namespace originfs

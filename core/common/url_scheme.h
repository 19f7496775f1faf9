// Telling URL schemes apart without parsing a URL (the rules' origins and the
// HTTP client's requests both need it).
#pragma once

#include <cctype>
#include <string_view>

namespace originfs {

// prefix given in lower case; s in any case.
inline bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

// A file server's: ftp://, ftps:// (explicit TLS) or sftp://.
inline bool IsFileServerUrl(std::string_view url) {
  return StartsWithNoCase(url, "ftp://") || StartsWithNoCase(url, "ftps://") ||
         StartsWithNoCase(url, "sftp://");
}

}  // namespace originfs

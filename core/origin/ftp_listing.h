// Directory listings of file servers (FTP, FTPS, SFTP), as libcurl hands
// them over: the facts lines of MLSD (RFC 3659), or the lines of LIST in the
// formats servers print (Unix `ls -l`, which SFTP listings through libcurl
// also use, and Windows/IIS `DIR`). Pure functions, no I/O.
//
// What each gives: MLSD exact sizes and times (a stat needs no request);
// LIST exact sizes and types, but times to the minute at best (a recent
// file's year is left out), so no time is kept from it and a stat of such a
// name asks the server.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "core/origin/listing.h"

namespace originfs {

// The content types the HTTP client gives a file server's listing, so that
// ParseIndexPage can tell it from a web page.
inline constexpr std::string_view kMlsdListingType = "text/x-ftp-mlsd";
inline constexpr std::string_view kFtpListListingType = "text/x-ftp-list";

// The entries of a listing, sorted by name ("." and ".." and the lines no
// format explains left out), or nullopt when no line is a listing line of
// any format while some line has text (not a listing at all).
std::optional<std::vector<ListedEntry>> ParseFtpListing(std::string_view body);

// One MLSD "modify" fact (YYYYMMDDHHMMSS[.sss], UTC) as seconds since the epoch.
std::optional<int64_t> ParseMlsdTime(std::string_view s);

}  // namespace originfs

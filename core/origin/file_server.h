// File servers (FTP, FTPS with explicit TLS, SFTP) behind the HTTP client's
// interface: curl_http_client.cc asks here how to set a request up and what
// its answer means as HTTP, so the mirror needs no second code path. The
// answer of a file server is told as a response head (status, length, time):
//   200  a file, with its size (SIZE, the SFTP stat) and time (MDTM, stat)
//   206  a byte range of it (REST, the SFTP seek)
//   304  not newer than If-Modified-Since (MDTM / stat, before any byte)
//   404  no such file (FTP 550, SFTP "no such file")
// and a directory URL (ending in '/') is its listing, MLSD where the server
// has it, else LIST (SFTP: a listing libcurl writes in `ls -l` form), with
// the content type kMlsdListingType or kFtpListListingType (ftp_listing.h).
// Credentials go only to the server of the rule; none is ever logged.
#pragma once

#include <curl/curl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/origin/http_client.h"

namespace originfs::file_server {

// ftp://, ftps:// or sftp://.
bool IsFileServerUrl(std::string_view url);

// What one attempt of a request to a file server needs after curl ran.
struct Attempt {
  bool on = false;  // the request goes to a file server
  bool sftp = false;
  bool listing = false;    // a directory URL
  bool mlsd = false;       // the listing is asked for with MLSD
  bool drop_body = false;  // a HEAD over SFTP: the body is read, and dropped
  std::optional<int64_t> if_modified_since;
  std::optional<std::pair<uint64_t, uint64_t>> range;
  std::string url;        // as given to curl
  std::string host_port;  // remembered per server: MLSD refused
};

// Sets the request's file-server options on curl, after the common ones
// (timeouts, the CA file, the write callbacks). False, with *why, when the
// request cannot go (an unreadable key file).
bool SetUp(CURL* curl, const HttpRequest& req, Attempt* a, std::string* why);

// The head of the answer so far (status 200 or 206, size, time, content type).
void Head(CURL* curl, const Attempt& a, HttpResponseHead* head);

// Whether the time condition was not met (SFTP has none in libcurl: the
// time of the file, known before its first byte, is compared here).
bool NotModified(CURL* curl, const Attempt& a);

// The transfer failed because the file or directory does not exist: SFTP's
// "no such file", FTP's 550 to RETR or to the CWD into its directory (FTP
// servers answer 550 for a name they will not show as well).
bool NotFound(CURL* curl, const Attempt& a, CURLcode rc);

// Whether the file URL that failed names a directory: asked with a second
// request on a new connection (FTP: CWD into it; SFTP: its listing read).
bool IsDirectory(CURL* curl, const Attempt& a);

// The server refused MLSD (an old server): remembered, and LIST is used
// for this server from now on. True when the attempt should go again.
bool MlsdRefused(CURL* curl, const Attempt& a, CURLcode rc);

}  // namespace originfs::file_server

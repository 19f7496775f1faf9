// The HTTP client interface used by the mirror. The real implementation is
// CurlHttpClient (curl_http_client.cc, the only file that sees libcurl); tests
// may substitute fakes.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/common/error.h"

namespace originfs {

struct HttpOptions {
  long connect_timeout_ms = 10'000;
  // An attempt that receives no byte (of the head or the body) for this long
  // fails with kTimeout; checked about once a second, so it fires within a
  // second of it. Also a floor: slower than low_speed_limit for this long.
  long low_speed_time_s = 30;
  long low_speed_limit = 1;  // bytes per second
  long max_redirects = 5;
  int retries = 2;              // extra attempts for 5xx / connection errors, before any body byte
  long retry_backoff_ms = 100;  // doubled each attempt
  std::string ca_file;          // empty: system trust store
};

// Where a request's redirects may lead, and which hosts see its secrets.
// allowed entries: "host" (any port), "host:port", "*.domain", "*" (any
// host); with "http://" in front, plain http is allowed there even after
// https (never otherwise). trusted: "scheme://host:port" of the rule's
// origins: the request's headers and signature go only there; a hop
// elsewhere gets the protocol headers alone.
struct RedirectPolicy {
  std::vector<std::string> allowed;
  std::vector<std::string> trusted;
};

struct HttpRequest {
  std::string url;
  bool head = false;
  // Another method (WebDAV's PROPFIND) with this body; "" is GET (or HEAD).
  std::string method;
  std::string body;
  std::optional<std::pair<uint64_t, uint64_t>> range;        // inclusive byte range
  std::vector<std::pair<std::string, std::string>> headers;  // the rule's: trusted hosts only
  // Headers of the protocol (Accept, a PROPFIND's Depth): sent to every hop.
  std::vector<std::pair<std::string, std::string>> protocol_headers;
  // Redirects are followed only where this allows (none: anywhere, with
  // every header: requests of no rule's).
  std::optional<RedirectPolicy> redirect_policy;
  // Per-request overrides of HttpOptions (per-rule settings).
  std::optional<bool> follow_redirects;
  std::optional<long> max_redirects;
  std::optional<long> connect_timeout_ms;
  std::optional<long> low_speed_time_s;
  std::optional<int> retries;
  std::string ca_file;
  bool insecure = false;
  // File servers (file_server.h): the login (never logged) or a netrc file
  // to find it in; for SFTP a private key, and the known_hosts file the
  // server's key must be in (insecure: any key).
  struct Login {
    std::string user, password;
  };
  std::optional<Login> login;
  std::string netrc_file;
  std::string ssh_key;
  std::string known_hosts;
  // Signs the request with AWS Signature Version 4 (S3-compatible origins).
  struct SigV4 {
    std::string region;
    std::string access_key, secret_key;  // never logged
    std::string session_token;           // temporary credentials, or empty
  };
  std::optional<SigV4> sigv4;
};

// A Content-Range header "bytes FIRST-LAST/TOTAL" (TOTAL "*": unknown).
struct ContentRange {
  uint64_t first = 0;
  uint64_t last = 0;  // inclusive
  std::optional<uint64_t> total;
  bool operator==(const ContentRange&) const = default;
};

// Parses a Content-Range value; nullopt unless it is one well-formed byte range.
std::optional<ContentRange> ParseContentRange(std::string_view s);

// The final response's status line and the headers originfs cares about.
struct HttpResponseHead {
  long status = 0;
  std::optional<uint64_t> content_length;
  std::string etag;
  std::string last_modified;     // raw header value
  std::optional<int64_t> mtime;  // Last-Modified as seconds since the epoch
  std::optional<int64_t> date;   // the response's Date, seconds since the epoch
  std::string content_md5;
  // S3 server-side encryption: x-amz-server-side-encryption ("AES256",
  // "aws:kms", "aws:kms:dsse"), and whether the object has a key of the
  // customer's (x-amz-server-side-encryption-customer-algorithm).
  std::string sse;
  bool sse_customer = false;
  // With a KMS or customer key, S3's ETag is not the body's MD5.
  bool EtagNotMd5BySse() const { return sse_customer || sse.starts_with("aws:kms"); }
  std::string content_type;                   // raw header value, e.g. "text/html; charset=utf-8"
  std::optional<ContentRange> content_range;  // of a 206
  std::string location;                       // Location of a 3xx that was not followed
  std::string effective_url;                  // after redirects
  long redirects = 0;
};

// Receives the response. OnHead is called exactly once per successful
// transfer, before any OnData. Returning false from either aborts the transfer
// (Perform then returns the head with aborted_by_sink set).
class HttpSink {
 public:
  virtual ~HttpSink() = default;
  virtual bool OnHead(const HttpResponseHead& head) = 0;
  virtual bool OnData(const char* data, std::size_t len) = 0;
};

struct HttpOutcome {
  HttpResponseHead head;
  uint64_t body_bytes = 0;
  bool aborted_by_sink = false;
  int attempts = 1;  // requests sent, retries included
};

struct HttpFailure {
  FetchErrc errc = FetchErrc::kOther;
  std::string detail;  // curl's message; never contains header values
  // The sink has seen the response head (and maybe body bytes): the client
  // does not retry it, a caller may start over.
  bool body_started = false;
  int attempts = 1;  // requests sent, retries included
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // Performs one request (with the client's retry policy). Returns the outcome
  // for any HTTP status (the caller decides what a 404 means); fails for
  // transport errors, refused redirects and bodies that end early.
  virtual std::expected<HttpOutcome, HttpFailure> Perform(const HttpRequest& req,
                                                          HttpSink& sink) = 0;
  // Makes in-flight and future transfers fail fast with kAborted (shutdown).
  virtual void Shutdown() = 0;
};

std::unique_ptr<HttpClient> MakeCurlHttpClient(const HttpOptions& options);

// Parses an HTTP-date (RFC 7231 IMF-fixdate and the two obsolete forms).
std::optional<int64_t> ParseHttpDate(std::string_view s);

// The libcurl this binary was compiled against (LIBCURL_VERSION) and the one
// it runs with (curl_version(): "libcurl/7.88.1 OpenSSL/3.0.x zlib/..."), for
// `originfs --version`.
struct CurlVersions {
  std::string built;
  std::string running;
};
CurlVersions CurlLibraryVersions();

}  // namespace originfs

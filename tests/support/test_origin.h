// An in-process HTTP origin on 127.0.0.1 (port chosen by the OS) for tests,
// with per-path fault injection and request counting.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Server;
}

namespace originfs::testing {

struct Behavior {
  int status = 200;
  std::string body;
  std::map<std::string, std::string> headers;  // extra response headers
  int delay_ms = 0;                            // before answering
  std::optional<std::size_t>
      truncate_after;    // announce body.size(), send this many bytes, then drop
  bool chunked = false;  // chunked transfer encoding (with truncate_after: ends early)
  int stall_ms = 0;      // pause after the first half of the body
  std::optional<std::size_t> stall_at;  // ... or after this many bytes
  std::string redirect_to;              // Location (status must be 3xx)
  std::string last_modified;            // Last-Modified value, "" for none
  // The first fail_first GETs of this path fail (500 with a body, or, with
  // fail_by_truncation, a body cut off halfway); later ones behave as above.
  int fail_first = 0;
  bool fail_by_truncation = false;
  bool fail_at_head = false;  // with fail_by_truncation: drop right after the head
  // Each GET independently fails with this probability (a 500, a body cut
  // off halfway or a late 503, chosen at random): a flaky origin.
  double fail_rate = 0;
  // Answer 304 Not Modified (no body) to a GET whose If-None-Match equals
  // the ETag in headers, or, without If-None-Match, whose If-Modified-Since
  // equals last_modified: a conditional GET of an unchanged object.
  bool honor_conditional = false;
  // GETs with a Range header: the first fail_ranges of them answer 500; the
  // first one sends cut_first_range_after bytes of its slice, waits
  // range_stall_ms and drops the connection.
  int fail_ranges = 0;
  std::optional<std::size_t> cut_first_range_after;
  int range_stall_ms = 0;
  bool fail_later_ranges = false;  // ranged GETs after the first answer 500

  // Origins that ignore If-Range (busybox httpd; httplib, which serves these,
  // does too) while the object is replaced: ranged GETs from the
  // range_version_from-th on are answered (206) from range_body with
  // range_headers (its ETag, say) and, if set, range_last_modified.
  std::optional<std::string> range_body;
  std::map<std::string, std::string> range_headers;
  std::string range_last_modified;
  int range_version_from = 1;
  // Ranged GETs answer the slice this many bytes before the one asked,
  // with a Content-Range saying so (a broken origin or cache).
  std::size_t range_shift = 0;
  // The object is replaced every version_period_ms: each GET is answered
  // from versions[(now / period) % size], with that version's ETag.
  struct Version {
    std::shared_ptr<const std::string> body;
    std::string etag;
  };
  std::vector<Version> versions;
  int version_period_ms = 0;
  // Instead: the nth GET is answered from versions[(n - 1) % size] (a
  // retry after a broken body gets the next version).
  bool version_per_get = false;
  std::string content_type = "application/octet-stream";
};

// Faults applied to every request on top of each path's Behavior (the
// differential fuzzer's misbehaving origin): down answers 503 to everything,
// delay_ms waits before each answer, fail_rate makes each GET fail as
// Behavior::fail_rate does, stall_ms pauses halfway through each body.
struct OriginFaults {
  bool down = false;
  int delay_ms = 0;
  double fail_rate = 0;
  int stall_ms = 0;
};

// Certificate and key (PEM files) for an HTTPS origin.
struct TlsFiles {
  std::string cert;
  std::string key;
};

class TestOrigin {
 public:
  TestOrigin();  // starts listening
  // An HTTPS origin with this certificate (needs CPPHTTPLIB_OPENSSL_SUPPORT,
  // which the test support library is built with).
  explicit TestOrigin(const TlsFiles& tls);
  ~TestOrigin();  // stops and joins
  TestOrigin(const TestOrigin&) = delete;
  TestOrigin& operator=(const TestOrigin&) = delete;

  int port() const { return port_; }
  std::string url() const;  // "http://127.0.0.1:PORT" ("https://..." with TLS)

  // path is the decoded request path with leading '/', e.g. "/a b/c.txt".
  void Set(const std::string& path, Behavior b);
  void SetFile(const std::string& path, std::string body);  // 200 with body
  void Remove(const std::string& path);
  // Paths ending in '/' that exist as a "directory" (nginx style: GET "/d"
  // redirects to "/d/", GET "/d/" answers 403). Off by default.
  void SetNginxDirectories(bool on);
  // The answer to every path that was not Set (GET and HEAD, with or
  // without a trailing '/'), like nginx's `try_files $uri $uri/ /index.html`
  // answering its index page with 200; nullopt: 404 again.
  void SetFallback(std::optional<Behavior> b);
  void SetFaults(const OriginFaults& faults);

  // Requests seen (GET and HEAD) for a decoded path, and in total.
  int Count(const std::string& path) const;
  int GetCount(const std::string& path) const;  // GET only
  int TotalCount() const;
  // Soft-404 probes of names that cannot exist (core/mirror/soft404.cc):
  // not in the counts above, nor in Log() and Targets().
  int Probes() const;
  std::vector<std::string> Log() const;  // "METHOD /path" in arrival order
  // Request targets exactly as sent (still percent-encoded), in arrival order.
  std::vector<std::string> Targets() const;
  // The value of header name in the last request for path ("" if none).
  std::string LastHeader(const std::string& path, const std::string& name) const;
  // The most requests that were being answered at the same time (from
  // arrival until the response was sent or dropped) since start or the last
  // ResetCounts.
  int MaxConcurrent() const;
  void ResetCounts();

 private:
  void Start();
  void Handle(const void* req, void* res);  // httplib types, hidden
  // Sleeps ms unless the origin is being destroyed; false if cut short, so a
  // stalled response never holds up a test's teardown.
  bool Pause(int ms);
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex mu_;
  std::map<std::string, Behavior> paths_;                                   // guarded by mu_
  std::map<std::string, int> counts_, gets_, ranged_gets_;                  // guarded by mu_
  std::vector<std::string> log_;                                            // guarded by mu_
  std::vector<std::string> targets_;                                        // guarded by mu_
  std::map<std::string, std::multimap<std::string, std::string>> headers_;  // guarded by mu_
  unsigned rng_state_ = 12345;                                              // guarded by mu_
  int active_ = 0, max_active_ = 0;                                         // guarded by mu_
  bool tls_ = false;
  bool nginx_dirs_ = false;           // guarded by mu_
  std::optional<Behavior> fallback_;  // guarded by mu_
  OriginFaults faults_;               // guarded by mu_
  int probes_ = 0;                    // guarded by mu_
  bool stopping_ = false;             // guarded by mu_
  std::condition_variable stop_cv_;
};

}  // namespace originfs::testing

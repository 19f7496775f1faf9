// libcurl implementation of HttpClient. Easy handles are pooled so that
// connections (and TLS sessions, DNS entries) are reused across requests.
#include <curl/curl.h>
#include <sys/socket.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include <spdlog/fmt/fmt.h>

#include "core/origin/file_server.h"
#include "core/origin/http_client.h"
#include "core/origin/redirects.h"

namespace originfs {
namespace {

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

bool RetryableStatus(long status) { return status >= 500 && status <= 599; }

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// State of one attempt, shared with curl's callbacks.
struct Attempt {
  CURL* curl = nullptr;
  HttpSink* sink = nullptr;
  const std::atomic<bool>* shutdown = nullptr;
  bool is_head = false;
  bool follow = false;        // redirects are followed (by Perform, hop by hop)
  long hops = 0;              // redirects followed before this request
  bool redirect_hop = false;  // this response is one to follow: not the sink's
  bool may_retry = false;     // more attempts remain
  HttpResponseHead head;
  bool saw_status_line = false;  // some response (perhaps a redirect) began
  bool head_delivered = false;
  bool sink_has_head = false;  // the sink accepted a head: no retry here any more
  bool retry_status = false;   // final status was 5xx and we chose to retry
  bool aborted_by_sink = false;
  uint64_t body_bytes = 0;
  // The idle timeout: no byte for idle_limit_ms once connected fails the
  // attempt. (curl's own low-speed check averages over about five seconds,
  // so after a burst it notices a stall only seconds past its time.)
  int64_t idle_limit_ms = 0;
  int64_t last_byte_ms = 0;  // 0 until the connection is up
  bool timed_out = false;
  file_server::Attempt file;  // file.on: an FTP or SFTP request
  bool not_modified = false;  // a file server's file is not newer: stopped before its body

  // Fills head from curl and hands it to the sink; false aborts the transfer.
  bool DeliverHead() {
    head_delivered = true;
    if (file.on) {
      file_server::Head(curl, file, &head);
      not_modified = file_server::NotModified(curl, file);
      if (not_modified) head.status = 304;
      if (!sink->OnHead(head)) {
        aborted_by_sink = true;
        return false;
      }
      sink_has_head = true;
      return !not_modified;  // no body after a 304
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &head.status);
    char* eff = nullptr;
    curl_easy_getinfo(curl, CURLINFO_EFFECTIVE_URL, &eff);
    head.effective_url = eff ? eff : "";
    head.redirects = hops;
    curl_off_t cl = -1;
    curl_easy_getinfo(curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (cl >= 0) head.content_length = static_cast<uint64_t>(cl);
    if (!head.last_modified.empty()) head.mtime = ParseHttpDate(head.last_modified);
    if (may_retry && RetryableStatus(head.status)) {
      retry_status = true;
      return false;
    }
    if (!sink->OnHead(head)) {
      aborted_by_sink = true;
      return false;
    }
    sink_has_head = true;
    return true;
  }

  void Activity() {
    if (last_byte_ms != 0) last_byte_ms = SteadyNowMs();
  }
};

size_t HeaderCallback(char* buf, size_t size, size_t n, void* user) {
  auto* a = static_cast<Attempt*>(user);
  a->Activity();
  if (a->file.on) return size * n;  // a file server's replies: nothing for the head
  std::string_view line(buf, size * n);
  if (line.starts_with("HTTP/")) {
    // A new response (first, or after a redirect / 100 Continue): forget the old headers.
    a->head = HttpResponseHead{};
    a->saw_status_line = true;
    return size * n;
  }
  if (line == "\r\n" || line == "\n") {
    // End of a header block: hand the head over now rather than at the first
    // body byte, unless curl is about to follow this response elsewhere.
    long code = 0;
    curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &code);
    bool followed = code / 100 == 3 && code != 304 && a->follow && !a->head.location.empty();
    if (followed) a->redirect_hop = true;
    if (code / 100 == 1 || followed || a->head_delivered) return size * n;
    if (!a->DeliverHead()) return 0;  // aborts the transfer
    return size * n;
  }
  std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string_view name = Trim(line.substr(0, colon));
  std::string_view value = Trim(line.substr(colon + 1));
  if (IEquals(name, "ETag")) {
    a->head.etag = value;
  } else if (IEquals(name, "Last-Modified")) {
    a->head.last_modified = value;
  } else if (IEquals(name, "Date")) {
    a->head.date = ParseHttpDate(value);
  } else if (IEquals(name, "Content-MD5")) {
    a->head.content_md5 = value;
  } else if (IEquals(name, "x-amz-server-side-encryption")) {
    a->head.sse = value;
  } else if (IEquals(name, "x-amz-server-side-encryption-customer-algorithm")) {
    a->head.sse_customer = true;
  } else if (IEquals(name, "Content-Type")) {
    a->head.content_type = value;
  } else if (IEquals(name, "Location")) {
    a->head.location = value;
  } else if (IEquals(name, "Content-Range")) {
    a->head.content_range = ParseContentRange(value);
  }
  return size * n;
}

size_t WriteCallback(char* buf, size_t size, size_t n, void* user) {
  auto* a = static_cast<Attempt*>(user);
  a->Activity();
  if (a->redirect_hop) return size * n;  // a redirect's own body
  if (!a->head_delivered && !a->DeliverHead()) return 0;
  if (a->retry_status || a->aborted_by_sink || a->not_modified) return 0;
  if (a->file.drop_body) return size * n;
  if (!a->sink->OnData(buf, size * n)) {
    a->aborted_by_sink = true;
    return 0;
  }
  a->body_bytes += size * n;
  return size * n;
}

// Called at least about once a second, also while nothing arrives.
int ProgressCallback(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* a = static_cast<Attempt*>(user);
  if (a->shutdown->load(std::memory_order_relaxed)) return 1;
  if (a->idle_limit_ms > 0 && a->last_byte_ms != 0 &&
      SteadyNowMs() - a->last_byte_ms >= a->idle_limit_ms) {
    a->timed_out = true;
    return 1;
  }
  return 0;
}

// The connection is up (new or reused) and the request is about to go out:
// the idle clock starts (connecting has its own timeout).
int PrereqCallback(void* user, char*, char*, int, int) {
  auto* a = static_cast<Attempt*>(user);
  a->last_byte_ms = SteadyNowMs();
  return CURL_PREREQFUNC_OK;
}

// Whether a request that failed this way may have met a connection that an
// earlier response left unusable (bytes past its end, or closed meanwhile):
// it failed before any status line, on a reused connection.
bool StaleConnectionFailure(CURLcode rc) {
  switch (rc) {
    case CURLE_UNSUPPORTED_PROTOCOL:  // "Received HTTP/0.9 when not allowed"
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
      return true;
    default:
      return false;
  }
}

FetchErrc MapCurlCode(CURLcode rc, bool body_started) {
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      return FetchErrc::kTimeout;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return FetchErrc::kResolve;
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
      return body_started ? FetchErrc::kShortBody : FetchErrc::kConnect;
    // The head announced a length (or chunks) and the body fell short of it,
    // even when not one body byte arrived.
    case CURLE_PARTIAL_FILE:
      return FetchErrc::kShortBody;
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
      return body_started ? FetchErrc::kShortBody : FetchErrc::kConnect;
    case CURLE_UNSUPPORTED_PROTOCOL:
      return FetchErrc::kRedirectRefused;
    case CURLE_TOO_MANY_REDIRECTS:
      return FetchErrc::kTooManyRedirects;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
      return FetchErrc::kTls;
    case CURLE_ABORTED_BY_CALLBACK:
      return FetchErrc::kAborted;
    default:
      return FetchErrc::kOther;
  }
}

bool RetryableFailure(FetchErrc e) { return e == FetchErrc::kConnect || e == FetchErrc::kTimeout; }

class CurlHttpClient final : public HttpClient {
 public:
  explicit CurlHttpClient(const HttpOptions& o) : options_(o) { static CurlGlobal global; }
  ~CurlHttpClient() override {
    for (CURL* c : idle_) curl_easy_cleanup(c);
  }
  CurlHttpClient(const CurlHttpClient&) = delete;
  CurlHttpClient& operator=(const CurlHttpClient&) = delete;

  void Shutdown() override { shutdown_.store(true); }

  std::expected<HttpOutcome, HttpFailure> Perform(const HttpRequest& req, HttpSink& sink) override {
    if (!req.method.empty() && file_server::IsFileServerUrl(req.url)) {
      // (WebDAV's PROPFIND, say): a file server has no such method.
      HttpOutcome none;
      none.head.status = 405;
      if (!sink.OnHead(none.head)) none.aborted_by_sink = true;
      return none;
    }
    CURL* curl = Acquire();
    if (!curl) return std::unexpected(HttpFailure{FetchErrc::kOther, "curl_easy_init failed"});
    bool reusable = true;
    auto result = FollowRedirects(curl, req, sink, &reusable);
    if (reusable) {
      Release(curl);
    } else {
      curl_easy_cleanup(curl);  // and with it the connection it keeps
    }
    return result;
  }

 private:
  // Whether the connection the last transfer leaves for reuse has bytes
  // waiting that belong to no request (a body longer than its
  // Content-Length, a body sent for a HEAD) or was closed by the peer. The
  // next request on it would read them as its response ("Received HTTP/0.9
  // when not allowed"). Plain HTTP only: on TLS the socket holds records,
  // not response bytes (StaleConnectionFailure covers it).
  static bool LeftoverBytes(CURL* curl) {
    char* scheme = nullptr;
    if (curl_easy_getinfo(curl, CURLINFO_SCHEME, &scheme) != CURLE_OK || !scheme ||
        !IEquals(scheme, "http"))
      return false;
    curl_socket_t sock = CURL_SOCKET_BAD;
    if (curl_easy_getinfo(curl, CURLINFO_ACTIVESOCKET, &sock) != CURLE_OK ||
        sock == CURL_SOCKET_BAD)
      return false;
    char c;
    return recv(sock, &c, 1, MSG_PEEK | MSG_DONTWAIT) >= 0;  // > 0: stray bytes; 0: closed
  }

  static bool ConnectionWasReused(CURL* curl) {
    long connects = 1;
    curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &connects);
    return connects == 0;
  }

  // Redirects hop by hop, each checked against the request's policy
  // (redirects.h): a target it does not allow fails the request with
  // kRedirectRefused naming it; a host it does not trust gets no rule
  // headers and no signature.
  std::expected<HttpOutcome, HttpFailure> FollowRedirects(CURL* curl, const HttpRequest& req,
                                                          HttpSink& sink, bool* reusable) {
    long max_redirects = req.max_redirects.value_or(options_.max_redirects);
    bool follow = req.follow_redirects.value_or(true) && max_redirects > 0;
    RedirectPolicy policy;
    if (req.redirect_policy) {
      policy = *req.redirect_policy;
    } else if (auto a = AuthorityOf(req.url)) {
      policy.allowed = {"http://*"};
      policy.trusted = {a->Origin()};
    }
    // One retry budget for the whole request: a hop is no retry, and the
    // retries one hop used are gone for the next (attempts: 1 + retries).
    const int budget = req.retries.value_or(options_.retries);
    int retried = 0;
    HttpRequest cur = req;
    for (long hops = 0;; ++hops) {
      cur.retries = std::max(0, budget - retried);
      auto r = PerformWithRetries(curl, cur, sink, reusable, follow, hops);
      if (!r) {
        r.error().attempts += retried;
        return r;
      }
      if (r->aborted_by_sink) return r;  // (a redirect the sink saw: it wants no more)
      retried += r->attempts - 1;
      r->attempts = 1 + retried;
      long status = r->head.status;
      if (!follow || status / 100 != 3 || status == 304 || r->head.location.empty()) return r;
      if (hops + 1 > max_redirects)
        return std::unexpected(HttpFailure{
            FetchErrc::kTooManyRedirects,
            fmt::format("more than {} redirects (last to {})", max_redirects, r->head.location),
            false, 1 + retried});
      auto next = ResolveLocation(cur.url, r->head.location);
      if (!next)
        return std::unexpected(HttpFailure{
            FetchErrc::kRedirectRefused, fmt::format("redirect to {}: not a URL", r->head.location),
            false, 1 + retried});
      if (auto why = RedirectRefusal(policy, cur.url, *next); !why.empty())
        return std::unexpected(HttpFailure{FetchErrc::kRedirectRefused,
                                           fmt::format("redirect to {} refused: {}", *next, why),
                                           false, 1 + retried});
      // The rule's headers and signature go to its own origins only (and
      // come back with a hop that returns there).
      bool trusted = Trusted(policy, *next);
      cur.headers = trusted ? req.headers : decltype(req.headers){};
      cur.sigv4 = trusted ? req.sigv4 : std::nullopt;
      if (status == 303 && !cur.head) {  // See Other: a GET of the other URL
        cur.method.clear();
        cur.body.clear();
      }
      cur.url = std::move(*next);
    }
  }

  std::expected<HttpOutcome, HttpFailure> PerformWithRetries(CURL* curl, const HttpRequest& req,
                                                             HttpSink& sink, bool* reusable,
                                                             bool follow, long hops) {
    long backoff = options_.retry_backoff_ms;
    const int retries = req.retries.value_or(options_.retries);
    const long idle_s = req.low_speed_time_s.value_or(options_.low_speed_time_s);
    bool fresh = false;  // the next attempt opens a new connection
    bool fresh_tried = false;
    int sent = 0;
    for (int attempt = 0;;) {
      if (shutdown_.load())
        return std::unexpected(HttpFailure{FetchErrc::kAborted, "shutting down", false, sent});
      Attempt a;
      a.curl = curl;
      a.sink = &sink;
      a.shutdown = &shutdown_;
      a.is_head = req.head;
      a.may_retry = attempt < retries;
      a.idle_limit_ms = idle_s * 1000;
      a.follow = follow;
      a.hops = hops;
      curl_slist* headers = Setup(curl, req, &a);
      if (file_server::IsFileServerUrl(req.url)) {
        std::string why;
        if (!file_server::SetUp(curl, req, &a.file, &why)) {
          curl_slist_free_all(headers);
          return std::unexpected(HttpFailure{FetchErrc::kOther, why, false, sent});
        }
      }
      if (fresh) curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, 1L);
      fresh = false;
      char errbuf[CURL_ERROR_SIZE] = {0};
      curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
      CURLcode rc = curl_easy_perform(curl);
      curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
      curl_slist_free_all(headers);
      ++sent;
      if (a.file.on) {
        // After a failed transfer a file server's connection may be out of
        // step (curl reads the reply to an FTPS 550's next command as the
        // one to PASV): not used again, by this request or another.
        if (rc != CURLE_OK) *reusable = false;
        if (file_server::MlsdRefused(curl, a.file, rc)) {
          fresh = true;
          continue;  // again, with LIST
        }
        if (a.not_modified) return HttpOutcome{a.head, 0, false, sent};
        bool sftp_refused = a.file.sftp && rc == CURLE_SSH && !a.head_delivered;
        if (file_server::NotFound(curl, a.file, rc) || sftp_refused) {
          // Told as HTTP tells it: a directory is a redirect to its name
          // with '/', anything else a 404, which the caller judges.
          bool dir = file_server::IsDirectory(curl, a.file);
          if (!dir && sftp_refused)
            return std::unexpected(HttpFailure{
                FetchErrc::kOther, errbuf[0] ? errbuf : curl_easy_strerror(rc), false, sent});
          a.head = HttpResponseHead{};
          a.head.status = dir ? 301 : 404;
          if (dir) a.head.location = req.url + "/";
          a.head.effective_url = req.url;
          if (!sink.OnHead(a.head)) return HttpOutcome{a.head, 0, true, sent};
          return HttpOutcome{a.head, 0, false, sent};
        }
      }

      // A kept connection that turned out unusable: once per request, and
      // outside the retries, the request goes again on a new connection.
      if (rc != CURLE_OK && !a.saw_status_line && !a.timed_out && !fresh_tried &&
          !shutdown_.load() && StaleConnectionFailure(rc) && ConnectionWasReused(curl)) {
        fresh = fresh_tried = true;
        continue;
      }
      if (rc == CURLE_OK && a.redirect_hop) {  // FollowRedirects follows it
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a.head.status);
        if (LeftoverBytes(curl)) *reusable = false;
        return HttpOutcome{a.head, 0, false, sent};
      }
      if (rc == CURLE_OK && !a.head_delivered) a.DeliverHead();  // HEAD or empty body
      bool retry = false;
      if (a.retry_status) {
        retry = true;
      } else if (a.aborted_by_sink) {
        return HttpOutcome{a.head, a.body_bytes, true, sent};
      } else if (rc != CURLE_OK) {
        HttpFailure f{MapCurlCode(rc, a.sink_has_head), errbuf[0] ? errbuf : curl_easy_strerror(rc),
                      a.sink_has_head, sent};
        if (a.timed_out) {
          f.errc = FetchErrc::kTimeout;
          f.detail = fmt::format("no data received for {} s", idle_s);
        } else if (rc == CURLE_UNSUPPORTED_PROTOCOL && !a.saw_status_line) {
          f.errc = FetchErrc::kOther;  // not an HTTP response (rather than a refused redirect)
        }
        if (!(a.may_retry && !f.body_started && RetryableFailure(f.errc)))
          return std::unexpected(f);
        retry = true;
      } else {
        if (LeftoverBytes(curl)) *reusable = false;
        if (!req.head && a.head.content_length && a.body_bytes != *a.head.content_length &&
            a.head.status / 100 == 2) {
          return std::unexpected(HttpFailure{
              FetchErrc::kShortBody,
              fmt::format("got {} of {} bytes", a.body_bytes, *a.head.content_length), true, sent});
        }
        return HttpOutcome{a.head, a.body_bytes, false, sent};
      }
      if (retry) {
        std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
        backoff *= 2;
        ++attempt;
      }
    }
  }

  curl_slist* Setup(CURL* curl, const HttpRequest& req, Attempt* a) {
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);  // FollowRedirects, hop by hop
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     req.connect_timeout_ms.value_or(options_.connect_timeout_ms));
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, options_.low_speed_limit);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME,
                     req.low_speed_time_s.value_or(options_.low_speed_time_s));
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, req.insecure ? 0L : 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, req.insecure ? 0L : 2L);
    const std::string& ca = req.ca_file.empty() ? options_.ca_file : req.ca_file;
    if (!ca.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, ca.c_str());
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "originfs/0.1");
    curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, HeaderCallback);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, WriteCallback);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, ProgressCallback);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, a);
    curl_easy_setopt(curl, CURLOPT_PREREQFUNCTION, PrereqCallback);
    curl_easy_setopt(curl, CURLOPT_PREREQDATA, a);
    if (req.head) curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    if (!req.method.empty()) {
      // req outlives the transfer: curl keeps the pointers.
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(req.body.size()));
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.c_str());
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
    std::string range;
    if (req.range) {
      range = fmt::format("{}-{}", req.range->first, req.range->second);
      curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());  // copied by curl
    }
    curl_slist* list = nullptr;
    for (const auto* hs : {&req.headers, &req.protocol_headers}) {
      for (const auto& [k, v] : *hs) {
        std::string h = k + ": " + v;
        list = curl_slist_append(list, h.c_str());
      }
    }
    if (req.sigv4) {
      // libcurl computes the signature (host, x-amz-date, the headers above);
      // S3 also wants the payload's hash: a GET has none to sign.
      std::string provider = "aws:amz:" + req.sigv4->region + ":s3";
      std::string userpwd = req.sigv4->access_key + ":" + req.sigv4->secret_key;
      curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, provider.c_str());  // copied by curl
      curl_easy_setopt(curl, CURLOPT_USERPWD, userpwd.c_str());
      list = curl_slist_append(list, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
      if (!req.sigv4->session_token.empty()) {
        std::string t = "x-amz-security-token: " + req.sigv4->session_token;
        list = curl_slist_append(list, t.c_str());
      }
    }
    if (list) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    return list;
  }

  CURL* Acquire() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        CURL* c = idle_.back();
        idle_.pop_back();
        return c;
      }
    }
    return curl_easy_init();
  }

  void Release(CURL* c) {
    std::lock_guard lock(mu_);
    idle_.push_back(c);
  }

  HttpOptions options_;
  std::atomic<bool> shutdown_{false};
  std::mutex mu_;
  std::vector<CURL*> idle_;  // guarded by mu_
};

}  // namespace

std::unique_ptr<HttpClient> MakeCurlHttpClient(const HttpOptions& options) {
  return std::make_unique<CurlHttpClient>(options);
}

std::optional<ContentRange> ParseContentRange(std::string_view s) {
  s = Trim(s);
  if (s.size() < 6 || !IEquals(s.substr(0, 6), "bytes ")) return std::nullopt;
  s.remove_prefix(6);
  s = Trim(s);
  auto number = [&s](uint64_t* out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
    if (ec != std::errc() || p == s.data()) return false;
    s.remove_prefix(static_cast<std::size_t>(p - s.data()));
    return true;
  };
  ContentRange r;
  if (!number(&r.first) || !s.starts_with('-')) return std::nullopt;
  s.remove_prefix(1);
  if (!number(&r.last) || !s.starts_with('/') || r.last < r.first) return std::nullopt;
  s.remove_prefix(1);
  if (s == "*") return r;
  uint64_t total = 0;
  if (!number(&total) || !s.empty() || r.last >= total) return std::nullopt;
  r.total = total;
  return r;
}

std::optional<int64_t> ParseHttpDate(std::string_view s) {
  std::string copy(s);
  time_t t = curl_getdate(copy.c_str(), nullptr);
  if (t == -1) return std::nullopt;
  return static_cast<int64_t>(t);
}

CurlVersions CurlLibraryVersions() { return {LIBCURL_VERSION, curl_version()}; }

}  // namespace originfs

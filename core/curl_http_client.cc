// libcurl implementation of HttpClient. Easy handles are pooled so that
// connections (and TLS sessions, DNS entries) are reused across requests.
#include <curl/curl.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include <spdlog/fmt/fmt.h>

#include "core/http_client.h"

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

// State of one attempt, shared with curl's callbacks.
struct Attempt {
  CURL* curl = nullptr;
  HttpSink* sink = nullptr;
  const std::atomic<bool>* shutdown = nullptr;
  bool is_head = false;
  bool follow = false;     // curl follows redirects
  bool may_retry = false;  // more attempts remain
  HttpResponseHead head;
  bool head_delivered = false;
  bool retry_status = false;  // final status was 5xx and we chose to retry
  bool aborted_by_sink = false;
  uint64_t body_bytes = 0;

  // Fills head from curl and hands it to the sink; false aborts the transfer.
  bool DeliverHead() {
    head_delivered = true;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &head.status);
    char* eff = nullptr;
    curl_easy_getinfo(curl, CURLINFO_EFFECTIVE_URL, &eff);
    head.effective_url = eff ? eff : "";
    curl_easy_getinfo(curl, CURLINFO_REDIRECT_COUNT, &head.redirects);
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
    return true;
  }
};

size_t HeaderCallback(char* buf, size_t size, size_t n, void* user) {
  auto* a = static_cast<Attempt*>(user);
  std::string_view line(buf, size * n);
  if (line.starts_with("HTTP/")) {
    // A new response (first, or after a redirect / 100 Continue): forget the old headers.
    a->head = HttpResponseHead{};
    return size * n;
  }
  if (line == "\r\n" || line == "\n") {
    // End of a header block: hand the head over now rather than at the first
    // body byte, unless curl is about to follow this response elsewhere.
    long code = 0;
    curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &code);
    bool followed = code / 100 == 3 && a->follow && !a->head.location.empty();
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
  } else if (IEquals(name, "Content-MD5")) {
    a->head.content_md5 = value;
  } else if (IEquals(name, "Location")) {
    a->head.location = value;
  }
  return size * n;
}

size_t WriteCallback(char* buf, size_t size, size_t n, void* user) {
  auto* a = static_cast<Attempt*>(user);
  if (!a->head_delivered && !a->DeliverHead()) return 0;
  if (a->retry_status || a->aborted_by_sink) return 0;
  if (!a->sink->OnData(buf, size * n)) {
    a->aborted_by_sink = true;
    return 0;
  }
  a->body_bytes += size * n;
  return size * n;
}

int ProgressCallback(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* a = static_cast<Attempt*>(user);
  return a->shutdown->load(std::memory_order_relaxed) ? 1 : 0;
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
    CURL* curl = Acquire();
    if (!curl) return std::unexpected(HttpFailure{FetchErrc::kOther, "curl_easy_init failed"});
    auto result = PerformWithRetries(curl, req, sink);
    Release(curl);
    return result;
  }

 private:
  std::expected<HttpOutcome, HttpFailure> PerformWithRetries(CURL* curl, const HttpRequest& req,
                                                             HttpSink& sink) {
    long backoff = options_.retry_backoff_ms;
    for (int attempt = 0;; ++attempt) {
      if (shutdown_.load())
        return std::unexpected(HttpFailure{FetchErrc::kAborted, "shutting down"});
      Attempt a;
      a.curl = curl;
      a.sink = &sink;
      a.shutdown = &shutdown_;
      a.is_head = req.head;
      a.may_retry = attempt < req.retries.value_or(options_.retries);
      curl_slist* headers = Setup(curl, req, &a);
      char errbuf[CURL_ERROR_SIZE] = {0};
      curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
      CURLcode rc = curl_easy_perform(curl);
      curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
      curl_slist_free_all(headers);

      if (rc == CURLE_OK && !a.head_delivered) a.DeliverHead();  // HEAD or empty body
      bool retry = false;
      if (a.retry_status) {
        retry = true;
      } else if (a.aborted_by_sink) {
        return HttpOutcome{a.head, a.body_bytes, true};
      } else if (rc != CURLE_OK) {
        HttpFailure f{MapCurlCode(rc, a.body_bytes > 0),
                      errbuf[0] ? errbuf : curl_easy_strerror(rc), a.body_bytes > 0};
        if (!(a.may_retry && !f.body_started && RetryableFailure(f.errc)))
          return std::unexpected(f);
        retry = true;
      } else {
        if (!req.head && a.head.content_length && a.body_bytes != *a.head.content_length &&
            a.head.status / 100 == 2) {
          return std::unexpected(HttpFailure{
              FetchErrc::kShortBody,
              fmt::format("got {} of {} bytes", a.body_bytes, *a.head.content_length), true});
        }
        return HttpOutcome{a.head, a.body_bytes, false};
      }
      if (retry) {
        std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
        backoff *= 2;
      }
    }
  }

  curl_slist* Setup(CURL* curl, const HttpRequest& req, Attempt* a) {
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    long max_redirects = req.max_redirects.value_or(options_.max_redirects);
    bool follow = req.follow_redirects.value_or(true) && max_redirects > 0;
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    a->follow = follow;
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, max_redirects);
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
    if (req.head) curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    std::string range;
    if (req.range) {
      range = fmt::format("{}-{}", req.range->first, req.range->second);
      curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());  // copied by curl
    }
    curl_slist* list = nullptr;
    for (const auto& [k, v] : req.headers) {
      std::string h = k + ": " + v;
      list = curl_slist_append(list, h.c_str());
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

std::optional<int64_t> ParseHttpDate(std::string_view s) {
  std::string copy(s);
  time_t t = curl_getdate(copy.c_str(), nullptr);
  if (t == -1) return std::nullopt;
  return static_cast<int64_t>(t);
}

}  // namespace originfs

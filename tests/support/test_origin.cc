#include "tests/support/test_origin.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <chrono>

namespace originfs::testing {

TestOrigin::TestOrigin() : server_(std::make_unique<httplib::Server>()) { Start(); }

TestOrigin::TestOrigin(const TlsFiles& tls)
    : server_(std::make_unique<httplib::SSLServer>(tls.cert.c_str(), tls.key.c_str())), tls_(true) {
  Start();
}

void TestOrigin::Start() {
  auto handler = [this](const httplib::Request& req, httplib::Response& res) {
    Handle(&req, &res);
  };
  // "[\s\S]*", not ".*": "." stops at CR and LF, which decoded paths may hold.
  server_->Get(R"([\s\S]*)", handler);
  server_->set_keep_alive_max_count(100000);
  server_->set_tcp_nodelay(true);  // headers and body go out in separate writes
  server_->new_task_queue = [] { return new httplib::ThreadPool(64); };
  auto listen_fd = std::make_shared<int>(-1);
  server_->set_socket_options([listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    *listen_fd = sock;
  });
  port_ = server_->bind_to_any_port("127.0.0.1");
  // httplib listens with a backlog of 5: a burst of concurrent clients would
  // overflow it and each dropped connection waits a 1 s SYN retransmit.
  if (*listen_fd >= 0) ::listen(*listen_fd, 1024);
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // The socket already listens (connections queue in its backlog); wait for
  // the accept loop anyway so that stop() in the destructor cannot race it.
  for (int i = 0; i < 5000 && port_ > 0 && !server_->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

TestOrigin::~TestOrigin() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  server_->stop();
  thread_.join();
}

std::string TestOrigin::url() const {
  return (tls_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port_);
}

void TestOrigin::Set(const std::string& path, Behavior b) {
  std::lock_guard lock(mu_);
  paths_[path] = std::move(b);
}

void TestOrigin::SetFile(const std::string& path, std::string body) {
  Behavior b;
  b.body = std::move(body);
  Set(path, std::move(b));
}

void TestOrigin::Remove(const std::string& path) {
  std::lock_guard lock(mu_);
  paths_.erase(path);
}

void TestOrigin::SetNginxDirectories(bool on) {
  std::lock_guard lock(mu_);
  nginx_dirs_ = on;
}

void TestOrigin::SetFaults(const OriginFaults& faults) {
  std::lock_guard lock(mu_);
  faults_ = faults;
}

void TestOrigin::SetFallback(std::optional<Behavior> b) {
  std::lock_guard lock(mu_);
  fallback_ = std::move(b);
}

int TestOrigin::Count(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = counts_.find(path);
  return it == counts_.end() ? 0 : it->second;
}

int TestOrigin::GetCount(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = gets_.find(path);
  return it == gets_.end() ? 0 : it->second;
}

int TestOrigin::Probes() const {
  std::lock_guard lock(mu_);
  return probes_;
}

int TestOrigin::TotalCount() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(log_.size());
}

std::vector<std::string> TestOrigin::Log() const {
  std::lock_guard lock(mu_);
  return log_;
}

std::vector<std::string> TestOrigin::Targets() const {
  std::lock_guard lock(mu_);
  return targets_;
}

std::string TestOrigin::LastHeader(const std::string& path, const std::string& name) const {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::lock_guard lock(mu_);
  auto it = headers_.find(path);
  if (it == headers_.end()) return "";
  auto h = it->second.find(lower);
  return h == it->second.end() ? "" : h->second;
}

int TestOrigin::MaxConcurrent() const {
  std::lock_guard lock(mu_);
  return max_active_;
}

void TestOrigin::ResetCounts() {
  std::lock_guard lock(mu_);
  max_active_ = active_;
  counts_.clear();
  gets_.clear();
  log_.clear();
  targets_.clear();
  headers_.clear();
}

bool TestOrigin::Pause(int ms) {
  std::unique_lock lock(mu_);
  return !stop_cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

void TestOrigin::Handle(const void* vreq, void* vres) {
  const auto& req = *static_cast<const httplib::Request*>(vreq);
  auto& res = *static_cast<httplib::Response*>(vres);
  Behavior b;
  bool found = false, dir_redirect = false, dir_listing = false;
  enum class Fault { kNone, kStatus, kTruncate, kLateStatus } fault = Fault::kNone;
  // Counts this request as being answered until the response (and any body
  // provider, which captures it) is gone.
  std::shared_ptr<void> active;
  int nth_range_get = 0;  // this is the path's nth ranged GET (0: not ranged)
  int nth_get = 0;        // this is the path's nth GET (0: not a GET)
  {
    std::lock_guard lock(mu_);
    max_active_ = std::max(max_active_, ++active_);
    active = std::shared_ptr<void>(nullptr, [this](void*) {
      std::lock_guard l(mu_);
      --active_;
    });
    // Soft-404 probes (core/mirror/soft404.cc) are counted apart: what the
    // tests count is the requests for names.
    bool probe = req.path.find(".originfs-probe-") != std::string::npos;
    if (probe) ++probes_;
    if (!probe) counts_[req.path]++;
    nth_get = req.method == "GET" ? ++gets_[req.path] : 0;
    int nth_range = req.method == "GET" && !req.ranges.empty() ? ++ranged_gets_[req.path] : 0;
    nth_range_get = nth_range;
    if (!probe) {
      log_.push_back(req.method + " " + req.path);
      targets_.push_back(req.target);
    }
    auto& seen = headers_[req.path];
    seen.clear();
    for (const auto& [k, v] : req.headers) {
      std::string lower;
      for (char c : k) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      seen.emplace(lower, v);
    }
    auto it = paths_.find(req.path);
    if (it != paths_.end()) {
      b = it->second;
      found = true;
      if (nth_range > 0 && (nth_range <= b.fail_ranges || (nth_range > 1 && b.fail_later_ranges))) {
        fault = Fault::kStatus;
      } else if (nth_range == 1 && b.cut_first_range_after) {
        std::size_t start = static_cast<std::size_t>(std::max<ssize_t>(req.ranges[0].first, 0));
        b.truncate_after = start + *b.cut_first_range_after;
        b.stall_at = *b.truncate_after;
        b.stall_ms = b.range_stall_ms;
      } else if (nth_get > 0 && nth_get <= b.fail_first) {
        fault = b.fail_by_truncation ? Fault::kTruncate : Fault::kStatus;
        if (fault == Fault::kTruncate && b.fail_at_head) {
          fault = Fault::kNone;
          b.truncate_after = 0;
        }
      } else if (nth_get > 0 && b.fail_rate > 0) {
        rng_state_ = rng_state_ * 1103515245u + 12345u;
        double x = static_cast<double>((rng_state_ >> 8) & 0xffff) / 65536.0;
        if (x < b.fail_rate) {
          unsigned pick = (rng_state_ >> 4) % 3;
          fault = pick == 0 ? Fault::kStatus : pick == 1 ? Fault::kTruncate : Fault::kLateStatus;
        }
      }
    } else if (fallback_) {
      b = *fallback_;
      found = true;
    } else if (nginx_dirs_) {
      // A "directory" is any path that is a proper prefix (up to '/') of a known file.
      std::string as_dir = req.path.ends_with('/') ? req.path : req.path + "/";
      auto lb = paths_.lower_bound(as_dir);
      if (lb != paths_.end() && lb->first.starts_with(as_dir)) {
        if (req.path.ends_with('/'))
          dir_listing = true;
        else
          dir_redirect = true;
      }
    }
    if (faults_.down) {
      fault = Fault::kStatus;
      found = true;
      dir_redirect = dir_listing = false;
    } else {
      b.delay_ms += faults_.delay_ms;
      if (faults_.stall_ms) b.stall_ms = faults_.stall_ms;
      if (fault == Fault::kNone && found && req.method == "GET" && faults_.fail_rate > 0) {
        rng_state_ = rng_state_ * 1103515245u + 12345u;
        double x = static_cast<double>((rng_state_ >> 8) & 0xffff) / 65536.0;
        if (x < faults_.fail_rate)
          fault = (rng_state_ >> 4) % 2 ? Fault::kStatus : Fault::kTruncate;
      }
    }
  }
  if (dir_redirect) {
    // Location must stay percent-encoded: reuse the path as the client sent it.
    std::string target = req.target.substr(0, req.target.find('?'));
    res.set_redirect(target + "/", 301);
    return;
  }
  if (dir_listing) {
    res.status = 403;
    res.set_content("<html>403 Forbidden</html>", "text/html");
    return;
  }
  if (!found) {
    res.status = 404;
    res.set_content("not found", "text/plain");
    return;
  }
  if (b.delay_ms && !Pause(b.delay_ms)) {
    res.status = 503;
    return;
  }
  if (fault == Fault::kTruncate && b.body.size() < 2) fault = Fault::kStatus;
  if (fault == Fault::kLateStatus && !Pause(200)) fault = Fault::kStatus;
  if (fault == Fault::kStatus || fault == Fault::kLateStatus) {
    res.status = fault == Fault::kStatus ? 500 : 503;
    res.set_content("injected failure", "text/plain");
    return;
  }
  if (fault == Fault::kTruncate) {
    b.chunked = false;
    b.truncate_after = b.body.size() / 2;
  }
  if (!b.versions.empty() && b.version_per_get && nth_get > 0) {
    const Behavior::Version& v = b.versions[(nth_get - 1) % b.versions.size()];
    b.body = *v.body;
    b.headers["ETag"] = v.etag;
  } else if (!b.versions.empty() && b.version_period_ms > 0) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now().time_since_epoch())
                  .count();
    const Behavior::Version& v = b.versions[(ms / b.version_period_ms) % b.versions.size()];
    b.body = *v.body;
    b.headers["ETag"] = v.etag;
  }
  if (b.range_body && nth_range_get > 0 && nth_range_get >= b.range_version_from) {
    b.body = *b.range_body;
    for (const auto& [k, v] : b.range_headers) b.headers[k] = v;
    if (!b.range_last_modified.empty()) b.last_modified = b.range_last_modified;
  }
  // A shifted range is served here, not by httplib (which would send the
  // range asked): the request's ranges are cleared, the slice and its
  // Content-Range set by hand. (The Request is httplib's own non-const
  // object; only the handler sees it const.)
  std::string content_range;
  if (b.range_shift > 0 && req.ranges.size() == 1 && b.status == 200) {
    auto [first, last] = req.ranges[0];
    std::size_t size = b.body.size();
    std::size_t to = last < 0 || static_cast<std::size_t>(last) >= size
                         ? size - 1
                         : static_cast<std::size_t>(last);
    std::size_t from = static_cast<std::size_t>(std::max<ssize_t>(first, 0));
    std::size_t shift = std::min(b.range_shift, from);
    from -= shift;
    to -= shift;
    content_range =
        "bytes " + std::to_string(from) + "-" + std::to_string(to) + "/" + std::to_string(size);
    b.body = b.body.substr(from, to - from + 1);
    const_cast<httplib::Request&>(req).ranges.clear();
  }
  if (b.honor_conditional && req.method == "GET") {
    auto etag = b.headers.find("ETag");
    bool not_modified =
        req.has_header("If-None-Match")
            ? etag != b.headers.end() && req.get_header_value("If-None-Match") == etag->second
            : !b.last_modified.empty() &&
                  req.get_header_value("If-Modified-Since") == b.last_modified;
    if (not_modified) {
      if (etag != b.headers.end()) res.set_header("ETag", etag->second);
      if (!b.last_modified.empty()) res.set_header("Last-Modified", b.last_modified);
      res.status = 304;
      return;
    }
  }
  for (const auto& [k, v] : b.headers) res.set_header(k, v);
  if (!b.last_modified.empty()) res.set_header("Last-Modified", b.last_modified);
  if (!b.redirect_to.empty()) {
    res.set_redirect(b.redirect_to, b.status >= 300 && b.status < 400 ? b.status : 302);
    return;
  }
  // httplib serves the requested slice of a provider's body; the status must say so.
  res.status = b.status == 200 && !req.ranges.empty() ? 206 : b.status;
  if (!content_range.empty()) {
    res.status = 206;
    res.set_header("Content-Range", content_range);
  }
  if (b.body.empty() && !b.chunked) {
    // A zero-length provider would make httplib stream "until closed" forever.
    res.set_content("", b.content_type);
    return;
  }
  auto body = std::make_shared<std::string>(std::move(b.body));
  std::size_t limit = b.truncate_after.value_or(body->size());
  int stall_ms = b.stall_ms;
  std::size_t half = std::min(b.stall_at.value_or(body->size() / 2), body->size());
  auto provider = [this, body, limit, stall_ms, half, active](
                      std::size_t offset, std::size_t length, httplib::DataSink& sink) {
    // Sends [offset, offset+length) but never past limit; dropping the
    // connection once the limit is reached.
    std::size_t end = std::min(offset + length, body->size());
    while (offset < end) {
      if (offset >= limit) return false;
      std::size_t chunk_end = std::min({end, limit, offset + std::size_t(64 * 1024)});
      if (stall_ms && offset < half && chunk_end >= half) {
        chunk_end = std::max(half, offset + 1);
        if (!sink.write(body->data() + offset, chunk_end - offset)) return false;
        offset = chunk_end;
        if (!Pause(stall_ms)) return false;
        continue;
      }
      if (!sink.write(body->data() + offset, chunk_end - offset)) return false;
      offset = chunk_end;
    }
    return offset >= limit ? offset >= body->size() : true;
  };
  if (b.chunked) {
    res.set_chunked_content_provider(
        b.content_type, [body, limit, active](std::size_t offset, httplib::DataSink& sink) {
          if (offset >= body->size()) {
            sink.done();
            return true;
          }
          if (offset >= limit) return false;  // drop without final chunk
          std::size_t n = std::min({body->size() - offset, limit - offset, std::size_t(64 * 1024)});
          return sink.write(body->data() + offset, n);
        });
  } else {
    res.set_content_provider(body->size(), b.content_type, provider);
  }
}

}  // namespace originfs::testing

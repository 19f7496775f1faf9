// An HttpClient with canned responses per URL, for tests of the mirror and
// the vfs without a network. It counts requests and can hold them at two
// gates: before answering, and between the head and the body.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/origin/http_client.h"

namespace originfs::testing {

using namespace std::chrono_literals;

// What the fake answers for one URL.
struct Canned {
  long status = 200;
  std::string body;
  bool send_content_length = true;
  std::string etag;
  std::string last_modified;
  std::optional<int64_t> mtime;
  long redirects = 0;
  std::string effective_url;                 // "" means the request URL
  std::optional<FetchErrc> fail_after_body;  // transport failure once the body is sent
  std::optional<uint64_t> content_length;    // overrides body.size() when set
  int fail_first = 0;  // with fail_after_body: only the first n calls fail (0: all)
  std::optional<FetchErrc> fail_before_head;  // transport failure before any response
  std::string content_md5;
  std::string content_type;
};

// An HttpClient with canned responses per URL (404 for anything else). It
// counts requests and can hold them at two gates: before answering, and
// between the head and the body.
class FakeHttpClient final : public HttpClient {
 public:
  void Set(const std::string& url, Canned c) {
    std::lock_guard lock(mu_);
    canned_[url] = std::move(c);
    sequences_.erase(url);
  }
  // The n-th request of url gets answers[n - 1] (the last one from then on).
  void SetSequence(const std::string& url, std::vector<Canned> answers) {
    std::lock_guard lock(mu_);
    sequences_[url] = std::move(answers);
  }

  int Calls(const std::string& url) const {
    std::lock_guard lock(mu_);
    auto it = calls_.find(url);
    return it == calls_.end() ? 0 : it->second;
  }

  int TotalCalls() const {
    std::lock_guard lock(mu_);
    return static_cast<int>(log_.size());
  }

  std::vector<std::string> Log() const {
    std::lock_guard lock(mu_);
    return log_;
  }

  void HoldRequests(bool on) { SetGate(&hold_requests_, on); }
  void HoldBodies(bool on) { SetGate(&hold_bodies_, on); }

  // Waits until n requests are parked at the request gate.
  bool WaitForParked(int n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return parked_ >= n; });
  }

  // Soft-404 probes (names that cannot exist, core/mirror/soft404.cc).
  int Probes() const {
    std::lock_guard lock(mu_);
    return probes_;
  }

  std::expected<HttpOutcome, HttpFailure> Perform(const HttpRequest& req, HttpSink& sink) override {
    if (req.url.find(".originfs-probe-") != std::string::npos) {
      // Answered 404 at once, outside the counts and the gates: an honest
      // origin's answer, and what the tests count is the object requests.
      {
        std::lock_guard lock(mu_);
        ++probes_;
      }
      HttpResponseHead h;
      h.status = 404;
      sink.OnHead(h);
      return HttpOutcome{h, 0, false, 1};
    }
    Canned c;
    int call_no = 0;
    {
      std::unique_lock lock(mu_);
      call_no = ++calls_[req.url];
      log_.push_back((req.head ? "HEAD " : "GET ") + req.url);
      parked_++;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !hold_requests_ || shutdown_; });
      parked_--;
      if (shutdown_) return std::unexpected(HttpFailure{FetchErrc::kAborted, "shutdown"});
      auto it = canned_.find(req.url);
      if (auto seq = sequences_.find(req.url); seq != sequences_.end() && !seq->second.empty()) {
        c = seq->second[std::min<std::size_t>(call_no, seq->second.size()) - 1];
      } else if (it != canned_.end()) {
        c = it->second;
      } else {
        c.status = 404;
        c.body = "not found";
      }
    }
    if (c.fail_before_head) {
      return std::unexpected(HttpFailure{*c.fail_before_head, "injected before head", false});
    }
    HttpResponseHead head;
    head.status = c.status;
    head.content_md5 = c.content_md5;
    head.content_type = c.content_type;
    if (c.content_length) {
      head.content_length = c.content_length;
    } else if (c.send_content_length) {
      head.content_length = c.body.size();
    }
    head.etag = c.etag;
    head.last_modified = c.last_modified;
    head.mtime = c.mtime;
    head.redirects = c.redirects;
    head.effective_url = c.effective_url.empty() ? req.url : c.effective_url;
    if (!sink.OnHead(head)) return HttpOutcome{head, 0, true};
    if (req.head) return HttpOutcome{head, 0, false};
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !hold_bodies_ || shutdown_; });
      if (shutdown_) return std::unexpected(HttpFailure{FetchErrc::kAborted, "shutdown", false});
    }
    uint64_t sent = 0;
    constexpr std::size_t kChunk = 1000;
    for (std::size_t off = 0; off < c.body.size(); off += kChunk) {
      std::size_t n = std::min(kChunk, c.body.size() - off);
      if (!sink.OnData(c.body.data() + off, n)) return HttpOutcome{head, sent, true};
      sent += n;
    }
    if (c.fail_after_body && (c.fail_first == 0 || call_no <= c.fail_first)) {
      return std::unexpected(HttpFailure{*c.fail_after_body, "injected", sent > 0});
    }
    return HttpOutcome{head, sent, false};
  }

  void Shutdown() override {
    std::lock_guard lock(mu_);
    shutdown_ = true;
    cv_.notify_all();
  }

 private:
  void SetGate(bool* gate, bool on) {
    std::lock_guard lock(mu_);
    *gate = on;
    cv_.notify_all();
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Canned> canned_;                  // guarded by mu_
  std::map<std::string, std::vector<Canned>> sequences_;  // guarded by mu_
  std::map<std::string, int> calls_;                      // guarded by mu_
  std::vector<std::string> log_;
  int probes_ = 0;              // guarded by mu_
  bool hold_requests_ = false;  // guarded by mu_
  bool hold_bodies_ = false;    // guarded by mu_
  bool shutdown_ = false;       // guarded by mu_
  int parked_ = 0;              // guarded by mu_
};

}  // namespace originfs::testing

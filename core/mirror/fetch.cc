// One download of one key from one origin, top to bottom:
//   FetchFromOrigin: request -> Receive (the GET, its restarts and its
//   parallel second part) -> Classify (what the origin said) -> Verify ->
//   Land (link under the key, or keep in the object cache).
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/config/file_origin.h"
#include "core/mirror/mirror.h"
#include "core/mirror/range_split.h"
#include "core/mirror/record.h"
#include "core/mirror/response_sink.h"
#include "core/origin/origin_pool.h"
#include "core/origin/url.h"

namespace originfs {

// What Receive got: the last GET's sink and outcome, and how a split ended.
struct Mirror::Received {
  std::unique_ptr<StagingFile> staging;  // kept across restarts: streaming readers keep it
  std::optional<ResponseSink> sink;
  std::expected<HttpOutcome, HttpFailure> outcome = std::unexpected(HttpFailure{});
  std::string split_error;  // set: the parallel part could not be finished
  int split_errno = EIO;
  std::optional<Soft404> not_found_page;  // the origin's, learned (soft404.cc)
};

Mirror::Attempt Mirror::FetchFromOrigin(Flight& flight, const Rule& rule,
                                        const std::string& origin) {
  const std::string& key = flight.key();
  std::string url = KeyUrl(origin, rule.OriginPath(key));
  auto started = std::chrono::steady_clock::now();
  HttpRequest req = RequestFor(rule, url);
  Received got;
  got.not_found_page = NotFoundPage(rule, origin);
  const Soft404* page = got.not_found_page ? &*got.not_found_page : nullptr;
  Receive(flight, rule, url, req, got);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  Attempt a;
  auto fail = [&](Error e, bool switchable) -> Attempt {
    stats_.origin_errors++;
    spdlog::warn("fetch key={} url={} rule={} failed after {:.3f}s: {}", key, url, rule.index + 1,
                 secs, e.message);
    if (e.code != ENOSPC) e.code = EIO;  // never ENOENT for anything but a 404
    a.kind = Attempt::kFailed;
    a.result = std::unexpected(std::move(e));
    a.switchable = switchable;
    return std::move(a);
  };

  // What the origin said.
  ResponseSink& sink = *got.sink;
  // WebDAV servers refuse a GET of a directory named without its '/' with
  // 405 (rclone serve webdav) or 403: a directory if key/ answers (after a
  // 403, only with a 2xx: a forbidden file's key/ is forbidden too).
  long refused = sink.head_.status;
  if (sink.error_ && sink.status_error_ && (refused == 405 || refused == 403) &&
      rule.dirs != DirMode::kVirtual && ProbeDirectory(rule, url, page, refused == 403)) {
    spdlog::debug("lookup {}: directory at {}/ (GET answered {})", key, url, refused);
    a.kind = Attempt::kDirectory;
    return a;
  }
  if (sink.error_) return fail(*sink.error_, sink.status_error_ && sink.head_.status >= 500);
  if (!got.split_error.empty())
    return fail(Error{got.split_errno, "body broke off: got " + got.split_error}, false);
  if (!got.outcome) {
    const HttpFailure& f = got.outcome.error();
    if (f.errc == FetchErrc::kAborted) {
      a.result = std::unexpected(Error{EIO, "aborted: shutting down"});
      return a;
    }
    a.unreachable = SwitchableFailure(f);
    return fail(Error{ToErrno(f.errc), fmt::format("{}: {}", ToString(f.errc), f.detail)},
                SwitchableFailure(f));
  }
  const HttpResponseHead& h = got.outcome->head;
  if (sink.is_dir_) {
    spdlog::debug("lookup {}: directory at {} (rule #{})", key, url, rule.index + 1);
    a.kind = Attempt::kDirectory;
    return a;
  }
  if (sink.fall_through_ || sink.final_not_found_) {
    spdlog::debug("lookup {}: {} answered {}{} (rule #{})", key, url, h.status,
                  sink.soft_404_ ? " with its not-found page (soft_404)" : "", rule.index + 1);
    if (rule.dirs != DirMode::kVirtual && ProbeDirectory(rule, url, page)) {
      a.kind = Attempt::kDirectory;
      return a;
    }
    a.kind = sink.fall_through_ ? Attempt::kFallThrough : Attempt::kNotFound;
    return a;
  }
  if (!got.staging) return fail(Error{EIO, fmt::format("HTTP {}", h.status)}, false);

  // Verify.
  StagingFile& staging = *got.staging;
  if (std::string bad = CheckBody(sink, staging, h); !bad.empty())
    return fail(Error{EIO, bad}, false);
  int64_t mtime = sink.MtimeOf(h);
  flight.PublishHead(Resolution{OriginKind::kFile, staging.size(), mtime, rule.writeback, url,
                                InoOf(staging.fd())});

  // Land: nothing writes the file any more (PassthroughTest.BucketProgramsRun...).
  staging.Seal();
  flight.SealStream();
  auto landed = Land(key, rule, staging, mtime);
  if (!landed) return fail(landed.error(), false);
  if (landed->in_bucket && landed->linked) {
    a.record = ObjectRecord{
        url, h.etag, h.last_modified, staging.size(), Now(), static_cast<uint32_t>(rule.index)};
    NoteLanded(*a.record, staging.fd());
  }
  CountFetched(staging.size(), rule.index);
  a.log_line = fmt::format("fetched key={} url={} status={} bytes={} duration={:.3f}s rule={}{}",
                           key, url, h.status, staging.size(), secs, rule.index + 1,
                           sink.stopped_at_split_ ? " ranges=2" : "");
  a.kind = Attempt::kDone;
  a.result = std::move(landed->object);
  return a;
}

std::string Mirror::CheckBody(ResponseSink& sink, const StagingFile& staging,
                              const HttpResponseHead& h) {
  if (h.content_length && staging.size() != *h.content_length)
    return fmt::format("got {} of {} bytes", staging.size(), *h.content_length);
  return sink.VerifyBody();
}

void Mirror::Receive(Flight& flight, const Rule& rule, const std::string& url, HttpRequest& req,
                     Received& got) {
  const std::string& key = flight.key();
  uint64_t max_size = rule.max_object_size.value_or(options_.max_object_size);
  int retries = rule.retries.value_or(options_.retries);
  auto start_split = [this, &req](std::shared_ptr<SplitState> s) {
    StartSplitHelper(req, std::move(s));
  };
  // retries bounds every further request of this download: the client's own
  // (before a body), re-downloads after a broken body (here, from scratch
  // into the same staging file) and restarts.
  int used = 0;
  Backoff backoff;
  std::optional<HttpResponseHead> first;  // of the first response with a body
  for (int n = 0;; ++n) {
    // Only a first attempt splits: a retry starts over on one connection.
    // A rule that caps its connections (max_concurrent) gets no extra one.
    // (A file server's answers carry no validator to pin the version.)
    bool may_split = n == 0 && rule.max_concurrent <= 0 && !IsFileServerOrigin(rule.origin);
    got.sink.emplace(flight, store_, rule, url, max_size, got.staging,
                     may_split ? options_.parallel_min : 0, start_split, first ? &*first : nullptr);
    ResponseSink& sink = *got.sink;
    if (got.not_found_page) sink.not_found_page_ = &*got.not_found_page;
    req.retries = std::max(0, retries - used);
    stats_.requests++;
    got.outcome = http_.Perform(req, sink);
    used += (got.outcome ? got.outcome->attempts : got.outcome.error().attempts) - 1;
    // The version readers may have bytes of: the first with a body, or the
    // one a retry started over with.
    if (got.staging && (!first || sink.started_over_)) first = sink.head_;
    if (sink.split_ && !sink.stopped_at_split_) CancelSplit(*sink.split_);
    if (sink.stopped_at_split_) {
      if (FinishSplit(sink, req, retries, got) || !got.split_error.empty()) return;
      // The second part is of another version: never stitch it, fetch it all again.
      if (used >= retries || shutting_down_) {
        got.split_error = fmt::format("{} of {} bytes (the object changed meanwhile)",
                                      sink.split_->at, sink.split_->end);
        return;
      }
      ++used;
      spdlog::info("fetch {}: the object changed at the origin; starting over with one GET", key);
      continue;
    }
    bool broken_body = !got.outcome && !sink.error_ && got.outcome.error().body_started &&
                       got.outcome.error().errc != FetchErrc::kAborted;
    if (!broken_body || used >= retries || shutting_down_) return;
    ++used;
    spdlog::info("fetch {}: {} ({}); retrying", key, ToString(got.outcome.error().errc),
                 got.outcome.error().detail);
    backoff.Wait();
  }
}

// The helper GET of a split runs on the download pool (see SplitState).
void Mirror::StartSplitHelper(const HttpRequest& req, std::shared_ptr<SplitState> s) {
  if (shutting_down_) return;  // the split stays pending: the main GET goes on alone
  HttpRequest helper = RangeRequest(req, *s, s->at);
  helper.retries = 0;  // a helper that cannot start is simply not needed
  pool_->Submit([this, s, helper = std::move(helper)] {
    {
      std::lock_guard lock(s->mu);
      if (s->phase != SplitState::Phase::kPending) return;  // the main GET went on alone
    }
    RangeSink sink(*s, true);
    stats_.requests++;
    auto o = http_.Perform(helper, sink);
    std::lock_guard lock(s->mu);
    bool ok = o && sink.error_.empty() && sink.complete();
    if (!sink.error_.empty() && s->phase == SplitState::Phase::kPending)
      spdlog::info("fetch {}: second half: {}; the first GET goes on alone", s->flight.key(),
                   sink.error_);
    if (s->phase == SplitState::Phase::kStreaming)
      s->phase = ok ? SplitState::Phase::kDone : SplitState::Phase::kFailed;
    if (!ok) {
      s->helper_error = !sink.error_.empty() ? sink.error_
                        : o                  ? std::string("range GET ended early")
                            : fmt::format("{}: {}", ToString(o.error().errc), o.error().detail);
    }
    s->helper_exited = true;
    s->cv.notify_all();
  });
}

bool Mirror::FinishSplit(ResponseSink& sink, const HttpRequest& req, int retries, Received& got) {
  SplitState& s = *sink.split_;
  const std::string& key = s.flight.key();
  {
    std::unique_lock lock(s.mu);
    s.cv.wait(lock, [&] { return s.helper_exited; });
    if (s.at + s.tail_bytes < s.end)
      spdlog::info("fetch {}: second half: {}; finishing it here", key, s.helper_error);
  }
  Backoff backoff;
  for (int n = 0; !shutting_down_; ++n) {
    uint64_t from;
    {
      std::lock_guard lock(s.mu);
      from = s.at + s.tail_bytes;
    }
    if (from == s.end) break;
    if (n > retries) {
      got.split_error = fmt::format("{} of {} bytes", from, s.end);
      return false;
    }
    if (n > 0) backoff.Wait();
    RangeSink rest(s, false);
    stats_.requests++;
    (void)http_.Perform(RangeRequest(req, s, from), rest);
    if (!rest.error_.empty()) spdlog::info("fetch {}: {}", key, rest.error_);
    if (rest.write_errno_ == ENOSPC || rest.write_errno_ == EDQUOT) {
      got.split_errno = ENOSPC;  // retrying cannot help; a full bucket is ENOSPC, as always
      got.split_error = fmt::format("{} of {} bytes ({})", from, s.end, rest.error_);
      return false;
    }
    if (rest.invalid_) return false;  // no part of this version to be had: start over
  }
  if (shutting_down_) {
    std::lock_guard lock(s.mu);
    if (s.at + s.tail_bytes < s.end) {
      got.split_error = "shutting down";
      return false;
    }
  }
  if (got.staging) got.staging->SetFilled(s.end);
  return true;
}

Result<Mirror::Landed> Mirror::Land(const std::string& key, const Rule& rule, StagingFile& staging,
                                    int64_t mtime) {
  Landed l;
  l.object.size = staging.size();
  if (rule.writeback) {
    auto c = store_.Commit(staging, key, mtime);
    if (!c && c.error().code != EEXIST) return std::unexpected(c.error());
    if (!c) spdlog::info("fetch {}: a local file appeared meanwhile; keeping it", key);
    l.linked = c.has_value();
    l.in_bucket = true;
    l.object.in_bucket = true;
  } else {
    auto cached = cache_.Insert(key, staging, mtime, rule.cache_max_size);
    if (cached) {
      l.object.temp_file = cached->file;
    } else {  // still served, from the unnamed staging file
      spdlog::warn("object cache: {}", cached.error().message);
      int fd = fcntl(staging.fd(), F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return std::unexpected(Error{errno, "dup staging fd"});
      l.object.temp_file = std::make_shared<UniqueFd>(fd);
    }
  }
  timespec now_ts;
  clock_gettime(CLOCK_REALTIME, &now_ts);
  l.object.landed_ns = Nanos(now_ts);
  return l;
}

}  // namespace originfs

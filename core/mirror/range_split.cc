#include "core/mirror/range_split.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/fmt/fmt.h>

namespace originfs {

bool RangeSink::OnHead(const HttpResponseHead& h) {
  if (std::string bad = Mismatch(h); !bad.empty()) {
    error_ = "range GET refused: " + bad;
    transient_ = h.status >= 500 && h.status <= 599;
    invalid_ = !transient_;
    return false;
  }
  if (!helper_) return true;
  std::lock_guard lock(s_.mu);
  if (s_.phase != SplitState::Phase::kPending) return false;  // cancelled meanwhile
  s_.phase = SplitState::Phase::kStreaming;
  return true;
}

bool RangeSink::OnData(const char* data, std::size_t len) {
  {
    std::lock_guard lock(s_.mu);
    if (helper_ && s_.phase != SplitState::Phase::kStreaming) return false;
  }
  if (offset_ + len > s_.end) {
    error_ = "range GET sent more than asked for";
    return false;
  }
  while (len > 0) {
    ssize_t n = pwrite(s_.fd, data, len, static_cast<off_t>(offset_));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      write_errno_ = n < 0 ? errno : EIO;
      error_ = fmt::format("writing staging file: {}", std::strerror(write_errno_));
      return false;
    }
    data += n;
    len -= static_cast<std::size_t>(n);
    offset_ += static_cast<uint64_t>(n);
    std::lock_guard lock(s_.mu);
    s_.tail_bytes = offset_ - s_.at;
    s_.PublishLocked();
  }
  return true;
}

std::string RangeSink::Mismatch(const HttpResponseHead& h) const {
  uint64_t want = s_.end - offset_;
  if (h.status != 206) return fmt::format("HTTP {}, not 206", h.status);
  if (h.content_length && *h.content_length != want)
    return fmt::format("{} bytes, not {}", *h.content_length, want);
  ContentRange asked{offset_, s_.end - 1, s_.end};
  if (!h.content_range || *h.content_range != asked) {
    std::string got =
        h.content_range
            ? fmt::format("{}-{}/{}", h.content_range->first, h.content_range->last,
                          h.content_range->total ? std::to_string(*h.content_range->total)
                                                 : std::string("*"))
            : std::string("none");
    return fmt::format("Content-Range {}, not {}-{}/{}", got, asked.first, asked.last, s_.end);
  }
  if (h.etag != s_.validator)
    return fmt::format("ETag {}, not {}: the object changed", h.etag, s_.validator);
  if (!h.last_modified.empty() && h.last_modified != s_.last_modified)
    return fmt::format("Last-Modified {}, not {}: the object changed", h.last_modified,
                       s_.last_modified.empty() ? "none" : s_.last_modified);
  return "";
}

HttpRequest RangeRequest(HttpRequest base, const SplitState& s, uint64_t from) {
  base.range = std::make_pair(from, s.end - 1);
  base.protocol_headers.emplace_back("If-Range", s.validator);
  return base;
}

void CancelSplit(SplitState& s) {
  std::unique_lock lock(s.mu);
  if (s.phase == SplitState::Phase::kPending || s.phase == SplitState::Phase::kCancelled) {
    s.phase = SplitState::Phase::kCancelled;  // it never writes: no need to wait for it
    return;
  }
  if (s.phase == SplitState::Phase::kStreaming) s.phase = SplitState::Phase::kCancelled;
  s.cv.wait(lock, [&] { return s.helper_exited; });
}

}  // namespace originfs

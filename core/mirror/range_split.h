#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "core/mirror/flight.h"
#include "core/origin/http_client.h"

namespace originfs {

// Parallel ranged GETs.
//
// A big object is fetched over two connections at once: the GET that asked
// for it keeps the first part (40 %: readers follow it as it arrives, then
// still have the rest to read), and a helper GET with "Range: bytes=at-" and
// "If-Range" (so both parts are of one version of the object) writes the
// second part into the same staging file. Readers see the first part as it
// arrives and the second once the first is complete. The main GET stops at
// the split only if the helper's 206 arrived by then; otherwise the helper is
// cancelled and the main GET simply goes on, so a helper that is slow to
// start, refused (200 instead of 206) or broken never costs more than the
// plain download. A helper that fails midway is finished by ranged GETs on
// the main thread, with the rule's retries.
//
// If-Range is not relied on (busybox httpd, for one, ignores it and answers
// 206 with whatever version it has now): a part is taken only as a 206 whose
// Content-Range is exactly the range asked, of the same total length, with
// the first response's ETag (and Last-Modified, when sent). A helper's part
// that is not is dropped (the first GET goes on alone); a retried part that
// is not means the object changed: the download starts over as one GET.
// The helper GET of a split starts once this much of the first part is in.
constexpr uint64_t kSplitStartAfter = 4u << 20;

struct SplitState {
  enum class Phase { kPending, kStreaming, kCancelled, kFailed, kDone };
  SplitState(Flight& f, int staging_fd, uint64_t split_at, uint64_t object_end, std::string version,
             std::string modified)
      : flight(f),
        fd(staging_fd),
        at(split_at),
        end(object_end),
        validator(std::move(version)),
        last_modified(std::move(modified)) {}
  Flight& flight;
  const int fd;  // the staging file; its owner waits for a streaming helper to exit
  const uint64_t at, end;
  const std::string validator;      // If-Range: the version (strong ETag) the first half is of
  const std::string last_modified;  // the first response's ("" if none)

  std::mutex mu;
  std::condition_variable cv;
  Phase phase = Phase::kPending;  // guarded by mu
  uint64_t tail_bytes = 0;        // guarded by mu: [at, at + tail_bytes) written
  bool head_done = false;         // guarded by mu: [0, at) written by the main GET
  bool helper_exited = false;     // guarded by mu
  std::string helper_error;       // guarded by mu

  // Publishes how much of the object readers may read.
  void PublishLocked() {
    if (head_done) flight.Progress(at + tail_bytes, /*give_way=*/false);
  }
};

// Writes a 206 response for [offset, split.end) of the object at its place.

class RangeSink final : public HttpSink {
 public:
  RangeSink(SplitState& s, bool helper) : s_(s), helper_(helper) {
    std::lock_guard lock(s_.mu);
    offset_ = s_.at + s_.tail_bytes;
  }

  bool OnHead(const HttpResponseHead& h) override;

  bool OnData(const char* data, std::size_t len) override;

  bool complete() const { return offset_ == s_.end; }
  std::string error_;
  int write_errno_ = 0;     // set when the staging file refused the bytes (ENOSPC, ...)
  bool transient_ = false;  // a 5xx: the origin may answer a retry properly
  // Not a part of the first response's version (other ETag, Last-Modified
  // or length, another range, a 200): asking again will not make it one.
  bool invalid_ = false;

 private:
  // Why h is not [offset_, end) of the version the first half is of; "" if it is.
  std::string Mismatch(const HttpResponseHead& h) const;

  SplitState& s_;
  const bool helper_;
  uint64_t offset_ = 0;
};

// A copy of base asking for [from, s.end) of the version s is pinned to.
HttpRequest RangeRequest(HttpRequest base, const SplitState& s, uint64_t from);

// Stops the helper of a split the main GET gives up on (or restarts without):
// returns once the helper can no longer write into the staging file.
void CancelSplit(SplitState& s);

}  // namespace originfs

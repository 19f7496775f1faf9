#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/common/error.h"
#include "core/config/rules.h"
#include "core/mirror/digest.h"
#include "core/mirror/flight.h"
#include "core/mirror/range_split.h"
#include "core/mirror/record.h"
#include "core/origin/http_client.h"
#include "core/store/bucket_store.h"

namespace originfs {

// The origin answered 200 with the page it sends for every missing path.
bool IsSoft404(const Rule& rule, const HttpResponseHead& h);

std::string_view LastSegment(std::string_view key);

// Are two responses for one URL surely the same version of the object (so
// the bytes of one may be continued, or stood for, by the other)? Only when
// something pins the version: the same length and either the same strong
// ETag that is not of the mtime-size form web servers derive from the file
// (nginx "5f3c1a2b-1a2b", Apache "2d-5f3c1a2b4c5d0"), or the same
// validators with a Last-Modified at least kPinnedAgeS older than the first
// response's Date (a change since would have moved it).
bool SameVersion(const HttpResponseHead& first, const HttpResponseHead& again);
inline constexpr int64_t kPinnedAgeS = 2;
// The same for a landed copy's validators against a later change: can a
// conditional GET with them tell that the object changed? Not when they are
// of the mtime-size kind (or only Last-Modified) and the copy was fetched
// within kPinnedAgeS of that mtime: a change in the same second keeps them
// (nginx answers 304 to a rewritten file of the same size). fetched_at is
// our clock, standing for the origin's Date.
bool ValidatorsPinVersion(std::string_view etag, std::string_view last_modified,
                          int64_t fetched_at);

// Receives one GET for a flight: decides from the head what the key is and
// streams the body into a staging file.
class ResponseSink final : public HttpSink {
 public:
  // staging is kept across retries so streaming readers keep their file.
  // Starts the helper GET for a split (see SplitState); given only where a
  // split is allowed.
  using SplitStarter = std::function<void(std::shared_ptr<SplitState>)>;

  // first: the head of this download's first response, on a retry.
  ResponseSink(Flight& flight, BucketStore& store, const Rule& rule, std::string url,
               uint64_t max_size, std::unique_ptr<StagingFile>& staging, uint64_t split_min = 0,
               SplitStarter start_split = nullptr, const HttpResponseHead* first = nullptr)
      : first_(first),
        flight_(flight),
        store_(store),
        rule_(rule),
        url_(std::move(url)),
        max_size_(max_size),
        staging_(staging),
        split_min_(split_min),
        start_split_(std::move(start_split)) {
    if (rule.verify != Verify::kNone) md5_.emplace();
  }

  bool OnHead(const HttpResponseHead& h) override;

  // A big object whose version is pinned (SameVersion) and has a strong ETag
  // for If-Range gets its second part fetched in parallel. (Last-Modified is not enough: If-Range
  // compares it to the second, so an object rewritten within one second could mix.)
  void MaybeSplit(const HttpResponseHead& h);

  bool OnData(const char* data, std::size_t len) override;

  bool AppendBody(const char* data, std::size_t len);

  int64_t MtimeOf(const HttpResponseHead& h) const {
    return rule_.mtime_from_origin ? h.mtime.value_or(Now()) : Now();
  }

  // Checks the body against the rule's verify setting; "" when it passes.
  std::string VerifyBody();

  const HttpResponseHead* first_;
  Flight& flight_;
  BucketStore& store_;
  const Rule& rule_;
  std::string url_;
  uint64_t max_size_;
  HttpResponseHead head_;
  bool is_dir_ = false;
  // This response started the staging file over (another version than the
  // one before, which no reader had a byte of): readers may now have its bytes.
  bool started_over_ = false;
  bool fall_through_ = false;
  bool final_not_found_ = false;
  bool soft_404_ = false;                    // a 200 that the rule's soft_404 says means not found
  const Soft404* not_found_page_ = nullptr;  // the origin's, learned (soft404.cc)
  bool status_error_ = false;
  std::optional<Error> error_;
  std::unique_ptr<StagingFile>& staging_;
  std::optional<Md5> md5_;
  const uint64_t split_min_;
  SplitStarter start_split_;
  std::shared_ptr<SplitState> split_;  // set while a helper may be fetching the second half
  // The helper starts once the first kSplitStartAfter bytes are in: a
  // reader's first bytes do not compete with a second connection being set up.
  bool split_started_ = false;
  bool stopped_at_split_ = false;  // the main GET ended at split_->at on purpose
};

// Answers only the head; used for the "key/" directory probe.
class HeadOnlySink final : public HttpSink {
 public:
  bool OnHead(const HttpResponseHead&) override { return false; }
  bool OnData(const char*, std::size_t) override { return false; }
};

}  // namespace originfs

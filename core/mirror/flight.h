// A download in progress, as the ones waiting for it see it (see the glossary
// in core/mirror/mirror.h): the key's resolution once the response head is
// known, the bytes as they arrive, and the landed object once complete.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/common/error.h"
#include "core/common/unique_fd.h"

namespace originfs {

enum class OriginKind {
  kFile,       // the origin has it; size and mtime are valid
  kDirectory,  // the origin (or a rule prefix) says it is a directory
  kNotFound,   // every matching rule's origin said 404 (or a remembered 404)
  kLanded,     // it landed in the bucket meanwhile: look it up there
};

struct Resolution {
  OriginKind kind = OriginKind::kNotFound;
  uint64_t size = 0;
  int64_t mtime = 0;
  bool writeback = true;
  std::string url;
  // kFile: the inode number of the file the body goes to (in the bucket's
  // filesystem), which the landed file keeps; 0 if unknown.
  ino_t ino = 0;
  // kFile: the response's validators when they pin its version (SameVersion),
  // else empty: another host may then finish the download with a ranged GET.
  std::string etag, last_modified;
};

struct FetchedObject {
  bool in_bucket = false;               // linked under its key
  std::shared_ptr<UniqueFd> temp_file;  // writeback = false: read-write fd of an unlinked copy
  uint64_t size = 0;
  int64_t landed_ns = 0;  // wall clock when it was linked / cached
};

class Flight {
 public:
  using HeadCallback = std::function<void(const Result<Resolution>&)>;
  using DoneCallback = std::function<void(const Result<FetchedObject>&)>;

  explicit Flight(std::string key) : key_(std::move(key)) {}
  const std::string& key() const { return key_; }

  // Runs cb once the head is known: at once on this thread if it already is,
  // otherwise later on a download thread.
  void OnHead(HeadCallback cb);
  // Runs cb once the object is complete (or failed); same threading as OnHead.
  void OnDone(DoneCallback cb);
  // Blocking forms.
  Result<Resolution> WaitHead();
  Result<FetchedObject> WaitDone();

  std::optional<Result<Resolution>> head() const;
  bool finished() const;
  // A failed flight's error is reported to one caller (an open or a read)
  // before a new attempt is made: true for the first caller to ask of a
  // failed flight, false after (and for flights not failed).
  bool ReportFailure();

  // Streaming: while the body arrives, readers may read the part that is
  // already in the staging file. stream_file() is null until the body starts
  // (and stays null for rules that verify a checksum before serving).
  std::shared_ptr<UniqueFd> stream_file() const;
  uint64_t received() const;
  // Runs cb once `bytes` bytes are in the staging file or the flight is
  // finished (successfully or not): at once or later on a download thread.
  void OnAvailable(uint64_t bytes, std::function<void()> cb);
  // Runs cb once the staging file exists (stream_file() set) or the flight is finished.
  void OnStreamOrDone(std::function<void()> cb);

  // Producer side (Mirror only). The first PublishHead wins; Finish also
  // publishes an error head when none was published.
  void PublishHead(Result<Resolution> r);
  void Finish(Result<FetchedObject> r);
  void SetStream(std::shared_ptr<UniqueFd> file);
  // give_way: the producer may step back for a reader it woke (see
  // mirror.cc); false where it holds a lock others need.
  // Published progress never goes down here (a rewound retry writes the
  // same bytes again); only Restart lowers it.
  void Progress(uint64_t bytes, bool give_way = true);
  // A retry of another version (or of one that cannot be pinned) must start
  // from an empty staging file: allowed only while no reader was told any
  // bytes are in (then progress is 0 again, and true); false once one was,
  // and the download must fail rather than give it a second version.
  bool Restart();
  // The body is complete: the stream's descriptor becomes read-only (the
  // staging file is about to become the bucket file; ReopenReadOnly).
  void SealStream();

 private:
  void GiveWay(uint64_t bytes_left);
  std::atomic<int> give_way_left_{2};
  std::atomic<bool> failure_reported_{false};  // the head's answer and the first read's
  const std::string key_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Result<Resolution>> head_;     // guarded by mu_
  std::optional<Result<FetchedObject>> done_;  // guarded by mu_
  std::vector<HeadCallback> head_waiters_;     // guarded by mu_
  std::vector<DoneCallback> done_waiters_;     // guarded by mu_
  std::shared_ptr<UniqueFd> stream_;           // guarded by mu_
  uint64_t received_ = 0;                      // guarded by mu_
  bool served_ = false;                        // a reader was told bytes are in (OnAvailable); mu_
  std::vector<std::pair<uint64_t, std::function<void()>>> data_waiters_;  // guarded by mu_
  std::vector<std::function<void()>> stream_waiters_;                     // guarded by mu_
};

}  // namespace originfs

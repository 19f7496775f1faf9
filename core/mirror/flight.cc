#include "core/mirror/flight.h"

#include <sched.h>

namespace originfs {

namespace {

// The producer has just answered someone waiting for this object (a lookup,
// a first read) and is about to go on writing a long body. The woken reader
// is often queued on this very CPU behind it, and the scheduler would let
// the producer finish its slice first: about a millisecond of a reader's
// time to first byte on a two-core machine. Stepping back lets it run now;
// with nobody else runnable here this is a cheap no-op. Only the first
// answers of a flight do it: on a busy machine every step back costs the
// download a turn behind other work, and a reader that keeps up with the
// download is woken on every chunk. With little of the body left the
// producer is better left to finish.
constexpr uint64_t kGiveWayWhenLeft = 1u << 20;

}  // namespace

void Flight::OnHead(HeadCallback cb) {
  std::unique_lock lock(mu_);
  if (!head_) {
    head_waiters_.push_back(std::move(cb));
    return;
  }
  Result<Resolution> copy = *head_;
  lock.unlock();
  cb(copy);
}

void Flight::OnDone(DoneCallback cb) {
  std::unique_lock lock(mu_);
  if (!done_) {
    done_waiters_.push_back(std::move(cb));
    return;
  }
  Result<FetchedObject> copy = *done_;
  lock.unlock();
  cb(copy);
}

Result<Resolution> Flight::WaitHead() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return head_.has_value(); });
  return *head_;
}

Result<FetchedObject> Flight::WaitDone() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return done_.has_value(); });
  return *done_;
}

std::optional<Result<Resolution>> Flight::head() const {
  std::lock_guard lock(mu_);
  return head_;
}

bool Flight::finished() const {
  std::lock_guard lock(mu_);
  return done_.has_value();
}

bool Flight::ReportFailure() {
  {
    std::lock_guard lock(mu_);
    if (!done_ || done_->has_value()) return false;
  }
  return !failure_reported_.exchange(true);
}

std::shared_ptr<UniqueFd> Flight::stream_file() const {
  std::lock_guard lock(mu_);
  return stream_;
}

uint64_t Flight::received() const {
  std::lock_guard lock(mu_);
  return received_;
}

void Flight::OnAvailable(uint64_t bytes, std::function<void()> cb) {
  {
    std::lock_guard lock(mu_);
    if (!done_ && received_ < bytes) {
      data_waiters_.emplace_back(bytes, std::move(cb));
      return;
    }
    if (!done_) served_ = true;
  }
  cb();
}

void Flight::SetStream(std::shared_ptr<UniqueFd> file) {
  std::vector<std::function<void()>> waiters;
  {
    std::lock_guard lock(mu_);
    stream_ = std::move(file);
    received_ = 0;
    waiters.swap(stream_waiters_);
  }
  for (auto& w : waiters) w();
}

void Flight::OnStreamOrDone(std::function<void()> cb) {
  {
    std::lock_guard lock(mu_);
    if (!stream_ && !done_) {
      stream_waiters_.push_back(std::move(cb));
      return;
    }
  }
  cb();
}

void Flight::GiveWay(uint64_t bytes_left) {
  if (bytes_left >= kGiveWayWhenLeft && give_way_left_.load(std::memory_order_relaxed) > 0 &&
      give_way_left_.fetch_sub(1) > 0)
    sched_yield();
}

void Flight::Progress(uint64_t bytes, bool give_way) {
  std::vector<std::function<void()>> ready;
  uint64_t left = 0;  // of the body, when its size is known
  {
    std::lock_guard lock(mu_);
    bytes = std::max(bytes, received_);
    received_ = bytes;
    if (head_ && *head_ && (*head_)->kind == OriginKind::kFile && (*head_)->size > bytes)
      left = (*head_)->size - bytes;
    auto it = std::partition(data_waiters_.begin(), data_waiters_.end(),
                             [bytes](const auto& w) { return w.first > bytes; });
    for (auto r = it; r != data_waiters_.end(); ++r) ready.push_back(std::move(r->second));
    data_waiters_.erase(it, data_waiters_.end());
    if (!ready.empty()) served_ = true;
  }
  for (auto& cb : ready) cb();
  if (give_way && !ready.empty()) GiveWay(left);
}

void Flight::SealStream() {
  std::shared_ptr<UniqueFd> stream = stream_file();
  if (stream && *stream) (void)ReopenReadOnly(stream->get());
}

bool Flight::Restart() {
  std::lock_guard lock(mu_);
  if (served_) return false;
  received_ = 0;
  return true;
}

void Flight::PublishHead(Result<Resolution> r) {
  std::vector<HeadCallback> waiters;
  {
    std::lock_guard lock(mu_);
    if (head_) return;
    head_ = r;
    waiters.swap(head_waiters_);
  }
  cv_.notify_all();
  for (auto& w : waiters) w(r);
  if (!waiters.empty() && r && r->kind == OriginKind::kFile) GiveWay(r->size);
}

void Flight::Finish(Result<FetchedObject> r) {
  if (!r) PublishHead(std::unexpected(r.error()));
  std::vector<DoneCallback> waiters;
  std::vector<std::pair<uint64_t, std::function<void()>>> data;
  std::vector<std::function<void()>> streams;
  {
    std::lock_guard lock(mu_);
    done_ = r;
    waiters.swap(done_waiters_);
    data.swap(data_waiters_);
    streams.swap(stream_waiters_);
  }
  cv_.notify_all();
  for (auto& w : waiters) w(r);
  for (auto& d : data) d.second();
  for (auto& w : streams) w();
}

}  // namespace originfs

#include "core/mirror.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <thread>

#include <openssl/evp.h>

#include <cctype>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/url.h"

namespace originfs {

// ---- Flight ----------------------------------------------------------------

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
    received_ = bytes;
    if (head_ && *head_ && (*head_)->kind == RemoteKind::kFile && (*head_)->size > bytes)
      left = (*head_)->size - bytes;
    auto it = std::partition(data_waiters_.begin(), data_waiters_.end(),
                             [bytes](const auto& w) { return w.first > bytes; });
    for (auto r = it; r != data_waiters_.end(); ++r) ready.push_back(std::move(r->second));
    data_waiters_.erase(it, data_waiters_.end());
  }
  for (auto& cb : ready) cb();
  if (give_way && !ready.empty()) GiveWay(left);
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
  if (!waiters.empty() && r && r->kind == RemoteKind::kFile) GiveWay(r->size);
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

// ---- Mirror ----------------------------------------------------------------

namespace {

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

ino_t InoOf(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

int64_t Nanos(const timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

// Records in rec the identity of the file just landed from fd, so a refresh
// can tell later whether it changed since.
void NoteLanded(ObjectRecord& rec, int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return;  // unknown: a refresh then compares the size only
  rec.size = static_cast<uint64_t>(st.st_size);
  rec.landed_ino = st.st_ino;
  rec.landed_mtime_ns = Nanos(st.st_mtim);
  rec.landed_ctime_ns = Nanos(st.st_ctim);
}

// The origin answered 200 with the page it sends for every missing path.
bool IsSoft404(const Rule& rule, const HttpResponseHead& h) {
  return rule.soft_404 && (h.status == 200 || h.status == 203) &&
         rule.soft_404->Matches(h.content_type, h.content_length, h.etag);
}

// Staging files made ahead (see BucketStore::PrepareStaging).
constexpr std::size_t kSpareStagingFiles = 4;

std::string_view LastSegment(std::string_view key) {
  std::size_t slash = key.rfind('/');
  return slash == std::string_view::npos ? key : key.substr(slash + 1);
}

std::string Hex(const unsigned char* d, std::size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    out += kHex[d[i] >> 4];
    out += kHex[d[i] & 0xF];
  }
  return out;
}

// Base64 (Content-MD5) to lowercase hex; "" if malformed.
std::string Base64ToHex(std::string_view b64) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string bytes;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : b64) {
    if (c == '=') break;
    int v = val(c);
    if (v < 0) return "";
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return Hex(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

// The ETag as a plain MD5 in hex, or "" (weak, multipart "-N", not hex).
std::string EtagMd5(std::string_view etag) {
  if (etag.starts_with("W/")) return "";
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"')
    etag = etag.substr(1, etag.size() - 2);
  if (etag.size() != 32) return "";
  std::string out;
  for (char c : etag) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return "";
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

class Md5 {
 public:
  Md5() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_md5(), nullptr); }
  ~Md5() { EVP_MD_CTX_free(ctx_); }
  Md5(const Md5&) = delete;
  Md5& operator=(const Md5&) = delete;
  void Update(const char* d, std::size_t n) { EVP_DigestUpdate(ctx_, d, n); }
  std::string HexDigest() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, out, &n);
    return Hex(out, n);
  }

 private:
  EVP_MD_CTX* ctx_;
};

// ---- Parallel ranged GETs ---------------------------------------------------
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

  bool OnHead(const HttpResponseHead& h) override {
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

  bool OnData(const char* data, std::size_t len) override {
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

  bool complete() const { return offset_ == s_.end; }
  std::string error_;
  int write_errno_ = 0;     // set when the staging file refused the bytes (ENOSPC, ...)
  bool transient_ = false;  // a 5xx: the origin may answer a retry properly
  // Not a part of the first response's version (other ETag, Last-Modified
  // or length, another range, a 200): asking again will not make it one.
  bool invalid_ = false;

 private:
  // Why h is not [offset_, end) of the version the first half is of; "" if it is.
  std::string Mismatch(const HttpResponseHead& h) const {
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

  SplitState& s_;
  const bool helper_;
  uint64_t offset_ = 0;
};

HttpRequest RangeRequest(HttpRequest base, const SplitState& s, uint64_t from) {
  base.range = std::make_pair(from, s.end - 1);
  base.headers.emplace_back("If-Range", s.validator);
  return base;
}

// Stops the helper of a split the main GET gives up on (or restarts without):
// returns once the helper can no longer write into the staging file.
void CancelSplit(SplitState& s) {
  std::unique_lock lock(s.mu);
  if (s.phase == SplitState::Phase::kPending || s.phase == SplitState::Phase::kCancelled) {
    s.phase = SplitState::Phase::kCancelled;  // it never writes: no need to wait for it
    return;
  }
  if (s.phase == SplitState::Phase::kStreaming) s.phase = SplitState::Phase::kCancelled;
  s.cv.wait(lock, [&] { return s.helper_exited; });
}

// Receives one GET for a flight: decides from the head what the key is and
// streams the body into a staging file.
class FlightSink final : public HttpSink {
 public:
  // staging is kept across retries so streaming readers keep their file.
  // Starts the helper GET for a split (see SplitState); given only where a
  // split is allowed.
  using SplitStarter = std::function<void(std::shared_ptr<SplitState>)>;

  FlightSink(Flight& flight, BucketStore& store, const Rule& rule, std::string url,
             uint64_t max_size, std::unique_ptr<StagingFile>& staging, uint64_t split_min = 0,
             SplitStarter start_split = nullptr)
      : flight_(flight),
        store_(store),
        rule_(rule),
        url_(std::move(url)),
        max_size_(max_size),
        staging_(staging),
        split_min_(split_min),
        start_split_(std::move(start_split)) {
    if (rule.verify != Verify::kNone) md5_.emplace();
  }

  bool OnHead(const HttpResponseHead& h) override {
    head_ = h;
    // A redirect from key to key/ (nginx, Apache) means a directory.
    std::string slash_self = std::string(LastSegment(url_)) + "/";
    if ((h.redirects > 0 && h.effective_url.ends_with('/') && !url_.ends_with('/')) ||
        (h.status / 100 == 3 && h.location.ends_with(slash_self))) {
      is_dir_ = true;
      return false;
    }
    if (IsSoft404(rule_, h)) {  // the origin's "not found" page: exactly a 404
      soft_404_ = true;
      (rule_.FallsThrough(404) ? fall_through_ : final_not_found_) = true;
      return false;
    }
    if (rule_.FallsThrough(h.status)) {
      fall_through_ = true;
      return false;
    }
    if (h.status == 404 || h.status == 410) {
      final_not_found_ = true;
      return false;
    }
    if (h.status == 304) return false;  // conditional GET (refresh): nothing new
    if (h.status != 200 && h.status != 203) {
      status_error_ = true;
      error_ = Error{EIO, fmt::format("HTTP {}", h.status)};
      return false;
    }
    if (max_size_ && h.content_length && *h.content_length > max_size_) {
      error_ =
          Error{EIO, fmt::format("{} ({} > max_object_size {})", ToString(FetchErrc::kTooLarge),
                                 *h.content_length, max_size_)};
      return false;
    }
    if (staging_) {
      if (auto r = staging_->Reset(); !r) {
        error_ = r.error();
        return false;
      }
      flight_.Progress(0);
    } else {
      auto staging = store_.CreateStaging();
      if (!staging) {
        error_ = staging.error();
        return false;
      }
      staging_ = std::move(*staging);
      // Readers may follow the download, unless the body must be verified first.
      int fd = rule_.verify == Verify::kNone ? fcntl(staging_->fd(), F_DUPFD_CLOEXEC, 0) : -1;
      if (fd >= 0) flight_.SetStream(std::make_shared<UniqueFd>(fd));
    }
    if (h.content_length) {
      // Size known up front: a lookup can be answered now, while the body
      // streams. The staging file is made first: it becomes the landed
      // file, so its inode number is the one the name is shown with from
      // now on.
      flight_.PublishHead(Resolution{RemoteKind::kFile, *h.content_length, MtimeOf(h),
                                     rule_.writeback, url_, InoOf(staging_->fd())});
    }
    MaybeSplit(h);
    return true;
  }

  // A big object whose version can be pinned by a strong ETag gets its second
  // part fetched in parallel. (Last-Modified is not enough: If-Range compares
  // it to the second, so an object rewritten within one second could mix.)
  void MaybeSplit(const HttpResponseHead& h) {
    if (!start_split_ || split_min_ == 0 || h.status != 200 || !h.content_length ||
        *h.content_length < split_min_ || rule_.verify != Verify::kNone)
      return;
    if (h.etag.empty() || h.etag.starts_with("W/")) return;
    std::string validator = h.etag;
    // The first part is the smaller one: readers follow it as it arrives and
    // then still have to read the second, which the helper finishes meanwhile.
    uint64_t at = (*h.content_length / 5 * 2) & ~((uint64_t{1} << 20) - 1);  // 1 MiB aligned
    if (at < 2 * kSplitStartAfter) return;  // too small to gain from a second connection
    split_ = std::make_shared<SplitState>(flight_, staging_->fd(), at, *h.content_length,
                                          std::move(validator), h.last_modified);
  }

  bool OnData(const char* data, std::size_t len) override {
    if (split_ && !split_started_ && staging_->size() + len >= kSplitStartAfter) {
      split_started_ = true;
      start_split_(split_);
    }
    if (split_ && !stopped_at_split_ && staging_->size() + len >= split_->at) {
      // The first half ends in this chunk: write up to the split, then stop
      // here if the helper is streaming the rest, else cancel it and go on.
      std::size_t head = static_cast<std::size_t>(split_->at - staging_->size());
      if (head > 0 && !AppendBody(data, head)) return false;
      std::lock_guard lock(split_->mu);
      if (split_->phase == SplitState::Phase::kStreaming ||
          split_->phase == SplitState::Phase::kDone) {
        split_->head_done = true;
        split_->PublishLocked();
        stopped_at_split_ = true;
        return false;  // the helper has the rest
      }
      if (split_->phase == SplitState::Phase::kPending)
        split_->phase = SplitState::Phase::kCancelled;
      split_.reset();
      return AppendBody(data + head, len - head);
    }
    return AppendBody(data, len);
  }

  bool AppendBody(const char* data, std::size_t len) {
    if (len == 0) return true;
    if (max_size_ && staging_->size() + len > max_size_) {
      error_ = Error{EIO, fmt::format("{} (over max_object_size {})",
                                      ToString(FetchErrc::kTooLarge), max_size_)};
      return false;
    }
    auto r = staging_->Append(data, len);
    if (!r) {
      error_ = r.error();
      return false;
    }
    if (md5_) md5_->Update(data, len);
    flight_.Progress(staging_->size());
    return true;
  }

  int64_t MtimeOf(const HttpResponseHead& h) const {
    return rule_.mtime_from_origin ? h.mtime.value_or(Now()) : Now();
  }

  // Checks the body against the rule's verify setting; "" when it passes.
  std::string VerifyBody() {
    if (rule_.verify == Verify::kNone) return "";
    std::string want;
    if (rule_.verify == Verify::kContentMd5) {
      if (head_.content_md5.empty())
        return "verify=content-md5 but the response has no Content-MD5";
      want = Base64ToHex(head_.content_md5);
    } else {
      want = EtagMd5(head_.etag);
      if (want.empty())
        return fmt::format("verify=etag-md5 but the ETag {} is not a plain MD5", head_.etag);
    }
    std::string got = md5_->HexDigest();
    if (got != want)
      return fmt::format("{}: body md5 {} != expected {}", ToString(FetchErrc::kDigestMismatch),
                         got, want);
    return "";
  }

  Flight& flight_;
  BucketStore& store_;
  const Rule& rule_;
  std::string url_;
  uint64_t max_size_;
  HttpResponseHead head_;
  bool is_dir_ = false;
  bool fall_through_ = false;
  bool final_not_found_ = false;
  bool soft_404_ = false;  // a 200 that the rule's soft_404 says means not found
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

}  // namespace

// A counting semaphore for a rule's max_concurrent.
class Mirror::Slots {
 public:
  explicit Slots(int n) : free_(n) {}
  void Acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return free_ > 0; });
    --free_;
  }
  void Release() {
    {
      std::lock_guard lock(mu_);
      ++free_;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int free_;  // guarded by mu_
};

struct Mirror::Attempt {
  enum Kind { kDone, kFallThrough, kNotFound, kDirectory, kFailed } kind = kFailed;
  Result<FetchedObject> result = std::unexpected(Error{EIO, "not attempted"});
  bool switchable = false;  // connection error, timeout or 5xx: another origin may do better
  std::optional<ObjectRecord> record;  // to index once the waiters have their answer
  std::string log_line;
};

Mirror::Mirror(RuleSet rules, HttpClient& http, BucketStore& store, Index& index,
               MirrorOptions options)
    : rules_(std::make_shared<const RuleSet>(std::move(rules))),
      http_(http),
      store_(store),
      index_(index),
      options_(options),
      cache_(store),
      pool_(std::make_unique<ThreadPool>(options.download_threads)) {
  store_.PrepareStaging(kSpareStagingFiles);
}

Mirror::~Mirror() {
  Shutdown();
  {
    std::unique_lock lock(here_mu_);
    here_cv_.wait(lock, [this] { return running_here_ == 0; });
  }
  pool_->Drain();  // running downloads may still submit (split helpers): pool_ stays set
  pool_.reset();
}

void Mirror::Shutdown() {
  shutting_down_ = true;
  http_.Shutdown();
}

std::shared_ptr<const RuleSet> Mirror::rules() const {
  std::lock_guard lock(rules_mu_);
  return rules_;
}

void Mirror::SetRules(RuleSet rules) {
  auto next = std::make_shared<const RuleSet>(std::move(rules));
  std::lock_guard lock(rules_mu_);
  rules_ = std::move(next);
}

bool Mirror::HasRule(std::string_view key) const { return !rules()->Match(key).empty(); }

bool Mirror::ImpliedDirectory(std::string_view key) const {
  return rules()->PrefixImpliesDirectory(key);
}

void Mirror::ForgetNotFound(std::string_view key) {
  if (auto r = index_.EraseNotFound(key); !r) spdlog::warn("index: {}", r.error().message);
}

std::shared_ptr<Flight> Mirror::Start(std::string_view key, std::optional<uint64_t> landings_seen) {
  return StartImpl(key, landings_seen, nullptr, false);
}

std::shared_ptr<Flight> Mirror::StartHere(
    std::string_view key, uint64_t landings_seen,
    const std::function<void(const std::shared_ptr<Flight>&)>& attach) {
  return StartImpl(key, landings_seen, &attach, options_.run_in_caller);
}

std::shared_ptr<Flight> Mirror::StartImpl(
    std::string_view key, std::optional<uint64_t> landings_seen,
    const std::function<void(const std::shared_ptr<Flight>&)>* attach, bool here) {
  std::string k(key);
  std::shared_ptr<Flight> flight;
  bool ours = false;
  {
    std::lock_guard lock(flights_mu_);
    auto it = flights_.find(k);
    if (it != flights_.end()) {
      flight = it->second;
    } else {
      flight = std::make_shared<Flight>(k);
      // A flight that finished just now has already linked the object. (If
      // none has finished since the caller looked, it is not there.)
      bool look = !landings_seen || *landings_seen != store_.landings();
      auto fd = look && !k.empty() ? store_.OpenKey(k, O_PATH) : Result<int>(-1);
      if (fd && *fd >= 0) {
        struct stat st {};
        fstat(*fd, &st);
        close(*fd);
        flight->Finish(FetchedObject{true, nullptr, static_cast<uint64_t>(st.st_size)});
        flight->PublishHead(Resolution{RemoteKind::kLocal});
      } else {
        flights_.emplace(k, flight);
        ours = true;
      }
    }
  }
  // Outside the lock: a waiter registered on a flight that has its answer
  // already runs at once.
  if (attach) (*attach)(flight);
  if (!ours) return flight;
  stats_.misses++;
  auto nf = index_.IsNotFound(k, Now());
  if (nf && *nf) {
    stats_.not_found++;
    flight->PublishHead(Resolution{RemoteKind::kNotFound});
    Complete(flight, Fail(ENOENT, "remembered 404"));
    return flight;
  }
  if (shutting_down_) {
    Complete(flight, Fail(EIO, "shutting down"));
    return flight;
  }
  if (++stats_.inflight <= static_cast<int64_t>(options_.download_threads) && here) {
    {
      std::lock_guard lock(here_mu_);
      ++running_here_;
    }
    RunCounted(flight, rules());
    std::lock_guard lock(here_mu_);
    if (--running_here_ == 0) here_cv_.notify_all();
    return flight;
  }
  pool_->Submit([this, flight, rules = rules()]() mutable {
    // Moved in: the flight (and, with writeback = false, its cached file,
    // which counts as in use while referenced) is let go as Run returns.
    RunCounted(std::move(flight), std::move(rules));
  });
  return flight;
}

void Mirror::RunCounted(std::shared_ptr<Flight> flight, std::shared_ptr<const RuleSet> rules) {
  Run(std::move(flight), std::move(rules));
  stats_.inflight--;
  // The next download finds its staging file made: inode allocation leaves
  // the path between a response's first byte and the reader.
  store_.PrepareStaging(kSpareStagingFiles);
}

void Mirror::Complete(const std::shared_ptr<Flight>& flight, Result<FetchedObject> r) {
  {
    std::lock_guard lock(flights_mu_);
    auto it = flights_.find(flight->key());
    if (it != flights_.end() && it->second == flight) flights_.erase(it);
  }
  flight->Finish(std::move(r));
}

std::vector<std::string> Mirror::OriginOrder(const Rule& rule) {
  std::vector<std::string> healthy, down;
  int64_t now = Now();
  std::lock_guard lock(health_mu_);
  for (const auto& o : rule.origins) {
    auto it = down_until_.find(o);
    (it != down_until_.end() && it->second > now ? down : healthy).push_back(o);
  }
  healthy.insert(healthy.end(), down.begin(), down.end());  // still probed, last
  return healthy;
}

void Mirror::MarkDown(const std::string& origin) {
  std::lock_guard lock(health_mu_);
  down_until_[origin] = Now() + options_.origin_cooldown_s;
}

void Mirror::MarkUp(const std::string& origin) {
  std::lock_guard lock(health_mu_);
  down_until_.erase(origin);
}

std::shared_ptr<Mirror::Slots> Mirror::SlotsFor(const Rule& rule) {
  if (rule.max_concurrent <= 0) return nullptr;
  std::string id = fmt::format("{}\x1f{}\x1f{}", rule.prefix, rule.suffix, rule.max_concurrent);
  std::lock_guard lock(slots_mu_);
  auto& s = slots_[id];
  if (!s) s = std::make_shared<Slots>(rule.max_concurrent);
  return s;
}

HttpRequest Mirror::RequestFor(const Rule& rule, std::string url) const {
  HttpRequest req;
  req.url = std::move(url);
  req.headers = rule.headers;
  req.follow_redirects = rule.follow_redirects;
  req.max_redirects = rule.max_redirects;
  if (rule.connect_timeout)
    req.connect_timeout_ms = static_cast<long>(*rule.connect_timeout * 1000);
  req.low_speed_time_s = rule.timeout;
  req.retries = rule.retries;
  req.ca_file = rule.ca_file;
  req.insecure = rule.insecure;
  return req;
}

void Mirror::Run(std::shared_ptr<Flight> flight, std::shared_ptr<const RuleSet> rules) {
  const std::string& key = flight->key();
  // Shared bucket: one host fetches, the others wait and then find it in place.
  std::optional<KeyLock> lock;
  if (store_.shared()) {
    auto l = store_.LockKey(key);
    if (!l) {
      Complete(flight, Fail(EIO, "key lock: " + l.error().message));
      return;
    }
    lock.emplace(std::move(*l));
    if (store_.Exists(key)) {
      spdlog::debug("fetch {}: another host landed it", key);
      flight->PublishHead(Resolution{RemoteKind::kLocal});
      Complete(flight, FetchedObject{true, nullptr, 0});
      return;
    }
  }
  auto candidates = rules->Match(key);
  bool virtual_dir = false;
  for (const Rule* rule : candidates) {
    if (!rule->writeback) {
      if (auto hit = cache_.Lookup(key)) {  // served before, not kept in the bucket
        spdlog::debug("lookup {}: from the object cache", key);
        flight->PublishHead(Resolution{RemoteKind::kFile, hit->size, hit->mtime, false, "",
                                       InoOf(hit->file->get())});
        Complete(flight, FetchedObject{false, hit->file, hit->size});
        return;
      }
    }
    auto slots = SlotsFor(*rule);
    if (slots) slots->Acquire();
    Attempt a;
    for (const std::string& origin : OriginOrder(*rule)) {
      a = FetchFromOrigin(*flight, *rule, origin);
      if (a.kind == Attempt::kFailed && a.switchable && !shutting_down_) {
        MarkDown(origin);
        continue;  // fail over to the next origin of this rule
      }
      if (a.kind != Attempt::kFailed) MarkUp(origin);
      break;
    }
    if (slots) slots->Release();
    switch (a.kind) {
      case Attempt::kDone:
      case Attempt::kFailed:
        // Recorded before anyone is answered: a reader that has the bytes sees their origin.
        if (a.record) {
          if (auto p = index_.Put(key, *a.record); !p) spdlog::warn("index: {}", p.error().message);
        }
        Complete(flight, std::move(a.result));
        if (!a.log_line.empty()) spdlog::info("{}", a.log_line);
        return;
      case Attempt::kDirectory:
        flight->PublishHead(Resolution{RemoteKind::kDirectory});
        Complete(flight, Fail(EISDIR, "directory"));
        return;
      case Attempt::kNotFound:  // final for this key: no further rules
        candidates.clear();
        break;
      case Attempt::kFallThrough:
        break;
    }
    if (rule->dirs == DirMode::kVirtual ||
        (rule->dirs == DirMode::kNoExt && LastSegment(key).find('.') == std::string_view::npos)) {
      virtual_dir = true;
    }
    if (candidates.empty()) break;
  }
  if (virtual_dir) {
    flight->PublishHead(Resolution{RemoteKind::kDirectory});
    Complete(flight, Fail(EISDIR, "directory"));
    return;
  }
  stats_.not_found++;
  if (options_.negative_ttl_s > 0) {
    if (auto p = index_.PutNotFound(key, Now() + options_.negative_ttl_s); !p)
      spdlog::warn("index: {}", p.error().message);
  }
  flight->PublishHead(Resolution{RemoteKind::kNotFound});
  Complete(flight, Fail(ENOENT, "not found at any origin"));
}

bool Mirror::ProbeDirectory(const Rule& rule, const std::string& url) {
  HttpRequest req = RequestFor(rule, url + "/");
  req.head = true;
  HeadOnlySink sink;
  stats_.requests++;
  auto r = http_.Perform(req, sink);
  if (!r) return false;
  if (IsSoft404(rule, r->head)) return false;  // key/ got the "not found" page too
  long s = r->head.status;
  return (s >= 200 && s < 300) || s == 401 || s == 403;
}

Mirror::Attempt Mirror::FetchFromOrigin(Flight& flight, const Rule& rule,
                                        const std::string& origin) {
  const std::string& key = flight.key();
  std::string url = KeyUrl(origin, rule.OriginPath(key));
  uint64_t max_size = rule.max_object_size.value_or(options_.max_object_size);
  int retries = rule.retries.value_or(options_.retries);
  auto started = std::chrono::steady_clock::now();
  HttpRequest req = RequestFor(rule, url);
  // The client retries what fails before the body starts; a body that breaks
  // off midway is retried here, from scratch into a fresh staging file.
  std::unique_ptr<StagingFile> staging_file;
  std::optional<FlightSink> sink_slot;
  std::expected<HttpOutcome, HttpFailure> outcome;
  // The helper GET of a split runs on the download pool (see SplitState).
  auto start_split = [this, &req](std::shared_ptr<SplitState> s) {
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
  };
  std::string split_error;
  int split_errno = EIO;
  // Finishes a split whose first half is in: waits for the helper, fetches
  // what it left with ranged GETs. True when the object is whole; false with
  // split_error set, or with split_error empty when the object changed at
  // the origin and the download must start over.
  auto finish_split = [&](FlightSink& sink) -> bool {
    SplitState& s = *sink.split_;
    {
      std::unique_lock lock(s.mu);
      s.cv.wait(lock, [&] { return s.helper_exited; });
      if (s.at + s.tail_bytes < s.end)
        spdlog::info("fetch {}: second half: {}; finishing it here", key, s.helper_error);
    }
    long range_backoff_ms = 100;
    for (int n = 0; !shutting_down_; ++n) {
      uint64_t from;
      {
        std::lock_guard lock(s.mu);
        from = s.at + s.tail_bytes;
      }
      if (from == s.end) break;
      if (n > retries) {
        split_error = fmt::format("{} of {} bytes", from, s.end);
        return false;
      }
      if (n > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(range_backoff_ms));
        range_backoff_ms *= 2;
      }
      RangeSink rest(s, false);
      stats_.requests++;
      (void)http_.Perform(RangeRequest(req, s, from), rest);
      if (!rest.error_.empty()) spdlog::info("fetch {}: {}", key, rest.error_);
      if (rest.write_errno_ == ENOSPC || rest.write_errno_ == EDQUOT) {
        split_errno = ENOSPC;  // retrying cannot help; a full bucket is ENOSPC, as always
        split_error = fmt::format("{} of {} bytes ({})", from, s.end, rest.error_);
        return false;
      }
      if (rest.invalid_) return false;  // no part of this version to be had: start over
    }
    if (shutting_down_) {
      std::lock_guard lock(s.mu);
      if (s.at + s.tail_bytes < s.end) {
        split_error = "shutting down";
        return false;
      }
    }
    if (sink.staging_) sink.staging_->SetFilled(s.end);
    return true;
  };
  // retries bounds every further request of this download: the client's own
  // (before a body), re-downloads after a broken body and restarts.
  int used = 0;
  long backoff_ms = 100;
  for (int n = 0;; ++n) {
    // Only a first attempt splits: a retry starts over on one connection.
    // A rule that caps its connections (max_concurrent) gets no extra one.
    bool may_split = n == 0 && rule.max_concurrent <= 0;
    sink_slot.emplace(flight, store_, rule, url, max_size, staging_file,
                      may_split ? options_.parallel_min : 0, start_split);
    req.retries = std::max(0, retries - used);
    stats_.requests++;
    outcome = http_.Perform(req, *sink_slot);
    used += (outcome ? outcome->attempts : outcome.error().attempts) - 1;
    if (sink_slot->split_ && !sink_slot->stopped_at_split_) CancelSplit(*sink_slot->split_);
    if (sink_slot->stopped_at_split_) {
      if (finish_split(*sink_slot) || !split_error.empty()) break;
      // The second part is of another version: never stitch it, fetch it all again.
      if (used >= retries || shutting_down_) {
        split_error = fmt::format("{} of {} bytes (the object changed meanwhile)",
                                  sink_slot->split_->at, sink_slot->split_->end);
        break;
      }
      ++used;
      spdlog::info("fetch {}: the object changed at the origin; starting over with one GET", key);
      continue;
    }
    bool broken_body = !outcome && !sink_slot->error_ && outcome.error().body_started &&
                       outcome.error().errc != FetchErrc::kAborted;
    if (!broken_body || used >= retries || shutting_down_) break;
    ++used;
    spdlog::info("fetch {}: {} ({}); retrying", key, ToString(outcome.error().errc),
                 outcome.error().detail);
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    backoff_ms *= 2;
  }
  FlightSink& sink = *sink_slot;
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

  if (sink.error_) return fail(*sink.error_, sink.status_error_ && sink.head_.status >= 500);
  if (!split_error.empty())
    return fail(Error{split_errno, "body broke off: got " + split_error}, false);
  if (!outcome) {
    const HttpFailure& f = outcome.error();
    if (f.errc == FetchErrc::kAborted) {
      a.result = std::unexpected(Error{EIO, "aborted: shutting down"});
      return a;
    }
    bool switchable =
        !f.body_started && (f.errc == FetchErrc::kConnect || f.errc == FetchErrc::kTimeout ||
                            f.errc == FetchErrc::kResolve);
    return fail(Error{ToErrno(f.errc), fmt::format("{}: {}", ToString(f.errc), f.detail)},
                switchable);
  }
  if (sink.is_dir_) {
    spdlog::debug("lookup {}: directory at {} (rule #{})", key, url, rule.index + 1);
    a.kind = Attempt::kDirectory;
    return a;
  }
  if (sink.fall_through_ || sink.final_not_found_) {
    spdlog::debug("lookup {}: {} answered {}{} (rule #{})", key, url, outcome->head.status,
                  sink.soft_404_ ? " with its not-found page (soft_404)" : "", rule.index + 1);
    if (rule.dirs != DirMode::kVirtual && ProbeDirectory(rule, url)) {
      a.kind = Attempt::kDirectory;
      return a;
    }
    a.kind = sink.fall_through_ ? Attempt::kFallThrough : Attempt::kNotFound;
    return a;
  }
  if (!sink.staging_) return fail(Error{EIO, fmt::format("HTTP {}", outcome->head.status)}, false);

  StagingFile& staging = *sink.staging_;
  const HttpResponseHead& h = outcome->head;
  if (h.content_length && staging.size() != *h.content_length) {
    return fail(Error{EIO, fmt::format("got {} of {} bytes", staging.size(), *h.content_length)},
                false);
  }
  if (std::string bad = sink.VerifyBody(); !bad.empty()) return fail(Error{EIO, bad}, false);
  int64_t mtime = sink.MtimeOf(h);
  flight.PublishHead(Resolution{RemoteKind::kFile, staging.size(), mtime, rule.writeback, url,
                                InoOf(staging.fd())});

  FetchedObject obj;
  obj.size = staging.size();
  if (rule.writeback) {
    auto c = store_.Commit(staging, key, mtime);
    if (!c && c.error().code != EEXIST) return fail(c.error(), false);
    if (!c) {
      spdlog::info("fetch {}: a local file appeared meanwhile; keeping it", key);
    } else {
      a.record = ObjectRecord{
          url, h.etag, h.last_modified, staging.size(), Now(), static_cast<uint32_t>(rule.index)};
      NoteLanded(*a.record, staging.fd());
    }
    obj.in_bucket = true;
  } else {
    auto cached = cache_.Insert(key, staging, mtime, rule.cache_max_size);
    if (cached) {
      obj.temp_file = cached->file;
    } else {  // still served, from the unnamed staging file
      spdlog::warn("object cache: {}", cached.error().message);
      int fd = fcntl(staging.fd(), F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return fail(Error{errno, "dup staging fd"}, false);
      obj.temp_file = std::make_shared<UniqueFd>(fd);
    }
  }
  timespec now_ts;
  clock_gettime(CLOCK_REALTIME, &now_ts);
  obj.landed_ns = static_cast<int64_t>(now_ts.tv_sec) * 1'000'000'000 + now_ts.tv_nsec;
  stats_.fetches++;
  stats_.fetched_bytes += staging.size();
  a.log_line = fmt::format("fetched key={} url={} status={} bytes={} duration={:.3f}s rule={}{}",
                           key, url, h.status, staging.size(), secs, rule.index + 1,
                           sink.stopped_at_split_ ? " ranges=2" : "");
  a.kind = Attempt::kDone;
  a.result = std::move(obj);
  return a;
}

struct Mirror::RefreshAttempt {
  enum Kind { kDone, kFallThrough, kNotFound, kFailed } kind = kFailed;
  Result<RefreshOutcome> result = std::unexpected(Error{EIO, "not attempted"});
  bool switchable = false;  // connection error, timeout or 5xx: another origin may do better
};

std::optional<Mirror::RefreshOutcome> Mirror::LocalChange(
    const std::string& key, const std::optional<ObjectRecord>& record) const {
  auto fd = store_.OpenKey(key, O_PATH);
  if (!fd) return std::nullopt;  // nothing there: nothing to lose
  struct stat st;
  int rc = fstat(*fd, &st);
  close(*fd);
  if (rc != 0) return std::nullopt;
  if (!record) return RefreshOutcome::kLocalFile;
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != record->size)
    return RefreshOutcome::kChangedLocally;
  if (record->landed_ino == 0) return std::nullopt;  // an old record: the size is all it has
  if (st.st_ino != record->landed_ino || Nanos(st.st_mtim) != record->landed_mtime_ns ||
      Nanos(st.st_ctim) != record->landed_ctime_ns)
    return RefreshOutcome::kChangedLocally;
  return std::nullopt;
}

Mirror::RefreshAttempt Mirror::RefreshFrom(const std::string& key, const Rule& rule,
                                           const std::string& origin,
                                           const std::optional<ObjectRecord>& record,
                                           bool conditional, bool force) {
  std::string url = KeyUrl(origin, rule.OriginPath(key));
  HttpRequest req = RequestFor(rule, url);
  if (conditional) {
    if (!record->etag.empty()) req.headers.emplace_back("If-None-Match", record->etag);
    if (!record->last_modified.empty())
      req.headers.emplace_back("If-Modified-Since", record->last_modified);
  }
  Flight scratch(key);  // heads published while refreshing go nowhere
  std::unique_ptr<StagingFile> staging;
  FlightSink sink(scratch, store_, rule, url,
                  rule.max_object_size.value_or(options_.max_object_size), staging);
  stats_.requests++;
  auto outcome = http_.Perform(req, sink);
  RefreshAttempt a;
  auto fail = [&](std::string why, bool switchable) {
    stats_.origin_errors++;
    spdlog::warn("refresh key={} url={} rule={} failed: {}", key, url, rule.index + 1, why);
    a.kind = RefreshAttempt::kFailed;
    a.result = Fail(EIO, fmt::format("refresh {}: {}", url, why));
    a.switchable = switchable;
    return a;
  };
  if (outcome && outcome->head.status == 304) {
    spdlog::info("refresh key={} url={}: not modified", key, url);
    a.kind = RefreshAttempt::kDone;
    a.result = RefreshOutcome::kUnchanged;
    return a;
  }
  if (sink.fall_through_ || sink.final_not_found_) {
    a.kind = sink.fall_through_ ? RefreshAttempt::kFallThrough : RefreshAttempt::kNotFound;
    return a;
  }
  if (sink.error_)
    return fail(sink.error_->message, sink.status_error_ && sink.head_.status >= 500);
  if (!outcome) {
    const HttpFailure& f = outcome.error();
    bool switchable = f.errc != FetchErrc::kAborted && !f.body_started &&
                      (f.errc == FetchErrc::kConnect || f.errc == FetchErrc::kTimeout ||
                       f.errc == FetchErrc::kResolve);
    return fail(fmt::format("{}: {}", ToString(f.errc), f.detail), switchable);
  }
  if (!staging || sink.is_dir_) return fail(fmt::format("HTTP {}", outcome->head.status), false);
  const HttpResponseHead& h = outcome->head;
  if (h.content_length && staging->size() != *h.content_length)
    return fail(fmt::format("got {} of {} bytes", staging->size(), *h.content_length), false);
  if (std::string bad = sink.VerifyBody(); !bad.empty()) return fail(bad, false);
  // The download took a while: look again right before replacing.
  if (auto changed = force ? std::nullopt : LocalChange(key, record)) {
    spdlog::info("refresh key={}: changed locally while downloading; keeping it", key);
    a.kind = RefreshAttempt::kDone;
    a.result = *changed;
    return a;
  }
  a.kind = RefreshAttempt::kDone;
  if (auto c = store_.CommitReplace(*staging, key, sink.MtimeOf(h)); !c) {
    a.result = std::unexpected(c.error());
    return a;
  }
  ObjectRecord updated{
      url, h.etag, h.last_modified, staging->size(), Now(), static_cast<uint32_t>(rule.index)};
  NoteLanded(updated, staging->fd());
  if (auto p = index_.Put(key, updated); !p) spdlog::warn("index: {}", p.error().message);
  stats_.fetches++;
  stats_.fetched_bytes += staging->size();
  spdlog::info("refreshed key={} url={} status={} bytes={} rule={}{}", key, url, h.status,
               staging->size(), rule.index + 1, force ? " (forced)" : "");
  a.result = RefreshOutcome::kUpdated;
  return a;
}

Result<Mirror::RefreshOutcome> Mirror::Refresh(std::string_view key_view, bool force) {
  std::string key(key_view);
  auto rules = this->rules();
  auto candidates = rules->Match(key);
  if (candidates.empty()) return Fail(EINVAL, "no rule matches " + key);
  auto rec = index_.Get(key);
  std::optional<ObjectRecord> record = rec ? *rec : std::nullopt;
  // A local edit is never lost to a refresh unless forced.
  std::optional<RefreshOutcome> local = LocalChange(key, record);
  if (local && !force) {
    spdlog::info("refresh key={}: {}; keeping it (force replaces it)", key,
                 *local == RefreshOutcome::kLocalFile ? "a local file (no landing record)"
                                                      : "changed locally since it landed");
    return *local;
  }
  // Conditional only while the bucket holds exactly what the record describes.
  bool conditional = record && !local && store_.Exists(key);
  for (const Rule* rule : candidates) {
    RefreshAttempt a;
    for (const std::string& origin : OriginOrder(*rule)) {  // failover, as fetches do
      a = RefreshFrom(key, *rule, origin, record, conditional, force);
      if (a.kind == RefreshAttempt::kFailed && a.switchable && !shutting_down_) {
        MarkDown(origin);
        continue;
      }
      if (a.kind != RefreshAttempt::kFailed) MarkUp(origin);
      break;
    }
    if (a.kind == RefreshAttempt::kFallThrough) continue;
    if (a.kind == RefreshAttempt::kNotFound) break;
    return std::move(a.result);
  }
  spdlog::info("refresh key={}: no origin has it any more; keeping the local copy", key);
  return RefreshOutcome::kGoneAtOrigin;
}

// ---- Listings of directories ------------------------------------------------

namespace {

// Collects a directory's index page (bounded: a page is not an object).
class PageSink final : public HttpSink {
 public:
  explicit PageSink(std::size_t max = 64u << 20) : kMaxPage(max) {}
  std::size_t kMaxPage;
  bool OnHead(const HttpResponseHead& h) override {
    head_ = h;
    return h.status == 200 || h.status == 203;
  }
  bool OnData(const char* data, std::size_t len) override {
    if (body_.size() + len > kMaxPage) {
      too_big_ = true;
      return false;
    }
    body_.append(data, len);
    return true;
  }
  HttpResponseHead head_;
  std::string body_;
  bool too_big_ = false;
};

}  // namespace

const ListedEntry* OriginListing::Find(std::string_view name) const {
  auto it = std::lower_bound(entries.begin(), entries.end(), name,
                             [](const ListedEntry& e, std::string_view n) { return e.name < n; });
  return it != entries.end() && it->name == name ? &*it : nullptr;
}

std::optional<std::shared_ptr<const OriginListing>> Mirror::KeptListing(const std::string& dir) {
  auto kept = index_.GetListing(dir, Now());
  if (!kept || !*kept) return std::nullopt;
  std::shared_ptr<const OriginListing> listing;
  if (!(*kept)->empty()) {
    auto entries = DecodeListing(**kept);
    if (!entries) return std::nullopt;  // not one: ask the origin
    auto l = std::make_shared<OriginListing>();
    l->entries = std::move(*entries);
    listing = std::move(l);
  }
  // Its expiry is the index's; kept in memory for a short while (the index
  // answers again after that).
  std::lock_guard lock(listings_mu_);
  if (listings_.size() >= kMaxListings) listings_.clear();
  listings_[dir] = KnownListing{listing, Now() + kListingRetryS};
  return listing;
}

std::shared_ptr<const OriginListing> Mirror::FreshListing(std::string_view dir_key) {
  {
    std::lock_guard lock(listings_mu_);
    auto it = listings_.find(std::string(dir_key));
    if (it != listings_.end() && it->second.expires > Now()) return it->second.listing;
  }
  // Only a directory under a rule that lists can have one (no index read
  // for the others, on every miss).
  std::string base = dir_key.empty() ? "" : std::string(dir_key) + "/";
  const Rule* rule = nullptr;
  auto rules = this->rules();
  for (const Rule& r : rules->rules()) {
    if (base.starts_with(r.prefix) && r.list != ListMode::kNone) {
      rule = &r;
      break;
    }
  }
  if (!rule) return nullptr;
  if (auto kept = KeptListing(std::string(dir_key))) return *kept;
  if (rule->list != ListMode::kManifest) return nullptr;
  // A manifest knows every directory without asking the origin.
  auto l = ListDir(dir_key);
  return l ? *l : nullptr;
}

void Mirror::ForgetListing(std::string_view dir_key) {
  if (auto e = index_.EraseListing(dir_key); !e) spdlog::warn("index: {}", e.error().message);
  std::lock_guard lock(listings_mu_);
  listings_.erase(std::string(dir_key));
}

Result<std::shared_ptr<const OriginListing>> Mirror::ListDir(std::string_view dir_key) {
  std::string dir(dir_key);
  {
    std::lock_guard lock(listings_mu_);
    if (auto it = listings_.find(dir); it != listings_.end() && it->second.expires > Now())
      return it->second.listing;
  }
  if (auto kept = KeptListing(dir)) return *kept;
  // Keys below the directory start with base; the first rule that covers
  // them and lists says where the listing comes from.
  std::string base = dir.empty() ? "" : dir + "/";
  auto rules = this->rules();
  const Rule* rule = nullptr;
  for (const Rule& r : rules->rules()) {
    if (base.starts_with(r.prefix) && r.list != ListMode::kNone) {
      rule = &r;
      break;
    }
  }
  if (!rule) return std::shared_ptr<const OriginListing>();
  auto remember = [&](std::shared_ptr<const OriginListing> l) {
    int64_t expires = Now() + std::max(rule->list_ttl, 0);
    // Kept in the index too ("" when the origin has none), so a remount
    // lists without a request while it is fresh.
    std::string bytes = l ? EncodeListing(l->entries) : std::string();
    if (auto p = index_.PutListing(dir, bytes, expires); !p)
      spdlog::warn("index: {}", p.error().message);
    std::lock_guard lock(listings_mu_);
    if (listings_.size() >= kMaxListings) listings_.clear();  // a cache, not a record
    listings_[dir] = KnownListing{l, expires};
    return l;
  };
  if (rule->list == ListMode::kManifest) {
    auto tree = ManifestFor(*rule);
    if (!tree) return std::unexpected(tree.error());
    auto listing = std::make_shared<OriginListing>();
    if (auto it = (*tree)->find(dir); it != (*tree)->end()) {
      for (const ListedEntry& e : it->second) {
        if (!e.is_dir && rules->Match(base + e.name).empty()) continue;
        listing->entries.push_back(e);
      }
    }  // a directory the manifest does not have is empty at the origin
    return remember(std::move(listing));
  }
  // Under list = "auto" a failure means EIO only for a rule whose origin is
  // known to serve index pages; otherwise it may simply have none, and the
  // directory shows what the bucket and lookups know (tried again soon).
  auto failed = [&](Error e) -> Result<std::shared_ptr<const OriginListing>> {
    bool lists = rule->list == ListMode::kAutoindex;
    {
      std::lock_guard lock(listings_mu_);
      lists = lists || listing_rules_.contains(rule->index);
      if (!lists) {
        listings_[dir] = KnownListing{nullptr, Now() + kListingRetryS};
        return std::shared_ptr<const OriginListing>();
      }
    }
    return std::unexpected(std::move(e));
  };
  std::string url;
  std::optional<HttpOutcome> got;
  PageSink sink;
  for (const std::string& origin : OriginOrder(*rule)) {
    url = KeyUrl(origin, rule->OriginPath(base));
    if (!url.ends_with('/')) url += '/';
    sink = PageSink();
    stats_.requests++;
    HttpRequest req = RequestFor(*rule, url);
    {
      // Not known to list: one try (a walk of bucket directories is not
      // held up by retries against an origin that is down).
      std::lock_guard lock(listings_mu_);
      if (rule->list == ListMode::kAuto && !listing_rules_.contains(rule->index)) req.retries = 0;
    }
    auto o = http_.Perform(req, sink);
    if (!o) {
      bool switchable = !o.error().body_started && (o.error().errc == FetchErrc::kConnect ||
                                                    o.error().errc == FetchErrc::kTimeout ||
                                                    o.error().errc == FetchErrc::kResolve);
      if (switchable && !shutting_down_) {
        MarkDown(origin);
        continue;
      }
      spdlog::warn("list {} url={}: {}: {}", dir, url, ToString(o.error().errc), o.error().detail);
      return failed(Error{EIO, fmt::format("listing {}: {}", url, ToString(o.error().errc))});
    }
    if (o->head.status >= 500 && !shutting_down_) {
      MarkDown(origin);
      spdlog::warn("list {} url={}: HTTP {}", dir, url, o->head.status);
      continue;
    }
    MarkUp(origin);
    got = *o;
    break;
  }
  if (!got) return failed(Error{EIO, fmt::format("listing {}: no origin answered", url)});
  long status = got->head.status;
  if (status != 200 && status != 203) {
    if (status / 100 == 4) {  // listings off (403), no such directory (404), ...
      spdlog::debug("list {} url={}: HTTP {}: no listing", dir, url, status);
      return remember(nullptr);
    }
    spdlog::warn("list {} url={}: HTTP {}", dir, url, status);
    return failed(Error{EIO, fmt::format("listing {}: HTTP {}", url, status)});
  }
  if (sink.too_big_) return Fail(EIO, fmt::format("listing {}: page over 64 MiB", url));
  auto parsed = ParseIndexPage(sink.body_, got->head.content_type);
  if (!parsed) {
    spdlog::debug("list {} url={}: not an index page", dir, url);
    return remember(nullptr);
  }
  {
    std::lock_guard lock(listings_mu_);
    listing_rules_.insert(rule->index);
  }
  auto listing = std::make_shared<OriginListing>();
  for (ListedEntry& e : *parsed) {
    std::string key = base + e.name;
    // Only names the rules would fetch, and never the state directory.
    if (dir.empty() && e.name == BucketStore::kStateDirName) continue;
    if (!e.is_dir && rules->Match(key).empty()) continue;
    listing->entries.push_back(std::move(e));
  }
  spdlog::debug("list {} url={}: {} entries", dir, url, listing->entries.size());
  return remember(std::move(listing));
}

Result<std::shared_ptr<const ManifestTree>> Mirror::ManifestFor(const Rule& rule) {
  {
    std::lock_guard lock(listings_mu_);
    if (auto it = manifests_.find(rule.manifest);
        it != manifests_.end() && it->second.expires > Now())
      return it->second.tree;
  }
  std::string text;
  const std::string& source = rule.manifest;
  if (source.find("://") != std::string::npos) {
    PageSink sink(std::size_t{4} << 30);
    stats_.requests++;
    auto o = http_.Perform(RequestFor(rule, source), sink);
    if (!o) {
      spdlog::warn("manifest {}: {}: {}", source, ToString(o.error().errc), o.error().detail);
      return Fail(EIO, fmt::format("manifest {}: {}", source, ToString(o.error().errc)));
    }
    if (o->head.status != 200 || sink.too_big_) {
      spdlog::warn("manifest {}: HTTP {}", source, o->head.status);
      return Fail(EIO, fmt::format("manifest {}: HTTP {}", source, o->head.status));
    }
    text = std::move(sink.body_);
  } else {
    UniqueFd fd(open(source.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      int e = errno;
      spdlog::warn("manifest {}: {}", source, std::strerror(e));
      return Fail(EIO, fmt::format("manifest {}: {}", source, std::strerror(e)));
    }
    char buf[1 << 16];
    for (;;) {
      ssize_t n = read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return FailErrno("manifest " + source);
      if (n == 0) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
  }
  std::size_t bad = 0;
  auto tree = ParseManifest(text, &bad);
  if (!tree) {
    spdlog::warn("manifest {}: line {} is not KEY[<tab>SIZE[<tab>MTIME]]", source, bad);
    return Fail(EIO, fmt::format("manifest {}: bad line {}", source, bad));
  }
  auto shared = std::make_shared<const ManifestTree>(std::move(*tree));
  spdlog::info("manifest {}: {} directories", source, shared->size());
  std::lock_guard lock(listings_mu_);
  manifests_[source] = KnownManifest{shared, Now() + std::max(rule.list_ttl, 0)};
  return shared;
}

}  // namespace originfs

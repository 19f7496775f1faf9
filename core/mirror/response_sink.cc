#include "core/mirror/response_sink.h"

#include <fcntl.h>

#include <cctype>

#include <spdlog/fmt/fmt.h>

namespace originfs {

bool IsSoft404(const Rule& rule, const HttpResponseHead& h) {
  return rule.soft_404 && (h.status == 200 || h.status == 203) &&
         rule.soft_404->Matches(h.content_type, h.content_length, h.etag);
}

std::string_view LastSegment(std::string_view key) {
  std::size_t slash = key.rfind('/');
  return slash == std::string_view::npos ? key : key.substr(slash + 1);
}

// The path of an absolute URL (or of a path), without query or fragment.
std::string_view UrlPath(std::string_view url) {
  if (auto scheme = url.find("://"); scheme != std::string_view::npos) {
    auto path = url.find('/', scheme + 3);
    url = path == std::string_view::npos ? std::string_view("/") : url.substr(path);
  }
  return url.substr(0, url.find_first_of("?#"));
}

namespace {

// nginx ("%xT-%xO": mtime-size), Apache ("%x-%x[-%x]": inode-size-mtime,
// size-mtime): hex fields joined by '-', quoted.
bool MtimeSizeEtag(std::string_view etag) {
  if (etag.size() < 5 || etag.front() != '"' || etag.back() != '"') return false;
  std::string_view in = etag.substr(1, etag.size() - 2);
  int dashes = 0;
  bool digit_before = false;
  for (char c : in) {
    if (c == '-') {
      if (!digit_before) return false;
      ++dashes;
      digit_before = false;
    } else if (std::isxdigit(static_cast<unsigned char>(c))) {
      digit_before = true;
    } else {
      return false;
    }
  }
  return digit_before && (dashes == 1 || dashes == 2);
}

}  // namespace

bool ValidatorsPinVersion(std::string_view etag, std::string_view last_modified,
                          int64_t fetched_at) {
  if (!etag.empty() && !etag.starts_with("W/") && !MtimeSizeEtag(etag)) return true;
  auto mtime = last_modified.empty() ? std::nullopt : ParseHttpDate(last_modified);
  return mtime && fetched_at - *mtime >= kPinnedAgeS;
}

bool SameVersion(const HttpResponseHead& first, const HttpResponseHead& again) {
  if (!first.content_length || first.content_length != again.content_length) return false;
  if (first.etag != again.etag || first.last_modified != again.last_modified) return false;
  bool strong = !first.etag.empty() && !first.etag.starts_with("W/");
  if (strong && !MtimeSizeEtag(first.etag)) return true;
  return first.mtime && first.date && *first.date - *first.mtime >= kPinnedAgeS;
}

bool ResponseSink::OnHead(const HttpResponseHead& h) {
  head_ = h;
  // A redirect from key to key/ (nginx, Apache) means a directory; one to
  // any other address ending in '/' (a site's home page for what it lacks)
  // does not.
  std::string self_slash = std::string(UrlPath(url_)) + "/";
  if ((h.redirects > 0 && !url_.ends_with('/') && UrlPath(h.effective_url) == self_slash) ||
      (h.status / 100 == 3 && UrlPath(h.location) == self_slash) ||
      (h.status / 100 == 3 && h.location == std::string(LastSegment(url_)) + "/")) {
    is_dir_ = true;
    return false;
  }
  // The origin's "not found" page, said by the rule or learned (never a
  // page named index.*: what such origins serve for "/").
  bool learned_404 = not_found_page_ && (h.status == 200 || h.status == 203) &&
                     !LastSegment(UrlPath(url_)).starts_with("index.") &&
                     not_found_page_->Matches(h.content_type, h.content_length, h.etag);
  if (IsSoft404(rule_, h) || learned_404) {  // exactly a 404
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
    error_ = Error{EIO, fmt::format("{} ({} > max_object_size {})", ToString(FetchErrc::kTooLarge),
                                    *h.content_length, max_size_)};
    return false;
  }
  if (staging_) {
    // A retry: the same version goes on over the bytes already in (readers
    // keep them); another starts over only if no reader has had a byte.
    if (first_ && SameVersion(*first_, h)) {
      staging_->Rewind();
    } else if (!flight_.Restart()) {
      error_ = Error{EIO,
                     "the object changed at the origin while it was being read (a retry "
                     "brought another version)"};
      return false;
    } else if (auto r = staging_->Reset(); !r) {
      error_ = r.error();
      return false;
    } else {
      started_over_ = true;
    }
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
    Resolution res{OriginKind::kFile,    *h.content_length, MtimeOf(h), rule_.writeback, url_,
                   InoOf(staging_->fd())};
    if (SameVersion(h, h) && (!h.etag.empty() || !h.last_modified.empty())) {
      res.etag = h.etag;
      res.last_modified = h.last_modified;
    }
    flight_.PublishHead(std::move(res));
  }
  MaybeSplit(h);
  return true;
}

void ResponseSink::MaybeSplit(const HttpResponseHead& h) {
  if (!start_split_ || split_min_ == 0 || h.status != 200 || !h.content_length ||
      *h.content_length < split_min_ || rule_.verify != Verify::kNone)
    return;
  // The second part is joined to the first only if the version is pinned
  // (an mtime-size ETag of a file just written is not enough).
  if (h.etag.empty() || h.etag.starts_with("W/") || !SameVersion(h, h)) return;
  std::string validator = h.etag;
  // The first part is the smaller one: readers follow it as it arrives and
  // then still have to read the second, which the helper finishes meanwhile.
  uint64_t at = (*h.content_length / 5 * 2) & ~((uint64_t{1} << 20) - 1);  // 1 MiB aligned
  if (at < 2 * kSplitStartAfter) return;  // too small to gain from a second connection
  split_ = std::make_shared<SplitState>(flight_, staging_->fd(), at, *h.content_length,
                                        std::move(validator), h.last_modified);
}

bool ResponseSink::OnData(const char* data, std::size_t len) {
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
    if (split_->phase == SplitState::Phase::kPending) split_->phase = SplitState::Phase::kCancelled;
    split_.reset();
    return AppendBody(data + head, len - head);
  }
  return AppendBody(data, len);
}

bool ResponseSink::AppendBody(const char* data, std::size_t len) {
  if (len == 0) return true;
  if (max_size_ && staging_->size() + len > max_size_) {
    error_ = Error{EIO, fmt::format("{} (over max_object_size {})", ToString(FetchErrc::kTooLarge),
                                    max_size_)};
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

std::string ResponseSink::VerifyBody() {
  if (rule_.verify == Verify::kNone) return "";
  std::string want;
  if (rule_.verify == Verify::kContentMd5) {
    if (head_.content_md5.empty()) return "verify=content-md5 but the response has no Content-MD5";
    want = Base64ToHex(head_.content_md5);
  } else {
    // SSE-KMS and SSE-C objects: the ETag is no digest of the body (S3's
    // documentation); nothing to check it against.
    if (rule_.type == OriginType::kS3 && head_.EtagNotMd5BySse()) return "";
    want = EtagMd5(head_.etag);
    if (want.empty() && rule_.verify == Verify::kS3Etag) return "";  // multipart: no MD5
    if (want.empty())
      return fmt::format("verify=etag-md5 but the ETag {} is not a plain MD5", head_.etag);
  }
  std::string got = md5_->HexDigest();
  if (got != want)
    return fmt::format("{}: body md5 {} != expected {}", ToString(FetchErrc::kDigestMismatch), got,
                       want);
  return "";
}

}  // namespace originfs

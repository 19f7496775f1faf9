// Soft 404s found without configuration. Some origins answer a missing path
// with 200 and a page of their own (nginx `try_files $uri $uri/ /index.html`,
// single-page applications, sites that redirect what they lack to their
// home page). Under a rule without `soft_404`, the first fetch through each
// of its origins first asks for a name that cannot exist
// (PREFIX.originfs-probe-RANDOM[SUFFIX]); a 200 there is that origin's
// not-found page, known by its type, length and ETag, and any later 200
// that matches it is a 404 (ResponseSink::OnHead). Learned again every
// kSoft404RelearnS, so a changed page is followed; a probe that fails is
// tried again after kListingRetryS. Pages named "index.*" are never taken
// for it (they are what such origins serve for "/").
#include <fcntl.h>
#include <unistd.h>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/mirror/mirror.h"
#include "core/mirror/record.h"
#include "core/mirror/response_sink.h"
#include "core/origin/url.h"

namespace originfs {
namespace {

std::string RandomName() {
  unsigned char b[8] = {};
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    (void)!read(fd, b, sizeof b);
    close(fd);
  }
  std::string out;
  for (unsigned char c : b) out += fmt::format("{:02x}", c);
  return out;
}

// The head of a GET, nothing of its body.
class HeadSink final : public HttpSink {
 public:
  bool OnHead(const HttpResponseHead& h) override {
    head = h;
    return false;
  }
  bool OnData(const char*, std::size_t) override { return false; }
  HttpResponseHead head;
};

}  // namespace

std::optional<Soft404> Mirror::NotFoundPage(const Rule& rule, const std::string& origin) {
  if (rule.soft_404 || !rule.detect_soft_404 || rule.type == OriginType::kS3) return std::nullopt;
  if (origins_.Unreachable(origin)) return std::nullopt;  // the fetch fails over at once
  auto id = std::make_pair(rule.index, origin);
  std::unique_lock lock(soft404_mu_);
  for (;;) {
    if (auto it = soft404_.find(id); it != soft404_.end() && it->second.until > Now())
      return it->second.page;
    if (!soft404_probing_.contains(id)) break;
    // Another fetch is asking: its answer is this one's (bounded by the
    // probe's own timeouts; a shutdown ends the wait).
    soft404_cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (shutting_down_) return std::nullopt;
  }
  soft404_probing_.insert(id);
  lock.unlock();

  std::string name = rule.prefix + ".originfs-probe-" + RandomName() + rule.suffix;
  std::string url = KeyUrl(origin, rule.OriginPath(name));
  HttpRequest req = RequestFor(rule, url);
  req.retries = 0;
  HeadSink sink;
  stats_.requests++;
  auto r = http_.Perform(req, sink);
  LearnedPage learned;
  if (!r && !sink.head.status) {
    spdlog::debug("soft-404 probe {}: {}; asked again later", url, r.error().detail);
    learned.until = Now() + kListingRetryS;
  } else {
    const HttpResponseHead& h = sink.head;
    learned.until = Now() + kSoft404RelearnS;
    // Only a page that tells itself apart from real files: an ETag, or a
    // body (a 200 with nothing would hide every empty file).
    if ((h.status == 200 || h.status == 203) &&
        ((h.content_length && *h.content_length > 0) || !h.etag.empty())) {
      learned.page = Soft404::Of(h.content_type, h.content_length, h.etag);
      spdlog::info(
          "rule #{} origin {}: a name that cannot exist gets 200 ({}, {} bytes): such answers "
          "are taken for 404 (detect_soft_404 = false turns this off)",
          rule.index + 1, origin, h.content_type.empty() ? "no type" : h.content_type,
          h.content_length ? fmt::format("{}", *h.content_length) : std::string("?"));
    }
  }
  lock.lock();
  soft404_probing_.erase(id);
  soft404_[id] = learned;
  soft404_cv_.notify_all();
  return learned.page;
}

}  // namespace originfs

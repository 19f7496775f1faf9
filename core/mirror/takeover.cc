// A host that dies mid-download while another reads along (shared buckets):
// the host that gets the key's lock next finishes that very download. It
// takes the dead host's staging file over (its readers read that file
// already), asks the origin for the rest of the same version with a ranged
// GET (the part is taken only as exactly that range of that version, see
// range_split.h), and lands it. Without validators that pin the version the
// readers get EIO, as an object that may have changed must not be mixed.
#include <algorithm>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/mirror/mirror.h"
#include "core/mirror/range_split.h"
#include "core/mirror/record.h"
#include "core/origin/url.h"

namespace originfs {

namespace {
int64_t NowS() { return static_cast<int64_t>(std::time(nullptr)); }
}  // namespace

Result<FetchedObject> Mirror::TakeOver(Flight& flight, const Rule& rule, const KeyProgress& p) {
  const std::string& key = flight.key();
  if (p.etag.empty() && p.last_modified.empty())
    return Fail(EIO,
                "the host downloading it stopped before landing it, and its version is not "
                "pinned: no other host can finish it");
  auto adopted = store_.AdoptStaging(p.staging, p.received);
  if (!adopted) return Fail(EIO, "taking the download over: " + adopted.error().message);
  StagingFile& staging = **adopted;
  SplitState s(flight, staging.fd(), p.received, p.size, p.etag, p.last_modified);
  {
    std::lock_guard lock(s.mu);
    s.head_done = true;  // [0, received) is the dead host's, on the shared filesystem
  }
  auto done = [&s] {
    std::lock_guard lock(s.mu);
    return s.at + s.tail_bytes == s.end;
  };
  std::string error = "no origin could be asked", url;
  for (int attempt = 0; attempt <= std::max(0, rule.retries.value_or(options_.retries)) &&
                        !done() && !shutting_down_;
       ++attempt) {
    for (const std::string& origin : origins_.Order(rule.origins)) {
      if (done() || shutting_down_) break;
      if (origins_.Unreachable(origin)) continue;
      url = KeyUrl(origin, rule.OriginPath(key));
      uint64_t from;
      {
        std::lock_guard lock(s.mu);
        from = s.at + s.tail_bytes;
      }
      RangeSink sink(s, /*helper=*/false);
      stats_.requests++;
      auto out = http_.Perform(RangeRequest(RequestFor(rule, url), s, from), sink);
      if (sink.complete()) break;
      error = !sink.error_.empty() ? sink.error_
              : out                ? std::string("the body ended early")
                    : fmt::format("{}: {}", ToString(out.error().errc), out.error().detail);
      if (sink.invalid_) {  // another version now: asking again will not mend it
        spdlog::warn("fetch key={} url={}: taking over: {}", key, url, error);
        return Fail(EIO, "the object changed at the origin while another host downloaded it");
      }
    }
  }
  if (!done()) {
    spdlog::warn("fetch key={} url={}: taking over failed: {}", key, url, error);
    return Fail(EIO, "taking the download over: " + error);
  }
  staging.SetFilled(p.size);
  staging.Seal();
  flight.SealStream();
  auto landed = Land(key, rule, staging, p.mtime);
  if (!landed) return std::unexpected(landed.error());
  if (landed->in_bucket && landed->linked) {
    ObjectRecord rec{url,    p.etag, p.last_modified,
                     p.size, NowS(), static_cast<uint32_t>(rule.index)};
    NoteLanded(rec, staging.fd());
    if (auto put = index_.Put(key, rec); !put) spdlog::warn("index: {}", put.error().message);
  }
  CountFetched(p.size - p.received, rule.index);
  spdlog::info(
      "fetched key={} url={} bytes={} rule={}: taken over from a host that stopped at {} bytes",
      key, url, p.size, rule.index + 1, p.received);
  return landed->object;
}

}  // namespace originfs

// While origins cannot be reached: they are down (OriginPool), no request
// waits on them, a probe asks each again in the background, and what was
// learnt before (expired 404s and listings) still says which names are
// absent, so that names can be made in the bucket without the origin.
#include <algorithm>
#include <chrono>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/mirror/mirror.h"
#include "core/mirror/record.h"
#include "core/mirror/response_sink.h"
#include "core/origin/url.h"

namespace originfs {

std::shared_ptr<const OriginListing> Mirror::ListingAtAnyAge(const std::string& dir) {
  {
    std::lock_guard lock(listings_mu_);
    if (auto it = listings_.find(dir); it != listings_.end() && it->second.listing)
      return it->second.listing;
  }
  auto kept = index_.GetListing(dir, 0);  // at any age
  if (!kept || !*kept || (*kept)->empty()) return nullptr;
  auto entries = DecodeListing(**kept);
  if (!entries) return nullptr;
  auto l = std::make_shared<OriginListing>();
  l->entries = std::move(*entries);
  return l;
}

bool Mirror::KnownAbsentStale(const std::string& key) {
  // The key, or a directory above it, known absent: nothing below a
  // directory the origin does not have can be at the origin.
  for (std::string k = key; !k.empty();) {
    if (auto nf = index_.IsNotFound(k, 0); nf && *nf) return true;  // a 404 at any age
    std::size_t slash = k.rfind('/');
    std::string parent = slash == std::string::npos ? "" : k.substr(0, slash);
    std::string name = slash == std::string::npos ? k : k.substr(slash + 1);
    // Index pages leave dot names out: their absence says nothing.
    if (!name.starts_with('.')) {
      auto listing = ListingAtAnyAge(parent);
      if (listing && !listing->Find(name)) return true;
    }
    k = parent;
  }
  return false;
}

std::optional<ListedEntry> Mirror::StaleListed(const std::string& key) {
  std::size_t slash = key.rfind('/');
  auto listing = ListingAtAnyAge(slash == std::string::npos ? "" : key.substr(0, slash));
  const ListedEntry* e =
      listing ? listing->Find(slash == std::string::npos ? std::string_view(key)
                                                         : std::string_view(key).substr(slash + 1))
              : nullptr;
  if (!e) return std::nullopt;
  return *e;
}

void Mirror::ProbeLoop() {
  std::unique_lock lock(probe_mu_);
  for (;;) {
    probe_cv_.wait_for(lock, std::chrono::milliseconds(options_.probe_interval_ms),
                       [this] { return shutting_down_.load(); });
    if (shutting_down_) return;
    auto down = origins_.UnreachableOrigins();
    if (down.empty()) continue;
    lock.unlock();
    auto rules = this->rules();
    for (const std::string& origin : down) {
      const Rule* owner = nullptr;
      for (const Rule& r : rules->rules()) {
        if (!r.retired &&
            std::find(r.origins.begin(), r.origins.end(), origin) != r.origins.end()) {
          owner = &r;
          break;
        }
      }
      if (!owner) {  // no rule sends anything there any more
        origins_.MarkUp(origin);
        continue;
      }
      // Any HTTP answer (a 403 or 404 of the base URL included) says it is back.
      HttpRequest req = RequestFor(*owner, KeyUrl(origin, ""));
      req.head = true;
      req.retries = 0;
      req.follow_redirects = false;
      req.connect_timeout_ms = std::min<long>(req.connect_timeout_ms.value_or(5000), 5000);
      req.low_speed_time_s = 5;
      HeadOnlySink sink;
      auto r = http_.Perform(req, sink);
      if (shutting_down_) return;
      if (r) {
        origins_.MarkUp(origin);
        spdlog::info("origin {} answers again (HTTP {}): requests go to it again", origin,
                     r->head.status);
      } else {
        origins_.MarkUnreachable(origin,
                                 fmt::format("{}: {}", ToString(r.error().errc), r.error().detail));
      }
    }
    lock.lock();
  }
}

}  // namespace originfs

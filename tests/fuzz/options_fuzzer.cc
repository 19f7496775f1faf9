// libFuzzer target: the -o option list parser (ParseOptionList, ParseSize).
// It must never crash or hit undefined behaviour, and accepted values must
// be usable: finite, non-negative timeouts and counts in range. How to build
// and run: tests/fuzz/CMakeLists.txt.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/config/mount_options.h"
#include "core/common/sizes.h"

namespace {

void Require(bool ok, const char* what, std::string_view input) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s (input \"%.*s\")\n", what, static_cast<int>(input.size()),
               input.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)originfs::ParseSize(text);
  originfs::MountOptions o;
  auto r = originfs::ParseOptionList(text, o);
  if (!r) {
    Require(!r.error().message.empty(), "a refusal without a message", text);
    return 0;
  }
  Require(o.negative_ttl >= 0, "negative negative_ttl", text);
  Require(std::isfinite(o.entry_timeout) && o.entry_timeout >= 0, "entry_timeout not a finite number >= 0", text);
  Require(std::isfinite(o.attr_timeout) && o.attr_timeout >= 0, "attr_timeout not a finite number >= 0", text);
  Require(o.connect_timeout_ms >= 0, "negative connect_timeout", text);
  Require(o.download_threads >= 1 && o.max_threads >= 1, "no threads", text);
  Require(o.low_speed_time >= 1, "low_speed_time below 1", text);
  Require(o.retries >= 0 && o.max_redirects >= 0, "negative retries or max_redirects", text);
  Require(std::isfinite(o.metrics_interval) && o.metrics_interval > 0, "metrics_interval not positive", text);
  if (o.umask) Require(*o.umask <= 0777, "umask out of range", text);
  for (const auto& f : o.fuse_options) Require(!f.empty() && f.find(',') == std::string::npos, "bad FUSE option", text);
  return 0;
}

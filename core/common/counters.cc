#include "core/common/counters.h"

#include <spdlog/fmt/fmt.h>

namespace originfs {

std::string FormatPrometheus(const std::vector<Counter>& counters) {
  std::string out;
  for (const auto& c : counters) {
    std::string metric = "originfs_" + c.name + (c.gauge ? "" : "_total");
    if (c.name == "uptime") metric = "originfs_uptime_seconds";
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", metric, c.help, metric,
                       c.gauge ? "gauge" : "counter", metric, c.value);
  }
  return out;
}

}  // namespace originfs

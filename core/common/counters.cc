#include "core/common/counters.h"

#include <spdlog/fmt/fmt.h>

namespace originfs {

std::string FormatPrometheus(const std::vector<Counter>& counters) {
  std::string out, last;
  for (const auto& c : counters) {
    std::string metric = "originfs_" + c.name + (c.gauge ? "" : "_total");
    if (c.name == "uptime") metric = "originfs_uptime_seconds";
    if (metric != last)
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", metric, c.help, metric,
                         c.gauge ? "gauge" : "counter");
    last = metric;
    out += c.labels.empty() ? fmt::format("{} {}\n", metric, c.value)
                            : fmt::format("{}{{{}}} {}\n", metric, c.labels, c.value);
  }
  return out;
}

std::string PrometheusLabel(std::string_view value) {
  std::string out = "\"";
  for (char ch : value) {
    if (ch == '\\' || ch == '"') out += '\\';
    if (ch == '\n') {
      out += "\\n";
      continue;
    }
    out += ch;
  }
  return out + "\"";
}

}  // namespace originfs

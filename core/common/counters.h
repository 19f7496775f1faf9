// Counters shown as user.originfs.* extended attributes on the mount root,
// by `originfs stats`, and in the Prometheus metrics file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace originfs {

struct Counter {
  std::string name;  // e.g. "fetched_bytes"; xattr user.originfs.<name>, metric originfs_<name>
  std::string help;
  uint64_t value = 0;
  bool gauge = false;  // a level (inflight, uptime) rather than a running total
  // Prometheus labels (`rule="1",prefix="img/"`); labelled counters are in the
  // metrics file only, one line each under their name's HELP and TYPE.
  std::string labels;
};

// A label value as the exposition format quotes it (\, " and newline escaped).
std::string PrometheusLabel(std::string_view value);

// Prometheus text exposition format (for node_exporter's textfile collector).
std::string FormatPrometheus(const std::vector<Counter>& counters);

}  // namespace originfs

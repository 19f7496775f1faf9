#include "core/config/mount_options.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include <spdlog/fmt/fmt.h>

#include "core/common/sizes.h"

namespace originfs {
namespace {

Result<long> ParseInt(std::string_view name, std::string_view v, long min, long max) {
  long out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || out < min || out > max) {
    return Fail(EINVAL,
                fmt::format("option {}={}: expected an integer in [{}, {}]", name, v, min, max));
  }
  return out;
}

Result<double> ParseSeconds(std::string_view name, std::string_view v) {
  std::string s(v);
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(d) || d < 0 || d > 1e7) {
    return Fail(EINVAL, fmt::format("option {}={}: expected a number of seconds", name, v));
  }
  return d;
}

Result<bool> ParseBool(std::string_view name, std::string_view v) {
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  return Fail(EINVAL, fmt::format("option {}={}: expected true or false", name, v));
}

}  // namespace

bool IsMountOnlyWord(std::string_view o) {
  static constexpr std::string_view kWords[] = {"defaults", "_netdev", "nofail", "noauto",
                                                "auto",     "user",    "users",  "nouser",
                                                "owner",    "group",   "bg",     "fg"};
  for (auto w : kWords) {
    if (o == w) return true;
  }
  return o.starts_with("x-systemd.") || o.starts_with("x-") || o.starts_with("comment=");
}

Result<void> ParseOptionList(std::string_view list, MountOptions& opts) {
  std::size_t start = 0;
  while (start <= list.size()) {
    std::size_t comma = list.find(',', start);
    std::string_view opt = list.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    start = comma == std::string_view::npos ? list.size() + 1 : comma + 1;
    if (opt.empty()) continue;
    std::size_t eq = opt.find('=');
    std::string_view name = opt.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : opt.substr(eq + 1);
    bool has_value = eq != std::string_view::npos;
    auto need_value = [&]() -> Result<void> {
      if (!has_value || value.empty())
        return Fail(EINVAL, fmt::format("option {} needs a value", name));
      return {};
    };
    Result<void> ok;
    if (name == "rules") {
      if (!(ok = need_value())) return ok;
      opts.rules_file = value;
    } else if (name == "origin") {
      if (!(ok = need_value())) return ok;
      opts.origin = value;
    } else if (name == "state_dir") {
      if (!(ok = need_value())) return ok;
      opts.state_dir = value;
    } else if (name == "log_level") {
      if (!(ok = need_value())) return ok;
      static constexpr std::string_view kLevels[] = {"trace",   "debug", "info",     "warn",
                                                     "warning", "error", "critical", "off"};
      bool valid = false;
      for (auto l : kLevels) valid |= value == l;
      if (!valid)
        return Fail(
            EINVAL,
            fmt::format("option log_level={}: use trace, debug, info, warn, error, critical or off",
                        value));
      opts.log_level = value == "warning" ? "warn" : std::string(value);
    } else if (name == "log_file") {
      if (!(ok = need_value())) return ok;
      opts.log_file = value;
    } else if (name == "negative_ttl") {
      auto v = ParseInt(name, value, 0, 86400 * 365);
      if (!v) return std::unexpected(v.error());
      opts.negative_ttl = static_cast<int>(*v);
    } else if (name == "entry_timeout" || name == "attr_timeout") {
      auto v = ParseSeconds(name, value);
      if (!v) return std::unexpected(v.error());
      (name == "entry_timeout" ? opts.entry_timeout : opts.attr_timeout) = *v;
    } else if (name == "max_object_size") {
      auto v = ParseSize(value);
      if (!v) return Fail(EINVAL, fmt::format("option max_object_size: {}", v.error().message));
      opts.max_object_size = *v;
    } else if (name == "parallel_min") {
      auto v = ParseSize(value);
      if (!v) return Fail(EINVAL, fmt::format("option parallel_min: {}", v.error().message));
      opts.parallel_min = *v;
    } else if (name == "download_threads") {
      auto v = ParseInt(name, value, 1, 1024);
      if (!v) return std::unexpected(v.error());
      opts.download_threads = static_cast<int>(*v);
    } else if (name == "idle_threads") {
      auto v = ParseInt(name, value, 1, 1024);
      if (!v) return std::unexpected(v.error());
      opts.idle_threads = static_cast<int>(*v);
    } else if (name == "max_threads") {
      auto v = ParseInt(name, value, 1, 1024);
      if (!v) return std::unexpected(v.error());
      opts.max_threads = static_cast<int>(*v);
    } else if (name == "connect_timeout") {
      auto v = ParseSeconds(name, value);
      if (!v) return std::unexpected(v.error());
      opts.connect_timeout_ms = static_cast<long>(*v * 1000);
    } else if (name == "low_speed_time") {
      auto v = ParseInt(name, value, 1, 86400);
      if (!v) return std::unexpected(v.error());
      opts.low_speed_time = *v;
    } else if (name == "retries") {
      auto v = ParseInt(name, value, 0, 20);
      if (!v) return std::unexpected(v.error());
      opts.retries = static_cast<int>(*v);
    } else if (name == "max_redirects") {
      auto v = ParseInt(name, value, 0, 50);
      if (!v) return std::unexpected(v.error());
      opts.max_redirects = *v;
    } else if (name == "fsync") {
      auto v = has_value ? ParseBool(name, value) : Result<bool>(true);
      if (!v) return std::unexpected(v.error());
      opts.fsync = *v;
    } else if (name == "zero_open") {
      auto v = has_value ? ParseBool(name, value) : Result<bool>(true);
      if (!v) return std::unexpected(v.error());
      opts.zero_open = *v;
    } else if (name == "shared") {
      std::string v = has_value ? std::string(value) : "on";
      if (v == "1" || v == "true" || v == "yes") v = "on";
      if (v == "0" || v == "false" || v == "no") v = "off";
      if (v != "auto" && v != "on" && v != "off")
        return Fail(EINVAL, "option shared: use auto, on or off");
      opts.shared = v;
    } else if (name == "metrics_file") {
      if (!(ok = need_value())) return ok;
      opts.metrics_file = value;
    } else if (name == "metrics_interval") {
      auto v = ParseSeconds(name, value);
      if (!v) return std::unexpected(v.error());
      if (*v < 0.1) return Fail(EINVAL, "option metrics_interval: at least 0.1 seconds");
      opts.metrics_interval = *v;
    } else if (name == "uid" || name == "gid") {
      auto v = ParseInt(name, value, 0, 0x7fffffff);
      if (!v) return std::unexpected(v.error());
      if (name == "uid")
        opts.uid = static_cast<uid_t>(*v);
      else
        opts.gid = static_cast<gid_t>(*v);
    } else if (name == "umask") {
      long m = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), m, 8);
      if (value.empty() || ec != std::errc() || p != value.data() + value.size() || m < 0 ||
          m > 0777)
        return Fail(EINVAL,
                    fmt::format("option umask={}: expected an octal mode such as 022", value));
      opts.umask = static_cast<mode_t>(m);
    } else if (IsMountOnlyWord(opt)) {
      // meaningful to mount(8) / systemd only
    } else {
      opts.fuse_options.emplace_back(opt);
    }
  }
  return {};
}

}  // namespace originfs

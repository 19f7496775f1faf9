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

namespace {

// One -o NAME[=VALUE].
struct Opt {
  std::string_view name, value;
  bool has_value = false;
  Result<std::string> Required() const {
    if (!has_value || value.empty())
      return Fail(EINVAL, fmt::format("option {} needs a value", name));
    return std::string(value);
  }
  Result<long> Int(long min, long max) const { return ParseInt(name, value, min, max); }
  Result<bool> Flag() const { return has_value ? ParseBool(name, value) : Result<bool>(true); }
  Result<uint64_t> Size() const {
    auto v = ParseSize(value);
    if (!v) return Fail(EINVAL, fmt::format("option {}: {}", name, v.error().message));
    return *v;
  }
};

// One entry per originfs option: how its value is read into the options.
struct OptionKey {
  std::string_view name;
  Result<void> (*read)(MountOptions& o, const Opt& opt);
};

#define ORIGINFS_OPTION(NAME, ...)                                                       \
  {                                                                                      \
    NAME, [](MountOptions& o, const Opt& opt) -> Result<void> { __VA_ARGS__ return {}; } \
  }

const OptionKey kOptionKeys[] = {
    ORIGINFS_OPTION("rules", ORIGINFS_ASSIGN_OR_RETURN(o.rules_file, opt.Required());),
    ORIGINFS_OPTION("origin", ORIGINFS_ASSIGN_OR_RETURN(o.origin, opt.Required());),
    ORIGINFS_OPTION("state_dir", ORIGINFS_ASSIGN_OR_RETURN(o.state_dir, opt.Required());),
    ORIGINFS_OPTION(
        "log_level",
        {
          ORIGINFS_ASSIGN_OR_RETURN(std::string v, opt.Required());
          static constexpr std::string_view kLevels[] = {"trace",   "debug", "info",     "warn",
                                                         "warning", "error", "critical", "off"};
          bool valid = false;
          for (auto l : kLevels) valid |= v == l;
          if (!valid)
            return Fail(EINVAL, fmt::format("option log_level={}: use trace, debug, info, warn, "
                                            "error, critical or off",
                                            v));
          o.log_level = v == "warning" ? "warn" : v;
        }),
    ORIGINFS_OPTION("log_file", ORIGINFS_ASSIGN_OR_RETURN(o.log_file, opt.Required());),
    ORIGINFS_OPTION("negative_ttl",
                    ORIGINFS_ASSIGN_OR_RETURN(o.negative_ttl, opt.Int(0, 86400 * 365));),
    ORIGINFS_OPTION("failure_backoff",
                    ORIGINFS_ASSIGN_OR_RETURN(o.failure_backoff, opt.Int(0, 3600));),
    ORIGINFS_OPTION("entry_timeout",
                    ORIGINFS_ASSIGN_OR_RETURN(o.entry_timeout, ParseSeconds(opt.name, opt.value));
                    o.entry_timeout_set = true;),
    ORIGINFS_OPTION("attr_timeout",
                    ORIGINFS_ASSIGN_OR_RETURN(o.attr_timeout, ParseSeconds(opt.name, opt.value));
                    o.attr_timeout_set = true;),
    ORIGINFS_OPTION("max_object_size", ORIGINFS_ASSIGN_OR_RETURN(o.max_object_size, opt.Size());),
    ORIGINFS_OPTION("parallel_min", ORIGINFS_ASSIGN_OR_RETURN(o.parallel_min, opt.Size());),
    ORIGINFS_OPTION("download_threads",
                    ORIGINFS_ASSIGN_OR_RETURN(o.download_threads, opt.Int(1, 1024));),
    ORIGINFS_OPTION("idle_threads", ORIGINFS_ASSIGN_OR_RETURN(o.idle_threads, opt.Int(1, 1024));),
    ORIGINFS_OPTION("max_threads", ORIGINFS_ASSIGN_OR_RETURN(o.max_threads, opt.Int(1, 1024));),
    ORIGINFS_OPTION("connect_timeout",
                    {
                      ORIGINFS_ASSIGN_OR_RETURN(double v, ParseSeconds(opt.name, opt.value));
                      o.connect_timeout_ms = static_cast<long>(v * 1000);
                    }),
    ORIGINFS_OPTION("low_speed_time",
                    ORIGINFS_ASSIGN_OR_RETURN(o.low_speed_time, opt.Int(1, 86400));),
    ORIGINFS_OPTION("retries", ORIGINFS_ASSIGN_OR_RETURN(o.retries, opt.Int(0, 20));),
    ORIGINFS_OPTION("max_redirects", ORIGINFS_ASSIGN_OR_RETURN(o.max_redirects, opt.Int(0, 50));),
    ORIGINFS_OPTION("fsync", ORIGINFS_ASSIGN_OR_RETURN(o.fsync, opt.Flag());),
    ORIGINFS_OPTION("zero_open", ORIGINFS_ASSIGN_OR_RETURN(o.zero_open, opt.Flag());),
    ORIGINFS_OPTION("passthrough", ORIGINFS_ASSIGN_OR_RETURN(o.passthrough, opt.Flag());),
    ORIGINFS_OPTION("io_uring", ORIGINFS_ASSIGN_OR_RETURN(o.io_uring, opt.Flag());),
    ORIGINFS_OPTION("shared",
                    {
                      std::string v = opt.has_value ? std::string(opt.value) : "on";
                      if (v == "1" || v == "true" || v == "yes") v = "on";
                      if (v == "0" || v == "false" || v == "no") v = "off";
                      if (v != "auto" && v != "on" && v != "off")
                        return Fail(EINVAL, "option shared: use auto, on or off");
                      o.shared = v;
                    }),
    ORIGINFS_OPTION("metrics_file", ORIGINFS_ASSIGN_OR_RETURN(o.metrics_file, opt.Required());),
    ORIGINFS_OPTION("metrics_interval",
                    {
                      ORIGINFS_ASSIGN_OR_RETURN(double v, ParseSeconds(opt.name, opt.value));
                      if (v < 0.1)
                        return Fail(EINVAL, "option metrics_interval: at least 0.1 seconds");
                      o.metrics_interval = v;
                    }),
    ORIGINFS_OPTION("uid", ORIGINFS_ASSIGN_OR_RETURN(o.uid, opt.Int(0, 0x7fffffff));),
    ORIGINFS_OPTION("gid", ORIGINFS_ASSIGN_OR_RETURN(o.gid, opt.Int(0, 0x7fffffff));),
    ORIGINFS_OPTION("umask",
                    {
                      long m = 0;
                      std::string_view value = opt.value;
                      auto [p, ec] =
                          std::from_chars(value.data(), value.data() + value.size(), m, 8);
                      if (value.empty() || ec != std::errc() || p != value.data() + value.size() ||
                          m < 0 || m > 0777)
                        return Fail(
                            EINVAL,
                            fmt::format("option umask={}: expected an octal mode such as 022",
                                        value));
                      o.umask = static_cast<mode_t>(m);
                    }),
};

#undef ORIGINFS_OPTION

}  // namespace

Result<void> ParseOptionList(std::string_view list, MountOptions& opts) {
  std::size_t start = 0;
  while (start <= list.size()) {
    std::size_t comma = list.find(',', start);
    std::string_view text = list.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    start = comma == std::string_view::npos ? list.size() + 1 : comma + 1;
    if (text.empty()) continue;
    std::size_t eq = text.find('=');
    Opt opt{text.substr(0, eq),
            eq == std::string_view::npos ? std::string_view() : text.substr(eq + 1),
            eq != std::string_view::npos};
    const OptionKey* known = nullptr;
    for (const OptionKey& k : kOptionKeys) {
      if (k.name == opt.name) known = &k;
    }
    if (known) {
      ORIGINFS_TRY(known->read(opts, opt));
    } else if (!IsMountOnlyWord(text)) {  // mount(8) / systemd words are not FUSE's
      opts.fuse_options.emplace_back(text);
    }
  }
  return {};
}

}  // namespace originfs

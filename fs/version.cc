#define FUSE_USE_VERSION 312
#include "fs/version.h"

#include <fuse_lowlevel.h>
#include <spdlog/fmt/fmt.h>
#include <spdlog/version.h>

#include "core/origin/http_client.h"
#include "fs/build_info.h"
#include "fs/daemon.h"

namespace originfs {

const char* const kVersion = ORIGINFS_VERSION;

std::string VersionText() {
  CurlVersions curl = CurlLibraryVersions();
  std::string out = fmt::format("originfs {}\nbuilt with:\n", kVersion);
  auto line = [&out](std::string_view lib, std::string_view built, std::string_view running = {}) {
    out += fmt::format("  {:<9} {}", lib, built.empty() ? "unknown" : built);
    if (!running.empty()) out += fmt::format(" (running {})", running);
    out += '\n';
  };
  line("libfuse", ORIGINFS_BUILT_FUSE3, fuse_pkgversion());
  line("libcurl", curl.built, curl.running);
  line("LMDB", ORIGINFS_BUILT_LMDB);
  line("OpenSSL", ORIGINFS_BUILT_OPENSSL);
  line("liburing", ORIGINFS_BUILT_URING);
  line("spdlog", fmt::format("{}.{}.{}", SPDLOG_VER_MAJOR, SPDLOG_VER_MINOR, SPDLOG_VER_PATCH));
  line("fmt",
       fmt::format("{}.{}.{}", FMT_VERSION / 10000, FMT_VERSION / 100 % 100, FMT_VERSION % 100));
  line("toml++", ORIGINFS_BUILT_TOMLPP);
  return out;
}

}  // namespace originfs

#!/usr/bin/env bash
# originfs --version: the project's version, then every library the binary was
# built with, each with the version pkg-config (or the library's own header)
# reports on this machine; libfuse and libcurl also say which they run with.
#   tests/package/version_test.sh ORIGINFS_BINARY SOURCE_DIR
set -euo pipefail
bin=$1 src=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
out=$("$bin" --version) || fail "originfs --version exited $?"
printf '%s\n' "$out"
project=$(sed -n 's/^project(originfs VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ -n "$project" ] || fail "no project(originfs VERSION ...) in CMakeLists.txt"
[ "$(printf '%s\n' "$out" | head -1)" = "originfs $project" ] || fail "first line is not 'originfs $project'"
[ "$("$bin" -V)" = "$out" ] || fail "-V differs from --version"

# "  LIB  VERSION[ (running R)]": the line of LIB.
line() {
  local l
  while IFS= read -r l; do
    [[ $l == "  $1 "* ]] && { printf '%s\n' "$l"; return 0; }
  done <<<"$out"
  fail "no '$1' line"
}
expect() {  # LIB EXPECTED-SUBSTRING
  local l
  l=$(line "$1")
  [[ $l == *"$2"* ]] || fail "$1: expected '$2' in '$l'"
}
pc() { pkg-config --modversion "$1" || fail "pkg-config $1"; }
expect libfuse "$(pc fuse3)"
expect libfuse "(running $(pc fuse3))"
expect libcurl "$(pc libcurl)"
# curl_version() at run time: "libcurl/X.Y.Z OpenSSL/..." of the loaded library.
running_curl=$(dpkg-query -W -f='${Version}' libcurl4 2>/dev/null | sed 's/-.*//') || true
expect libcurl "(running libcurl/${running_curl}"
lmdb_h=$(printf '#include <lmdb.h>\nMDB_VERSION_STRING\n' | cpp -P - | tail -1 | sed 's/" "//g; s/"//g')
expect LMDB "$lmdb_h"
expect OpenSSL "$(pc openssl)"
expect liburing "$(pc liburing)"
expect toml++ "$(pc tomlplusplus)"
spdlog=$(printf '#include <spdlog/version.h>\nSPDLOG_VER_MAJOR.SPDLOG_VER_MINOR.SPDLOG_VER_PATCH\n' |
         cpp -P - | tail -1 | tr -d ' ')
expect spdlog "$spdlog"
fmt=$(printf '#include <fmt/core.h>\nFMT_VERSION\n' | cpp -x c++ -P - | tail -1)
expect fmt "$((fmt / 10000)).$((fmt / 100 % 100)).$((fmt % 100))"
if printf '%s\n' "$out" | grep -q unknown; then fail "a library version is unknown"; fi
echo "OK: --version names the version and 8 libraries"

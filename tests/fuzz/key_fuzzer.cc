// libFuzzer target: EncodeKey / KeyUrl on arbitrary keys. The encoding must
// be reversible (decoding gives the key back), use only unreserved
// characters, '/' and %XX, and never produce a "." or ".." segment that a
// client or server could normalise into a parent reference. How to build and
// run: tests/fuzz/CMakeLists.txt.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/origin/url.h"

namespace {

void Require(bool ok, const char* what, std::string_view key) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s (key of %zu bytes)\n", what, key.size());
  std::abort();
}

bool Unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lowercase hex is not what EncodeKey writes
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view key(reinterpret_cast<const char*>(data), size);
  std::string enc = originfs::EncodeKey(key);

  std::string decoded;
  for (std::size_t i = 0; i < enc.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(enc[i]);
    if (c == '%') {
      Require(i + 2 < enc.size(), "truncated %XX escape", key);
      int hi = HexValue(enc[i + 1]), lo = HexValue(enc[i + 2]);
      Require(hi >= 0 && lo >= 0, "bad %XX escape", key);
      decoded += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      Require(Unreserved(c) || c == '/', "a reserved or raw byte in the encoding", key);
      decoded += static_cast<char>(c);
    }
  }
  Require(decoded == key, "decoding does not give the key back", key);

  std::size_t start = 0;
  for (;;) {
    std::size_t slash = enc.find('/', start);
    std::string_view seg = std::string_view(enc).substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    Require(seg != "." && seg != "..", "a dot segment in the encoding", key);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  // '/' is kept as the separator and nothing else becomes one.
  std::size_t slashes_in = 0, slashes_out = 0;
  for (char c : key) slashes_in += c == '/';
  for (char c : enc) slashes_out += c == '/';
  Require(slashes_in == slashes_out, "segment structure changed", key);

  Require(originfs::KeyUrl("http://o.example/base", key) == "http://o.example/base/" + enc, "KeyUrl differs", key);
  return 0;
}

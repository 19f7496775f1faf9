#include "core/origin/url.h"

namespace originfs {
namespace {

bool Unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

void AppendEscaped(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out += '%';
  out += kHex[c >> 4];
  out += kHex[c & 0xF];
}

}  // namespace

std::string EncodeKey(std::string_view key) {
  std::string out;
  out.reserve(key.size() + key.size() / 4);
  std::size_t seg_start = 0;
  while (seg_start <= key.size()) {
    std::size_t slash = key.find('/', seg_start);
    std::size_t seg_end = slash == std::string_view::npos ? key.size() : slash;
    std::string_view seg = key.substr(seg_start, seg_end - seg_start);
    bool dot_segment = seg == "." || seg == "..";
    for (unsigned char c : seg) {
      if (Unreserved(c) && !(dot_segment && c == '.')) {
        out += static_cast<char>(c);
      } else {
        AppendEscaped(out, c);
      }
    }
    if (slash == std::string_view::npos) break;
    out += '/';
    seg_start = slash + 1;
  }
  return out;
}

std::string KeyUrl(std::string_view origin, std::string_view key) {
  std::string url(origin);
  url += '/';
  url += EncodeKey(key);
  return url;
}

}  // namespace originfs

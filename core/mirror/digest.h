// MD5 of a body as it arrives, and the forms origins state one in: a
// Content-MD5 header (base64) or a plain single-part ETag. The only user of
// OpenSSL.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace originfs {

// Lowercase hex of n bytes.
std::string Hex(const unsigned char* d, std::size_t n);
// Base64 (Content-MD5) to lowercase hex; "" if malformed.
std::string Base64ToHex(std::string_view b64);
// The ETag as a plain MD5 in hex, or "" (weak, multipart "-N", not hex).
std::string EtagMd5(std::string_view etag);

class Md5 {
 public:
  Md5();
  ~Md5();
  Md5(const Md5&) = delete;
  Md5& operator=(const Md5&) = delete;
  void Update(const char* d, std::size_t n);
  std::string HexDigest();  // once, at the end

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

}  // namespace originfs

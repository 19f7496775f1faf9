// Mounts whose rules file a test writes verbatim, and helpers for checking
// what each rule option does (tests/e2e/rule_options_test.cc and
// rule_transfer_options_test.cc).
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {

using Clock = std::chrono::steady_clock;

inline long Ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// A listening port whose accept queue is full and never drained: the kernel
// drops further SYNs, so a connect() hangs until the client gives up.
class BlackholePort {
 public:
  BlackholePort() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
        listen(listen_fd_, 0) != 0)
      return;
    port_ = ntohs(a.sin_port);
    // A backlog of 0 still queues one connection; two more make sure it is full.
    for (int i = 0; i < 3; ++i) {
      int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (c < 0) continue;
      (void)connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
      fillers_.push_back(c);
      std::this_thread::sleep_for(20ms);
    }
  }
  ~BlackholePort() {
    for (int c : fillers_) close(c);
    if (listen_fd_ >= 0) close(listen_fd_);
  }
  BlackholePort(const BlackholePort&) = delete;
  BlackholePort& operator=(const BlackholePort&) = delete;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // True if a fresh connect() does not complete within wait.
  bool Hangs(std::chrono::milliseconds wait) const {
    if (port_ == 0) return false;
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port_));
    bool hangs = false;
    if (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno == EINPROGRESS) {
      pollfd p{c, POLLOUT, 0};
      hangs = poll(&p, 1, static_cast<int>(wait.count())) == 0;
    }
    close(c);
    return hangs;
  }

 private:
  int listen_fd_ = -1;
  int port_ = 0;
  std::vector<int> fillers_;
};

inline std::string Md5Raw(const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out, &n, EVP_md5(), nullptr);
  return std::string(reinterpret_cast<char*>(out), n);
}

inline std::string Md5Hex(const std::string& data) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : Md5Raw(data)) {
    out += kHex[c >> 4];
    out += kHex[c & 0xF];
  }
  return out;
}

inline std::string Base64(const std::string& in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// pread of up to n bytes at off, retrying short reads; "" and err on failure.
inline std::string PreadAll(int fd, std::size_t n, off_t off, int* err) {
  std::string out(n, '\0');
  std::size_t got = 0;
  *err = 0;
  while (got < n) {
    ssize_t r = pread(fd, out.data() + got, n - got, off + static_cast<off_t>(got));
    if (r < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      break;
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  out.resize(got);
  return out;
}

inline const char* const kLastModified = "Wed, 21 Oct 2015 07:28:00 GMT";
inline constexpr int64_t kLastModifiedEpoch = 1445412480;

class RuleOptionsTest : public MountTest {
 protected:
  // Mounts with a rules file written verbatim (mode 0600, as credentials need).
  void MountToml(const std::string& toml, std::vector<std::string> extra_opts = {}) {
    rules_file_ = root_ + "/rule-options.toml";
    ASSERT_EQ(WriteAll(rules_file_, toml, 0600), 0);
    ASSERT_EQ(chmod(rules_file_.c_str(), 0600), 0);
    DaemonOptions o;
    o.extra_opts = {"rules=" + rules_file_};
    for (auto& e : extra_opts) o.extra_opts.push_back(std::move(e));
    ASSERT_NO_FATAL_FAILURE(Mount(o));
  }

  // The key failed with EIO (never ENOENT) and nothing of it landed.
  void ExpectEio(const std::string& key) {
    auto r = ReadAll(M(key));
    EXPECT_EQ(r.err, EIO) << key << ": " << r.stage << ": " << ErrnoName(r.err);
    EXPECT_FALSE(Exists(B(key))) << key << " landed in the bucket";
    EXPECT_TRUE(StagingFiles(bucket_).empty()) << ::testing::PrintToString(StagingFiles(bucket_));
  }

  void ExpectServed(const std::string& key, const std::string& body) {
    auto r = ReadAll(M(key));
    EXPECT_EQ(r.err, 0) << key << ": " << r.stage << ": " << ErrnoName(r.err);
    EXPECT_EQ(r.data.size(), body.size()) << key;
    EXPECT_TRUE(r.data == body) << key << ": wrong bytes";
  }

  std::string CacheDir() const { return B(".originfs/cache"); }
  // Regular files in the object cache and their total size.
  std::vector<std::string> CacheFiles() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(CacheDir(), ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec)) out.push_back(it->path().string());
    }
    return out;
  }
  // The bytes of the object cache once the downloads have settled: a reader
  // gets the last bytes of an object as soon as they are in, and the object
  // enters the cache (evicting others) a moment later.
  uint64_t CacheBytes() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (Counter("inflight") != 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return FileBytes();
  }
  uint64_t FileBytes() const {
    uint64_t total = 0;
    for (const auto& f : CacheFiles()) {
      std::error_code ec;
      total += std::filesystem::file_size(f, ec);
    }
    return total;
  }

  CommandResult Originfs(std::vector<std::string> args, std::chrono::milliseconds timeout = 30s) {
    args.insert(args.begin(), ORIGINFS_BINARY);
    return RunCommand(args, timeout);
  }

  std::string rules_file_;
};

}  // namespace originfs::e2e

// Every back-source rule option and mode of the issue "Back-source rules
// beyond the cloud consoles", through real mounts against in-process origins:
// failover between origins (connection refused, 5xx, 404, cool-down),
// suffix matching, replace_prefix / strip_prefix, request headers, redirect
// limits, checksum verification, per-rule timeouts / retries / size limits,
// max_concurrent, writeback = false with its bounded object cache, mtime,
// `originfs refresh`, streaming reads, and `originfs check`.
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

#include "tests/e2e/mount_fixture.h"

namespace originfs::e2e {
namespace {

using Clock = std::chrono::steady_clock;

long Ms(Clock::duration d) {
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

std::string Md5Raw(const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out, &n, EVP_md5(), nullptr);
  return std::string(reinterpret_cast<char*>(out), n);
}

std::string Md5Hex(const std::string& data) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : Md5Raw(data)) {
    out += kHex[c >> 4];
    out += kHex[c & 0xF];
  }
  return out;
}

std::string Base64(const std::string& in) {
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

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// pread of up to n bytes at off, retrying short reads; "" and err on failure.
std::string PreadAll(int fd, std::size_t n, off_t off, int* err) {
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

const char* const kLastModified = "Wed, 21 Oct 2015 07:28:00 GMT";
constexpr int64_t kLastModifiedEpoch = 1445412480;

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

  // A counter of the mount (user.originfs.NAME on the root), -1 if unreadable.
  long Counter(const std::string& name) {
    char buf[64];
    ssize_t n = getxattr(mnt_.c_str(), ("user.originfs." + name).c_str(), buf, sizeof buf - 1);
    if (n <= 0) return -1;
    buf[n] = '\0';
    return std::strtol(buf, nullptr, 10);
  }

  CommandResult Originfs(std::vector<std::string> args, std::chrono::milliseconds timeout = 30s) {
    args.insert(args.begin(), ORIGINFS_BINARY);
    return RunCommand(args, timeout);
  }

  std::string rules_file_;
};

// ---- failover: origins = [A, B] ------------------------------------------------

TEST_F(RuleOptionsTest, FailoverWhenFirstOriginRefusesConnections) {
  ClosedPort a;
  ASSERT_GT(a.port(), 0);
  testing::TestOrigin b;
  const std::string body = PatternBytes(300 * 1024, 1);
  b.SetFile("/one.bin", body);
  b.SetFile("/two.bin", "second");
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"\"\norigins = [\"" + a.url() + "\", \"" + b.url() + "\"]\n"));

  ExpectServed("one.bin", body);
  EXPECT_TRUE(EventuallyExists(B("one.bin")));
  EXPECT_EQ(b.GetCount("/one.bin"), 1);
  ExpectServed("two.bin", "second");
  EXPECT_EQ(b.GetCount("/two.bin"), 1);
  // Where it came from is the origin that answered.
  char buf[512];
  ssize_t n = getxattr(M("one.bin").c_str(), "user.originfs.origin", buf, sizeof buf);
  ASSERT_GT(n, 0) << strerror(errno);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n)), b.url() + "/one.bin");
  // Unmount before the local origins go: their keep-alive connections would
  // hold up their destruction for seconds.
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

TEST_F(RuleOptionsTest, FailoverOn5xxAndCoolDown) {
  testing::TestOrigin a, b;
  testing::Behavior unavailable;
  unavailable.status = 503;
  unavailable.body = "down for maintenance";
  for (const char* k : {"/k1.txt", "/k2.txt"}) a.Set(k, unavailable);
  b.SetFile("/k1.txt", "k1 from B");
  b.SetFile("/k2.txt", "k2 from B");
  a.SetFile("/k3.txt", "k3 from A");
  testing::Behavior b_down = unavailable;
  b.Set("/k3.txt", b_down);
  // retries = 0: one request per origin, so the counts are exact.
  ASSERT_NO_FATAL_FAILURE(MountToml("[[rule]]\nprefix = \"\"\norigins = [\"" + a.url() + "\", \"" +
                                    b.url() + "\"]\nretries = 0\n"));

  ExpectServed("k1.txt", "k1 from B");
  EXPECT_EQ(a.GetCount("/k1.txt"), 1);
  EXPECT_EQ(b.GetCount("/k1.txt"), 1);

  // A failed a moment ago: the next key goes to B first, A is not touched.
  ExpectServed("k2.txt", "k2 from B");
  EXPECT_EQ(a.TotalCount(), 1) << "A was asked again during its cool-down: "
                               << ::testing::PrintToString(a.Log());
  EXPECT_EQ(b.GetCount("/k2.txt"), 1);

  // A is tried last, not skipped: when B fails too, A answers.
  ExpectServed("k3.txt", "k3 from A");
  EXPECT_EQ(b.GetCount("/k3.txt"), 1);
  EXPECT_EQ(a.GetCount("/k3.txt"), 1);
  // (A is probed first again once the 30 s cool-down is over; not waited for here.)
  // Unmount before the local origins go: their keep-alive connections would
  // hold up their destruction for seconds.
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

TEST_F(RuleOptionsTest, NotFoundIsFinalForTheRuleAndFallsThroughOnlyToTheNextRule) {
  testing::TestOrigin a, b, c;  // a: 404 for everything; b: the standby; c: the next rule's origin
  for (const char* k : {"/def/x.txt", "/fin/x.txt", "/ft/x.txt", "/solo/x.txt"}) {
    b.SetFile(k, std::string("B has ") + k);
    c.SetFile(k, std::string("C has ") + k);
  }
  auto pair = "origins = [\"" + a.url() + "\", \"" + b.url() + "\"]\n";
  std::string toml =
      // default fallthrough_on = [404, 410]: the next rule, never B
      "[[rule]]\nprefix = \"def/\"\n" + pair + "[[rule]]\nprefix = \"def\"\norigin = \"" + c.url() +
      "\"\n" +
      // 404 not listed: final ENOENT
      "[[rule]]\nprefix = \"fin/\"\n" + pair + "fallthrough_on = [410]\n" +
      "[[rule]]\nprefix = \"fin\"\norigin = \"" + c.url() + "\"\n" +
      // fallthrough_on = [404]: the next rule
      "[[rule]]\nprefix = \"ft/\"\n" + pair + "fallthrough_on = [404]\n" +
      "[[rule]]\nprefix = \"ft\"\norigin = \"" + c.url() + "\"\n" +
      // the only rule: ENOENT
      "[[rule]]\nprefix = \"solo/\"\n" + pair;
  ASSERT_NO_FATAL_FAILURE(MountToml(toml));

  ExpectServed("def/x.txt", "C has /def/x.txt");
  ExpectServed("ft/x.txt", "C has /ft/x.txt");
  auto fin = ReadAll(M("fin/x.txt"));
  EXPECT_EQ(fin.err, ENOENT) << fin.stage << ": " << ErrnoName(fin.err);
  auto solo = ReadAll(M("solo/x.txt"));
  EXPECT_EQ(solo.err, ENOENT) << solo.stage << ": " << ErrnoName(solo.err);

  for (const char* k : {"/def/x.txt", "/fin/x.txt", "/ft/x.txt", "/solo/x.txt"})
    EXPECT_EQ(a.GetCount(k), 1) << k;
  EXPECT_EQ(b.TotalCount(), 0) << "a 404 from A went to the standby B: "
                               << ::testing::PrintToString(b.Log());
  EXPECT_EQ(c.GetCount("/fin/x.txt"), 0) << "a final 404 fell through to the next rule";
  EXPECT_EQ(c.GetCount("/def/x.txt"), 1);
  EXPECT_EQ(c.GetCount("/ft/x.txt"), 1);
  // Unmount before the local origins go: their keep-alive connections would
  // hold up their destruction for seconds.
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

// ---- suffix -----------------------------------------------------------------------

TEST_F(RuleOptionsTest, SuffixIsASecondCondition) {
  testing::TestOrigin jpg, other;
  jpg.SetFile("/img/a.jpg", "jpeg bytes");
  jpg.SetFile("/img/a.png", "wrong origin for png");
  other.SetFile("/img/a.png", "png bytes");
  other.SetFile("/img/a.jpg", "wrong origin for jpg");
  ASSERT_NO_FATAL_FAILURE(MountToml("[[rule]]\nprefix = \"img/\"\nsuffix = \".jpg\"\norigin = \"" +
                                    jpg.url() + "\"\n\n[[rule]]\nprefix = \"img/\"\norigin = \"" +
                                    other.url() + "\"\n"));

  ExpectServed("img/a.jpg", "jpeg bytes");
  ExpectServed("img/a.png", "png bytes");
  EXPECT_EQ(jpg.Count("/img/a.png"), 0) << "the .jpg rule was asked for a .png key";
  EXPECT_EQ(other.Count("/img/a.jpg"), 0);
  // The suffix must match the whole end of the key.
  EXPECT_EQ(StatErr(M("img/a.jpgx")), ENOENT);
  EXPECT_EQ(jpg.Count("/img/a.jpgx"), 0);
  // Unmount before the local origins go: their keep-alive connections would
  // hold up their destruction for seconds.
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

TEST_F(RuleOptionsTest, DuplicatePrefixAndSuffixIsRefused) {
  std::string url = origin_.url();
  std::string dup = root_ + "/dup.toml";
  ASSERT_EQ(WriteAll(dup, "[[rule]]\nprefix = \"img/\"\nsuffix = \".jpg\"\norigin = \"" + url +
                              "\"\n\n[[rule]]\nprefix = \"img/\"\norigin = \"" + url +
                              "\"\n\n[[rule]]\nprefix = \"img/\"\nsuffix = \".jpg\"\norigin = \"" +
                              url + "\"\n"),
            0);
  auto check = Originfs({"check", dup});
  EXPECT_NE(check.exit_code, 0) << check.out;
  EXPECT_NE(check.err.find("rule #3"), std::string::npos) << check.err;
  EXPECT_NE(check.err.find("duplicate"), std::string::npos) << check.err;
  auto mount = Originfs({bucket_, mnt_, "-o", "rules=" + dup, "-f"}, 10s);
  EXPECT_FALSE(mount.timed_out) << "mounted with duplicate rules";
  EXPECT_NE(mount.exit_code, 0);
  EXPECT_NE(mount.err.find("duplicate"), std::string::npos) << mount.err;
  EXPECT_FALSE(IsMounted(mnt_));

  // Same prefix with different suffixes is fine.
  std::string ok = root_ + "/ok.toml";
  ASSERT_EQ(WriteAll(ok, "[[rule]]\nprefix = \"img/\"\nsuffix = \".jpg\"\norigin = \"" + url +
                             "\"\n\n[[rule]]\nprefix = \"img/\"\nsuffix = \".png\"\norigin = \"" +
                             url + "\"\n\n[[rule]]\nprefix = \"img/\"\norigin = \"" + url + "\"\n"),
            0);
  auto good = Originfs({"check", ok});
  EXPECT_EQ(good.exit_code, 0) << good.err;
}

// ---- replace_prefix / strip_prefix ------------------------------------------------

TEST_F(RuleOptionsTest, ReplacePrefixAndStripPrefixShapeTheOriginPath) {
  origin_.SetFile("/static/images/a/b.png", "replaced");
  origin_.SetFile("/static/images/sp ace.png", "encoded");
  origin_.SetFile("/x.css", "stripped");
  origin_.SetFile("/base/v2/y.txt", "with a base path");
  origin_.SetNginxDirectories(true);  // "a" in img/a/b.png is a directory at the origin
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(MountToml(
      "[[rule]]\nprefix = \"img/\"\nreplace_prefix = \"static/images/\"\norigin = \"" + u +
      "\"\n\n" + "[[rule]]\nprefix = \"cdn/\"\nstrip_prefix = true\norigin = \"" + u + "\"\n\n" +
      "[[rule]]\nprefix = \"based/\"\nreplace_prefix = \"v2/\"\norigin = \"" + u + "/base\"\n"));

  ExpectServed("img/a/b.png", "replaced");
  ExpectServed("img/sp ace.png", "encoded");
  ExpectServed("cdn/x.css", "stripped");
  ExpectServed("based/y.txt", "with a base path");
  EXPECT_TRUE(EventuallyExists(B("img/a/b.png"))) << "stored under the key, not the origin path";
  EXPECT_TRUE(EventuallyExists(B("cdn/x.css")));

  auto targets = origin_.Targets();
  auto seen = [&](const std::string& t) {
    return std::find(targets.begin(), targets.end(), t) != targets.end();
  };
  EXPECT_TRUE(seen("/static/images/a/b.png")) << ::testing::PrintToString(targets);
  EXPECT_TRUE(seen("/static/images/sp%20ace.png")) << ::testing::PrintToString(targets);
  EXPECT_TRUE(seen("/x.css")) << ::testing::PrintToString(targets);
  EXPECT_TRUE(seen("/base/v2/y.txt")) << ::testing::PrintToString(targets);
  for (const auto& t : targets) {
    EXPECT_FALSE(t.starts_with("/img/") || t.starts_with("/cdn/") || t.starts_with("/based/"))
        << "the unreplaced key reached the origin: " << t;
  }

  // A miss (and its directory probe) uses the replaced path as well.
  origin_.ResetCounts();
  EXPECT_EQ(StatErr(M("img/missing.png")), ENOENT);
  for (const auto& line : origin_.Log())
    EXPECT_TRUE(line.find(" /static/images/missing.png") != std::string::npos) << line;
  EXPECT_GE(origin_.GetCount("/static/images/missing.png"), 1);
}

// ---- headers --------------------------------------------------------------------------

TEST_F(RuleOptionsTest, HeadersReachTheOrigin) {
  origin_.SetFile("/a.txt", "with headers");
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"\"\norigin = \"" + origin_.url() +
                "\"\nheaders = { Host = \"old.example.com\", X-Token = \"tok-123\" }\n"));

  ExpectServed("a.txt", "with headers");
  EXPECT_EQ(origin_.LastHeader("/a.txt", "Host"), "old.example.com");
  EXPECT_EQ(origin_.LastHeader("/a.txt", "X-Token"), "tok-123");
  // The directory probe after a 404 carries them too.
  EXPECT_EQ(StatErr(M("missing.txt")), ENOENT);
  EXPECT_EQ(origin_.LastHeader("/missing.txt", "X-Token"), "tok-123");
  EXPECT_EQ(origin_.LastHeader("/missing.txt/", "X-Token"), "tok-123");
  EXPECT_EQ(origin_.LastHeader("/missing.txt/", "Host"), "old.example.com");

  // Made readable by others, the file is refused on reload; the old rules stay.
  ASSERT_EQ(chmod(rules_file_.c_str(), 0644), 0);
  auto reload = Originfs({"reload", mnt_});
  EXPECT_NE(reload.exit_code, 0) << "reload accepted a world-readable credentials file: "
                                 << reload.out;
  origin_.SetFile("/b.txt", "still mounted");
  ExpectServed("b.txt", "still mounted");
  EXPECT_EQ(origin_.LastHeader("/b.txt", "X-Token"), "tok-123");
}

TEST_F(RuleOptionsTest, HeadersInAWorldReadableRulesFileAreRefused) {
  std::string rules = root_ + "/headers.toml";
  ASSERT_EQ(
      WriteAll(rules, "[[rule]]\nprefix = \"\"\norigin = \"" + origin_.url() +
                          "\"\nheaders = { Host = \"old.example.com\", X-Token = \"tok-123\" }\n"),
      0);
  ASSERT_EQ(chmod(rules.c_str(), 0644), 0);
  auto r = Originfs({bucket_, mnt_, "-o", "rules=" + rules, "-f"}, 10s);
  EXPECT_FALSE(r.timed_out) << "mounted with a world-readable credentials file";
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("chmod 600"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("tok-123"), std::string::npos) << r.err;
  EXPECT_FALSE(IsMounted(mnt_));
  EXPECT_NE(Originfs({"check", rules}).exit_code, 0);
  ASSERT_EQ(chmod(rules.c_str(), 0600), 0);
  auto ok = Originfs({"check", rules});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out.find("tok-123"), std::string::npos) << ok.out;
  EXPECT_EQ(origin_.TotalCount(), 0);
}

// ---- redirects ----------------------------------------------------------------------------

TEST_F(RuleOptionsTest, FollowRedirectsFalseAndMaxRedirects) {
  std::string u = origin_.url();
  origin_.SetFile("/target.txt", "the target");
  auto redirect = [&](const std::string& from, const std::string& to) {
    testing::Behavior b;
    b.status = 302;
    b.redirect_to = u + to;
    origin_.Set(from, b);
  };
  redirect("/nofollow/r.txt", "/target.txt");
  redirect("/one/hop1.txt", "/target.txt");
  redirect("/one/hop2.txt", "/one/mid.txt");
  redirect("/one/mid.txt", "/target.txt");
  redirect("/two/hop2.txt", "/one/mid.txt");
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"nofollow/\"\nfollow_redirects = false\norigin = \"" + u +
                "\"\n\n[[rule]]\nprefix = \"one/\"\nmax_redirects = 1\norigin = \"" + u +
                "\"\n\n[[rule]]\nprefix = \"two/\"\nmax_redirects = 2\norigin = \"" + u + "\"\n"));

  ExpectEio("nofollow/r.txt");
  EXPECT_EQ(origin_.GetCount("/target.txt"), 0)
      << "a redirect was followed with follow_redirects = false";
  ExpectServed("one/hop1.txt", "the target");
  EXPECT_TRUE(EventuallyExists(B("one/hop1.txt")));
  ExpectEio("one/hop2.txt");
  EXPECT_EQ(origin_.GetCount("/target.txt"), 1)
      << "a second hop was followed with max_redirects = 1";
  ExpectServed("two/hop2.txt", "the target");
}

// ---- verify ----------------------------------------------------------------------------------

TEST_F(RuleOptionsTest, VerifyContentMd5AndEtagMd5) {
  const std::string body = PatternBytes(1024 * 1024, 2);
  const std::string other = PatternBytes(1024 * 1024, 3);
  auto with_headers = [&](std::map<std::string, std::string> h) {
    testing::Behavior b;
    b.body = body;
    b.headers = std::move(h);
    return b;
  };
  origin_.Set("/cmd5/good.bin", with_headers({{"Content-MD5", Base64(Md5Raw(body))}}));
  origin_.Set("/cmd5/bad.bin", with_headers({{"Content-MD5", Base64(Md5Raw(other))}}));
  origin_.Set("/cmd5/none.bin", with_headers({}));
  origin_.Set("/etag/good.bin", with_headers({{"ETag", "\"" + Md5Hex(body) + "\""}}));
  origin_.Set("/etag/bad.bin", with_headers({{"ETag", "\"" + Md5Hex(other) + "\""}}));
  origin_.Set("/etag/multi.bin", with_headers({{"ETag", "\"" + Md5Hex(body) + "-2\""}}));
  origin_.Set("/etag/abc.bin", with_headers({{"ETag", "\"abc-2\""}}));
  origin_.Set("/etag/none.bin", with_headers({}));
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(MountToml(
      "[[rule]]\nprefix = \"cmd5/\"\nverify = \"content-md5\"\norigin = \"" + u +
      "\"\n\n[[rule]]\nprefix = \"etag/\"\nverify = \"etag-md5\"\norigin = \"" + u + "\"\n"));

  for (const char* k : {"cmd5/good.bin", "etag/good.bin"}) {
    SCOPED_TRACE(k);
    ExpectServed(k, body);
    EXPECT_TRUE(EventuallyExists(B(k)));
    EXPECT_TRUE(Slurp(B(k)) == body);
  }
  for (const char* k : {"cmd5/bad.bin", "cmd5/none.bin", "etag/bad.bin", "etag/multi.bin",
                        "etag/abc.bin", "etag/none.bin"}) {
    SCOPED_TRACE(k);
    ExpectEio(k);
  }
}

// ---- timeouts, retries, sizes -----------------------------------------------------------------

TEST_F(RuleOptionsTest, ConnectTimeoutPerRule) {
  BlackholePort hole;
  if (!hole.Hangs(300ms)) GTEST_SKIP() << "cannot make a connect() hang on this host";
  // The mount-wide connect timeout is long; the rule's is short.
  ASSERT_NO_FATAL_FAILURE(MountToml("[[rule]]\nprefix = \"\"\norigin = \"" + hole.url() +
                                        "\"\nconnect_timeout = 0.5\nretries = 0\n",
                                    {"connect_timeout=60"}));
  auto start = Clock::now();
  auto r = ReadAll(M("never.txt"));
  auto took = Clock::now() - start;
  EXPECT_EQ(r.err, EIO) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_LT(took, 5s) << "connect_timeout = 0.5 was not applied (" << Ms(took) << " ms)";
  EXPECT_FALSE(Exists(B("never.txt")));
}

TEST_F(RuleOptionsTest, TimeoutPerRuleCutsStalledTransfers) {
  testing::Behavior head_stall;  // nothing at all for 30 s
  head_stall.body = "late";
  head_stall.delay_ms = 30000;
  origin_.Set("/head/stall.txt", head_stall);
  testing::Behavior body_stall;  // half the body, then 30 s of silence
  body_stall.body = PatternBytes(2 * 1024 * 1024, 4);
  body_stall.stall_ms = 30000;
  origin_.Set("/body/stall.bin", body_stall);
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(MountToml(
      "[[rule]]\nprefix = \"head/\"\ntimeout = 1\nretries = 0\norigin = \"" + u +
          "\"\n\n[[rule]]\nprefix = \"body/\"\ntimeout = 1\nretries = 0\norigin = \"" + u + "\"\n",
      {"low_speed_time=120"}));
  auto timed_read = [this](std::string key) {
    auto start = Clock::now();
    auto r = ReadAll(M(key));
    return std::make_pair(r, Clock::now() - start);
  };
  auto head = std::async(std::launch::async, timed_read, "head/stall.txt");
  auto body = std::async(std::launch::async, timed_read, "body/stall.bin");
  auto [hr, htook] = head.get();
  auto [br, btook] = body.get();
  EXPECT_EQ(hr.err, EIO) << hr.stage << ": " << ErrnoName(hr.err);
  EXPECT_LT(htook, 6s) << "timeout = 1 did not end a transfer that never answered (" << Ms(htook)
                       << " ms)";
  EXPECT_EQ(br.err, EIO) << br.stage << ": " << ErrnoName(br.err);
  // curl averages the speed over a few seconds, so a stall after a burst is
  // noticed a little later than `timeout`; still far below the 30 s stall.
  EXPECT_LT(btook, 12s) << "timeout = 1 did not end a stalled body (" << Ms(btook) << " ms)";
  // retries = 0: each stalled transfer was tried once.
  EXPECT_EQ(origin_.GetCount("/head/stall.txt"), 1);
  EXPECT_EQ(origin_.GetCount("/body/stall.bin"), 1)
      << "the stalled body was downloaded again within one read";
  EXPECT_FALSE(Exists(B("head/stall.txt")));
  EXPECT_FALSE(Exists(B("body/stall.bin")));
  EXPECT_TRUE(StagingFiles(bucket_).empty());
}

TEST_F(RuleOptionsTest, RetriesPerRule) {
  auto flaky = [&](const std::string& path, const std::string& body, int fails, bool truncate) {
    testing::Behavior b;
    b.body = body;
    b.fail_first = fails;
    b.fail_by_truncation = truncate;
    origin_.Set(path, b);
  };
  const std::string body = PatternBytes(200 * 1024, 5);
  flaky("/r2/a.bin", body, 2, false);
  flaky("/r0/a.bin", body, 2, false);
  flaky("/r1t/a.bin", body, 1, true);
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"r2/\"\nretries = 2\norigin = \"" + u + "\"\n" +
                    "[[rule]]\nprefix = \"r0/\"\nretries = 0\norigin = \"" + u + "\"\n" +
                    "[[rule]]\nprefix = \"r1t/\"\nretries = 1\norigin = \"" + u + "\"\n",
                {"retries=5"}));

  ExpectServed("r2/a.bin", body);  // 500, 500, 200
  EXPECT_EQ(origin_.GetCount("/r2/a.bin"), 3);
  ExpectEio("r0/a.bin");
  EXPECT_EQ(origin_.GetCount("/r0/a.bin"), 1) << "retries = 0 still retried (mount-wide retries=5)";
  ExpectServed("r1t/a.bin", body);  // body cut off, then whole
  EXPECT_EQ(origin_.GetCount("/r1t/a.bin"), 2);
}

// retries = 0 also means no re-download when the body breaks off: one
// open()+read() of such a key is EIO after one GET, whatever the mount-wide
// retries say.
TEST_F(RuleOptionsTest, RetriesZeroDoesNotRedownloadABrokenBody) {
  const std::string body = PatternBytes(200 * 1024, 5);
  testing::Behavior b;
  b.body = body;
  b.fail_first = 1;
  b.fail_by_truncation = true;  // the first GET's body breaks off halfway
  origin_.Set("/r0t/a.bin", b);
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"r0t/\"\nretries = 0\norigin = \"" + origin_.url() + "\"\n",
                {"retries=5"}));

  ExpectEio("r0t/a.bin");
  EXPECT_EQ(origin_.GetCount("/r0t/a.bin"), 1)
      << "retries = 0, yet the broken body was downloaded again";
}

TEST_F(RuleOptionsTest, MaxObjectSizePerRule) {
  origin_.SetFile("/small/ok.bin", std::string(50, 'a'));
  origin_.SetFile("/small/big.bin", std::string(200, 'b'));
  testing::Behavior chunked;
  chunked.body = std::string(300, 'c');
  chunked.chunked = true;  // no Content-Length: refused while it arrives
  origin_.Set("/small/chunked.bin", chunked);
  origin_.SetFile("/big/ok.bin", PatternBytes(500 * 1024, 6));
  origin_.SetFile("/big/big.bin", PatternBytes(2 * 1024 * 1024, 7));
  origin_.SetFile("/any/big.bin", std::string(2048, 'd'));
  origin_.SetFile("/any/ok.bin", std::string(1000, 'e'));
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"small/\"\nmax_object_size = 100\norigin = \"" + u + "\"\n" +
                    "[[rule]]\nprefix = \"big/\"\nmax_object_size = \"1M\"\norigin = \"" + u +
                    "\"\n" + "[[rule]]\nprefix = \"any/\"\norigin = \"" + u + "\"\n",
                {"max_object_size=1K"}));

  ExpectServed("small/ok.bin", std::string(50, 'a'));
  ExpectEio("small/big.bin");
  ExpectEio("small/chunked.bin");
  ExpectServed("big/ok.bin",
               PatternBytes(500 * 1024, 6));  // over the mount-wide 1K, within the rule's 1M
  ExpectEio("big/big.bin");
  ExpectServed("any/ok.bin", std::string(1000, 'e'));  // the mount-wide limit applies
  ExpectEio("any/big.bin");
}

// ---- max_concurrent ---------------------------------------------------------------------------

TEST_F(RuleOptionsTest, MaxConcurrentBoundsRequestsPerRule) {
  constexpr int kKeys = 8;
  constexpr int kDelayMs = 400;
  // Each key in its own local directory: the kernel serialises lookups
  // within one directory, which would hide any concurrency.
  auto key = [](const std::string& dir, int i) { return dir + "/" + std::to_string(i) + "/k"; };
  for (const char* dir : {"free", "lim"}) {
    ASSERT_EQ(mkdir(B(dir).c_str(), 0755), 0);
    for (int i = 0; i < kKeys; ++i) {
      ASSERT_EQ(mkdir(B(std::string(dir) + "/" + std::to_string(i)).c_str(), 0755), 0);
      testing::Behavior b;
      b.body = std::string(dir) + " body " + std::to_string(i);
      b.delay_ms = kDelayMs;
      origin_.Set("/" + key(dir, i), b);
    }
  }
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(MountToml("[[rule]]\nprefix = \"lim/\"\nmax_concurrent = 2\norigin = \"" +
                                    u + "\"\n\n[[rule]]\nprefix = \"free/\"\norigin = \"" + u +
                                    "\"\n"));

  auto parallel_reads = [&](const std::string& dir) {
    std::vector<std::future<ReadResult>> reads;
    for (int i = 0; i < kKeys; ++i)
      reads.push_back(std::async(std::launch::async, ReadAll, M(key(dir, i))));
    for (int i = 0; i < kKeys; ++i) {
      auto r = reads[i].get();
      EXPECT_EQ(r.err, 0) << key(dir, i) << ": " << r.stage << ": " << ErrnoName(r.err);
      EXPECT_EQ(r.data, dir + " body " + std::to_string(i));
    }
  };
  // Without a limit the misses do overlap (the measurement works).
  parallel_reads("free");
  EXPECT_GT(origin_.MaxConcurrent(), 2);

  origin_.ResetCounts();
  auto start = Clock::now();
  parallel_reads("lim");
  auto took = Clock::now() - start;
  EXPECT_LE(origin_.MaxConcurrent(), 2) << "max_concurrent = 2 was exceeded";
  EXPECT_EQ(origin_.MaxConcurrent(), 2) << "the two slots were not used in parallel";
  EXPECT_EQ(origin_.TotalCount(), kKeys);
  EXPECT_GE(took, std::chrono::milliseconds(kKeys / 2 * kDelayMs - 100));
}

// ---- writeback = false ------------------------------------------------------------------------

TEST_F(RuleOptionsTest, WritebackFalseIsServedFromTheCacheAcrossRemounts) {
  const std::string body = PatternBytes(40 * 1024, 8);
  origin_.SetFile("/reports/r1.bin", body);
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"reports/\"\nwriteback = false\ncache_max_size = \"1M\"\n"
                "origin = \"" +
                origin_.url() + "\"\n"));

  ExpectServed("reports/r1.bin", body);
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(Exists(B("reports/r1.bin"))) << "writeback = false kept the file in the bucket";
  EXPECT_FALSE(Exists(B("reports")));
  auto files = CacheFiles();
  ASSERT_EQ(files.size(), 1u) << ::testing::PrintToString(files);
  EXPECT_TRUE(Slurp(files[0]) == body) << "the cached copy differs from the origin's";
  EXPECT_EQ(origin_.GetCount("/reports/r1.bin"), 1);

  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectServed("reports/r1.bin", body);
  EXPECT_EQ(origin_.GetCount("/reports/r1.bin"), 1) << "not served from the cache after a remount";
  EXPECT_FALSE(Exists(B("reports/r1.bin")));
}

TEST_F(RuleOptionsTest, WritebackFalseCacheStaysWithinItsBound) {
  constexpr std::size_t kSize = 40 * 1024;
  constexpr std::size_t kBound = 100 * 1024;  // room for two objects
  for (int i = 1; i <= 4; ++i)
    origin_.SetFile("/k" + std::to_string(i), PatternBytes(kSize, 10 + i));
  ASSERT_NO_FATAL_FAILURE(MountToml(
      "[[rule]]\nprefix = \"\"\nwriteback = false\ncache_max_size = " + std::to_string(kBound) +
      "\norigin = \"" + origin_.url() + "\"\n"));
  ExpectServed("k1", PatternBytes(kSize, 11));
  ExpectServed("k2", PatternBytes(kSize, 12));
  EXPECT_EQ(CacheBytes(), 2 * kSize);

  // Once nothing is in use any more, new objects push the old ones out.
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectServed("k3", PatternBytes(kSize, 13));
  EXPECT_LE(CacheBytes(), kBound) << ::testing::PrintToString(CacheFiles());
  ExpectServed("k4", PatternBytes(kSize, 14));
  EXPECT_LE(CacheBytes(), kBound) << ::testing::PrintToString(CacheFiles());
  EXPECT_EQ(CacheFiles().size(), 2u) << ::testing::PrintToString(CacheFiles());

  // k3 and k4 are the ones kept; k1 and k2 were evicted.
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectServed("k3", PatternBytes(kSize, 13));
  ExpectServed("k4", PatternBytes(kSize, 14));
  EXPECT_EQ(origin_.GetCount("/k3"), 1);
  EXPECT_EQ(origin_.GetCount("/k4"), 1);
  ExpectServed("k1", PatternBytes(kSize, 11));
  EXPECT_EQ(origin_.GetCount("/k1"), 2) << "k1 should have been evicted";
}

TEST_F(RuleOptionsTest, WritebackFalseCacheNeverEvictsAFileInUse) {
  constexpr std::size_t kSize = 40 * 1024;
  constexpr std::size_t kBound = 100 * 1024;
  for (int i = 1; i <= 4; ++i)
    origin_.SetFile("/k" + std::to_string(i), PatternBytes(kSize, 20 + i));
  ASSERT_NO_FATAL_FAILURE(MountToml(
      "[[rule]]\nprefix = \"\"\nwriteback = false\ncache_max_size = " + std::to_string(kBound) +
      "\norigin = \"" + origin_.url() + "\"\n"));

  // k1 is the least recently used object, and stays open.
  int fd = open(M("k1").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  int err = 0;
  EXPECT_TRUE(PreadAll(fd, kSize, 0, &err) == PatternBytes(kSize, 21)) << ErrnoName(err);
  ExpectServed("k2", PatternBytes(kSize, 22));
  ExpectServed("k3", PatternBytes(kSize, 23));

  // Make the kernel forget the inodes nobody holds (k2, k3), so that only k1
  // is still in use.
  long before = Counter("inodes");
  {
    std::ofstream drop("/proc/sys/vm/drop_caches");
    drop << "2" << std::flush;
    if (!drop) {
      close(fd);
      GTEST_SKIP() << "cannot write /proc/sys/vm/drop_caches";
    }
  }
  auto deadline = Clock::now() + 5s;
  while (Counter("inodes") > 2 && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  long after = Counter("inodes");
  if (after > 2) {
    close(fd);
    GTEST_SKIP() << "the kernel did not forget the unused inodes (" << before << " -> " << after
                 << ")";
  }

  // Over the bound: the least recently used object not in use goes, k1 stays.
  ExpectServed("k4", PatternBytes(kSize, 24));
  EXPECT_LE(CacheBytes(), kBound) << ::testing::PrintToString(CacheFiles());
  EXPECT_TRUE(PreadAll(fd, kSize, 0, &err) == PatternBytes(kSize, 21))
      << "the open file changed: " << ErrnoName(err);
  close(fd);

  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectServed("k1", PatternBytes(kSize, 21));
  EXPECT_EQ(origin_.GetCount("/k1"), 1) << "the file in use was evicted";
  ExpectServed("k2", PatternBytes(kSize, 22));
  EXPECT_EQ(origin_.GetCount("/k2"), 2)
      << "k2 (least recently used, not in use) should have been evicted";
}

// ---- mtime --------------------------------------------------------------------------------------

TEST_F(RuleOptionsTest, MtimeFromOriginOrFetchTime) {
  for (const char* k : {"/o/a.txt", "/f/a.txt"}) {
    testing::Behavior b;
    b.body = "dated";
    b.last_modified = kLastModified;
    origin_.Set(k, b);
  }
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"o/\"\norigin = \"" + u +
                "\"\n\n[[rule]]\nprefix = \"f/\"\nmtime = \"fetch\"\norigin = \"" + u + "\"\n"));
  int64_t t0 = time(nullptr);
  struct stat st {};
  ASSERT_EQ(StatErr(M("o/a.txt"), &st), 0);
  EXPECT_EQ(st.st_mtime, kLastModifiedEpoch) << "stat before the download ended";
  ASSERT_EQ(StatErr(M("f/a.txt"), &st), 0);
  EXPECT_GE(st.st_mtime, t0 - 2);
  EXPECT_LE(st.st_mtime, time(nullptr) + 2);
  ExpectServed("o/a.txt", "dated");
  ExpectServed("f/a.txt", "dated");
  ASSERT_TRUE(EventuallyExists(B("o/a.txt")));
  ASSERT_TRUE(EventuallyExists(B("f/a.txt")));
  ASSERT_EQ(StatErr(B("o/a.txt"), &st), 0);
  EXPECT_EQ(st.st_mtime, kLastModifiedEpoch);
  ASSERT_EQ(StatErr(B("f/a.txt"), &st), 0);
  EXPECT_GE(st.st_mtime, t0 - 2);
  EXPECT_LE(st.st_mtime, time(nullptr) + 2);
}

// ---- originfs refresh --------------------------------------------------------------------------

class RefreshTest : public RuleOptionsTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(RefreshTest, ConditionalGetUpdateAndGone) {
  const std::string key = GetParam();
  const std::string path = "/" + key;
  const std::string v1 = "version one\n";
  const std::string v2 = PatternBytes(3000, 9);  // another size as well
  testing::Behavior b;
  b.body = v1;
  b.headers = {{"ETag", "\"v1\""}};
  b.last_modified = kLastModified;
  b.honor_conditional = true;
  origin_.Set(path, b);
  testing::Behavior lm;  // no ETag: If-Modified-Since
  lm.body = "dated only";
  lm.last_modified = kLastModified;
  lm.honor_conditional = true;
  origin_.Set("/lm.txt", lm);
  // Long kernel caches: the refresh itself must make new opens see new bytes.
  ASSERT_NO_FATAL_FAILURE(MountToml("[[rule]]\nprefix = \"docs/\"\norigin = \"" + origin_.url() +
                                        "\"\n\n[[rule]]\nprefix = \"\"\norigin = \"" +
                                        origin_.url() + "\"\n",
                                    {"entry_timeout=60", "attr_timeout=60"}));

  ExpectServed(key, v1);
  ExpectServed("lm.txt", "dated only");
  ASSERT_TRUE(EventuallyExists(B(key)));
  ASSERT_TRUE(EventuallyExists(B("lm.txt")));

  // Unchanged: 304 to a conditional GET.
  auto r = Originfs({"refresh", mnt_, key, "lm.txt"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(key + ": unchanged"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("lm.txt: unchanged"), std::string::npos) << r.out;
  EXPECT_EQ(origin_.GetCount(path), 2);
  EXPECT_EQ(origin_.LastHeader(path, "If-None-Match"), "\"v1\"");
  EXPECT_EQ(origin_.LastHeader("/lm.txt", "If-Modified-Since"), kLastModified);
  EXPECT_EQ(Slurp(B(key)), v1);

  // Changed at the origin: updated; a reader that had it open keeps the old bytes.
  int old_fd = open(M(key).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(old_fd, 0) << strerror(errno);
  int err = 0;
  EXPECT_EQ(PreadAll(old_fd, 4096, 0, &err), v1);
  b.body = v2;
  b.headers = {{"ETag", "\"v2\""}};
  b.last_modified = "Thu, 22 Oct 2015 07:28:00 GMT";
  origin_.Set(path, b);
  r = Originfs({"refresh", mnt_, key});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(key + ": updated"), std::string::npos) << r.out;
  EXPECT_EQ(origin_.LastHeader(path, "If-None-Match"), "\"v1\"");
  EXPECT_TRUE(Slurp(B(key)) == v2) << "the bucket copy was not replaced";
  auto now = ReadAll(M(key));
  EXPECT_EQ(now.err, 0) << now.stage << ": " << ErrnoName(now.err);
  EXPECT_EQ(now.data.size(), v2.size());
  EXPECT_TRUE(now.data == v2) << "a new open after the refresh does not see the new bytes";
  struct stat st {};
  EXPECT_EQ(StatErr(M(key), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(v2.size())) << "stale size through the mount";
  EXPECT_EQ(PreadAll(old_fd, 4096, 0, &err), v1)
      << "the fd opened before the refresh changed: " << ErrnoName(err);
  close(old_fd);

  // Gone at the origin: the local copy is kept.
  origin_.Remove(path);
  r = Originfs({"refresh", mnt_, key});
  EXPECT_NE(r.out.find("kept"), std::string::npos) << r.out << r.err;
  EXPECT_TRUE(Slurp(B(key)) == v2);
  auto kept = ReadAll(M(key));
  EXPECT_EQ(kept.err, 0) << kept.stage << ": " << ErrnoName(kept.err);
  EXPECT_TRUE(kept.data == v2);
}

// A key at the root, and one in a directory that exists only because of a rule prefix.
INSTANTIATE_TEST_SUITE_P(Keys, RefreshTest, ::testing::Values("doc.txt", "docs/doc.txt"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param).find('/') == std::string::npos
                                      ? "AtRoot"
                                      : "InPrefixDirectory";
                         });

// ---- streaming
// ------------------------------------------------------------------------------------

TEST_F(RuleOptionsTest, StreamingReaderGetsFirstBytesBeforeTheStallEnds) {
  constexpr int kStallMs = 2000;
  const std::string body = PatternBytes(8 * 1024 * 1024, 30);
  testing::Behavior b;
  b.body = body;
  b.stall_ms = kStallMs;  // first half at once, then 2 s of silence, then the rest
  origin_.Set("/big.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  auto start = Clock::now();
  int fd = open(M("big.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  char first[64 * 1024];
  ssize_t n = pread(fd, first, sizeof first, 0);
  auto ttfb = Clock::now() - start;
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof first)) << strerror(errno);
  EXPECT_TRUE(std::memcmp(first, body.data(), sizeof first) == 0);
  int err = 0;
  std::string all = PreadAll(fd, body.size() + 1, 0, &err);
  auto total = Clock::now() - start;
  close(fd);
  EXPECT_EQ(err, 0) << ErrnoName(err);
  EXPECT_EQ(all.size(), body.size());
  EXPECT_TRUE(all == body);
  EXPECT_LT(ttfb, std::chrono::milliseconds(kStallMs / 2))
      << "the first bytes waited for the whole download (" << Ms(ttfb) << " of " << Ms(total)
      << " ms)";
  EXPECT_GE(total, std::chrono::milliseconds(kStallMs - 200)) << "the origin did not stall?";
  EXPECT_TRUE(EventuallyExists(B("big.bin")));
  EXPECT_TRUE(Slurp(B("big.bin")) == body);
  EXPECT_EQ(origin_.GetCount("/big.bin"), 1);
}

TEST_F(RuleOptionsTest, StreamingReaderGetsEioWhenTheOriginDropsMidBody) {
  const std::string body = PatternBytes(8 * 1024 * 1024, 31);
  testing::Behavior b;
  b.body = body;
  b.stall_ms = 1000;
  b.truncate_after = 6 * 1024 * 1024;  // then the connection drops
  origin_.Set("/broken.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  auto start = Clock::now();
  int fd = open(M("broken.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  int err = 0;
  std::string head = PreadAll(fd, 1024 * 1024, 0, &err);
  auto ttfb = Clock::now() - start;
  EXPECT_EQ(err, 0) << ErrnoName(err);
  EXPECT_TRUE(head == body.substr(0, head.size()));
  EXPECT_EQ(head.size(), 1024u * 1024) << "the first part was not readable";
  EXPECT_LT(ttfb, 800ms) << "the first part waited (" << Ms(ttfb) << " ms)";
  std::string rest = PreadAll(fd, body.size(), static_cast<off_t>(head.size()), &err);
  close(fd);
  EXPECT_EQ(err, EIO) << "after reading " << head.size() + rest.size() << " bytes";
  EXPECT_LT(head.size() + rest.size(), body.size());
  EXPECT_TRUE(rest == body.substr(head.size(), rest.size())) << "wrong bytes before the error";
  auto took = Clock::now() - start;
  // The rule's default retries = 2: three attempts of ~1 s each, for the whole read.
  EXPECT_LE(origin_.GetCount("/broken.bin"), 3) << "more downloads than 1 + retries";
  EXPECT_LT(took, 8s) << Ms(took) << " ms until EIO";
  EXPECT_FALSE(Exists(B("broken.bin"))) << "a broken download landed in the bucket";
  EXPECT_TRUE(StagingFiles(bucket_).empty()) << ::testing::PrintToString(StagingFiles(bucket_));
  EXPECT_EQ(ReadAll(M("broken.bin")).err, EIO);
  EXPECT_FALSE(Exists(B("broken.bin")));
}

// ---- originfs check
// ----------------------------------------------------------------------------------

TEST_F(RuleOptionsTest, CheckPrintsEveryKeySet) {
  std::string ca = root_ + "/ca.pem";
  ASSERT_EQ(WriteAll(ca, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), 0);
  std::string rules = root_ + "/all.toml";
  ASSERT_EQ(WriteAll(rules,
                     "[[rule]]\n"
                     "prefix = \"img/\"\n"
                     "suffix = \".jpg\"\n"
                     "origins = [\"http://a.example:8080/base\", \"https://b.example\"]\n"
                     "writeback = false\n"
                     "cache_max_size = \"2G\"\n"
                     "dirs = \"virtual\"\n"
                     "replace_prefix = \"static/images/\"\n"
                     "headers = { Host = \"old.example.com\", X-Token = \"hidden-value\" }\n"
                     "follow_redirects = false\n"
                     "max_redirects = 3\n"
                     "verify = \"etag-md5\"\n"
                     "connect_timeout = 2.5\n"
                     "timeout = 7\n"
                     "retries = 4\n"
                     "max_object_size = \"5M\"\n"
                     "max_concurrent = 3\n"
                     "ca_file = \"" +
                         ca +
                         "\"\n"
                         "insecure = true\n"
                         "mtime = \"fetch\"\n"
                         "fallthrough_on = [404, 403]\n"
                         "\n[[rule]]\n"
                         "prefix = \"cdn/\"\n"
                         "origin = \"http://c.example\"\n"
                         "strip_prefix = true\n"
                         "verify = \"content-md5\"\n"
                         "dirs = \"no-ext\"\n",
                     0600),
            0);
  ASSERT_EQ(chmod(rules.c_str(), 0600), 0);
  auto r = Originfs({"check", rules});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line, rule1, rule2;
  while (std::getline(lines, line)) {
    if (line.starts_with("rule #1")) rule1 = line;
    if (line.starts_with("rule #2")) rule2 = line;
  }
  ASSERT_FALSE(rule1.empty()) << r.out;
  ASSERT_FALSE(rule2.empty()) << r.out;
  for (const char* want : {"prefix=\"img/\"",
                           "suffix=\".jpg\"",
                           "http://a.example:8080/base",
                           "https://b.example",
                           "writeback=false",
                           "cache_max_size=",
                           "dirs=virtual",
                           "replace_prefix=\"static/images/\"",
                           "Host",
                           "X-Token",
                           "follow_redirects=false",
                           "max_redirects=3",
                           "verify=etag-md5",
                           "connect_timeout=2.5",
                           "timeout=7",
                           "retries=4",
                           "max_object_size=",
                           "max_concurrent=3",
                           "ca_file=",
                           "insecure=true",
                           "mtime=fetch",
                           "fallthrough_on=[404, 403]"}) {
    EXPECT_NE(rule1.find(want), std::string::npos) << "missing " << want << " in: " << rule1;
  }
  EXPECT_TRUE(rule1.find("max_object_size=5242880") != std::string::npos ||
              rule1.find("max_object_size=5M") != std::string::npos)
      << rule1;
  EXPECT_TRUE(rule1.find("cache_max_size=2147483648") != std::string::npos ||
              rule1.find("cache_max_size=2G") != std::string::npos)
      << rule1;
  EXPECT_EQ(r.out.find("hidden-value"), std::string::npos) << "a header value was printed";
  for (const char* want :
       {"prefix=\"cdn/\"", "origin=http://c.example", "verify=content-md5", "dirs=no-ext"})
    EXPECT_NE(rule2.find(want), std::string::npos) << "missing " << want << " in: " << rule2;
  EXPECT_TRUE(rule2.find("strip_prefix") != std::string::npos ||
              rule2.find("replace_prefix=\"\"") != std::string::npos)
      << "strip_prefix not shown: " << rule2;
}

}  // namespace
}  // namespace originfs::e2e

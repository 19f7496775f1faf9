// Connection reuse against an origin that breaks HTTP framing: bytes past a
// response's Content-Length must not be read as the next request's response.
// The origin is a bare socket server, since no HTTP library sends such bytes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/origin/http_client.h"

namespace originfs {
namespace {

using namespace std::chrono_literals;

// Pieces of one response, written one after the other with a pause between.
using Reply = std::vector<std::string>;

// HTTP/1.1 on 127.0.0.1 (OS-chosen port), keep-alive: every request on a
// connection is answered with reply(path), byte for byte as given.
class RawOrigin {
 public:
  explicit RawOrigin(std::function<Reply(const std::string& path)> reply)
      : reply_(std::move(reply)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(listen_fd_, 64) != 0)
      return;
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~RawOrigin() {
    stopping_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    {
      std::lock_guard lock(mu_);
      for (int fd : conns_) shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : workers_) t.join();
    close(listen_fd_);
  }
  RawOrigin(const RawOrigin&) = delete;
  RawOrigin& operator=(const RawOrigin&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  int Count(const std::string& path) const {
    std::lock_guard lock(mu_);
    auto it = counts_.find(path);
    return it == counts_.end() ? 0 : it->second;
  }
  int Connections() const {
    std::lock_guard lock(mu_);
    return static_cast<int>(conns_.size());
  }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard lock(mu_);
      conns_.push_back(fd);
      workers_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  void Serve(int fd) {
    std::string in;
    char buf[4096];
    for (;;) {
      std::size_t end;
      while ((end = in.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) {
          close(fd);
          return;
        }
        in.append(buf, static_cast<std::size_t>(n));
      }
      std::string request = in.substr(0, end);
      in.erase(0, end + 4);
      std::size_t sp = request.find(' ');
      std::string path = request.substr(sp + 1, request.find(' ', sp + 1) - sp - 1);
      {
        std::lock_guard lock(mu_);
        counts_[path]++;
      }
      bool first = true;
      for (const std::string& piece : reply_(path)) {
        if (!first) std::this_thread::sleep_for(100ms);
        first = false;
        if (write(fd, piece.data(), piece.size()) != static_cast<ssize_t>(piece.size())) break;
      }
    }
  }

  std::function<Reply(const std::string&)> reply_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<int> conns_;             // guarded by mu_
  std::vector<std::thread> workers_;   // guarded by mu_ (joined after the acceptor)
  std::map<std::string, int> counts_;  // guarded by mu_
};

std::string Head(std::size_t content_length) {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(content_length) +
         "\r\nConnection: keep-alive\r\n\r\n";
}

class StringSink final : public HttpSink {
 public:
  bool OnHead(const HttpResponseHead& h) override {
    status = h.status;
    return true;
  }
  bool OnData(const char* data, std::size_t len) override {
    body.append(data, len);
    return true;
  }
  long status = 0;
  std::string body;
};

HttpOptions Options() {
  HttpOptions o;
  o.connect_timeout_ms = 2000;
  o.low_speed_time_s = 5;
  o.retries = 0;  // the second request must succeed without the retry budget
  o.retry_backoff_ms = 10;
  return o;
}

// Fetches /first (a body with stray bytes after it), then /second.
void ExpectSecondRequestUnharmed(RawOrigin& origin) {
  auto client = MakeCurlHttpClient(Options());
  StringSink first;
  auto r1 = client->Perform(HttpRequest{origin.url() + "/first"}, first);
  ASSERT_TRUE(r1.has_value()) << r1.error().detail;
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.body, "hello") << "cut at Content-Length";

  StringSink second;
  auto r2 = client->Perform(HttpRequest{origin.url() + "/second"}, second);
  ASSERT_TRUE(r2.has_value()) << r2.error().detail;
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, "second body");
  EXPECT_EQ(origin.Count("/second"), 1) << "the second request must reach the origin";
}

Reply Answer(const std::string& path, bool stray_later) {
  if (path == "/first") {
    if (stray_later) return {Head(5) + "hello", "STRAY BYTES AFTER THE BODY"};
    return {Head(5) + "hello" + "STRAY BYTES AFTER THE BODY"};
  }
  return {Head(11) + "second body"};
}

// The stray bytes come with the body: they wait in the socket as the
// transfer ends, so the connection is not kept.
TEST(ConnectionReuseTest, BodyLongerThanContentLengthDoesNotPoisonTheNextRequest) {
  RawOrigin origin([](const std::string& path) { return Answer(path, false); });
  ASSERT_GT(origin.port(), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectSecondRequestUnharmed(origin));
}

// The stray bytes arrive only after the transfer ended: the next request
// meets them on the kept connection and goes again on a new one.
TEST(ConnectionReuseTest, StrayBytesArrivingLaterDoNotFailTheNextRequest) {
  RawOrigin origin([](const std::string& path) { return Answer(path, true); });
  ASSERT_GT(origin.port(), 0);
  auto client = MakeCurlHttpClient(Options());
  StringSink first;
  auto r1 = client->Perform(HttpRequest{origin.url() + "/first"}, first);
  ASSERT_TRUE(r1.has_value()) << r1.error().detail;
  EXPECT_EQ(first.body, "hello");
  std::this_thread::sleep_for(300ms);  // the stray bytes are in by now

  StringSink second;
  auto r2 = client->Perform(HttpRequest{origin.url() + "/second"}, second);
  ASSERT_TRUE(r2.has_value()) << r2.error().detail;
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, "second body");
  // Sent twice: first on the kept connection (its answer came behind the
  // stray bytes), then on a new one.
  EXPECT_GE(origin.Count("/second"), 1);
  EXPECT_LE(origin.Count("/second"), 2);
}

// A HEAD answered with a body leaves the same kind of bytes behind.
TEST(ConnectionReuseTest, BodySentForAHeadDoesNotPoisonTheNextRequest) {
  RawOrigin origin([](const std::string& path) -> Reply {
    if (path == "/first") return {Head(5) + "hello"};
    return {Head(11) + "second body"};
  });
  ASSERT_GT(origin.port(), 0);
  auto client = MakeCurlHttpClient(Options());
  StringSink head;
  HttpRequest req{origin.url() + "/first"};
  req.head = true;
  auto r1 = client->Perform(req, head);
  ASSERT_TRUE(r1.has_value()) << r1.error().detail;
  EXPECT_EQ(head.status, 200);

  StringSink second;
  auto r2 = client->Perform(HttpRequest{origin.url() + "/second"}, second);
  ASSERT_TRUE(r2.has_value()) << r2.error().detail;
  EXPECT_EQ(second.body, "second body");
  EXPECT_EQ(origin.Count("/second"), 1);
}

// Well-behaved responses keep their connection (the check costs no reuse).
TEST(ConnectionReuseTest, CleanResponsesShareOneConnection) {
  RawOrigin origin([](const std::string&) -> Reply { return {Head(11) + "second body"}; });
  ASSERT_GT(origin.port(), 0);
  auto client = MakeCurlHttpClient(Options());
  for (int i = 0; i < 5; ++i) {
    StringSink sink;
    auto r = client->Perform(HttpRequest{origin.url() + "/f" + std::to_string(i)}, sink);
    ASSERT_TRUE(r.has_value()) << r.error().detail;
    EXPECT_EQ(sink.body, "second body");
  }
  EXPECT_EQ(origin.Connections(), 1);
}

}  // namespace
}  // namespace originfs

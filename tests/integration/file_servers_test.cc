// The FTP/FTPS/SFTP server kit (tests/support/file_servers.h) against the
// curl command line, which is the same libcurl the FTP/SFTP origins use:
// listings, exact bytes, and the curl exit codes each server really produces
// for a missing file, a refused login and an untrusted certificate or host key.
#include "tests/support/file_servers.h"

#include <sys/stat.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"
#include "tests/support/web_server.h"

namespace originfs::testing {
namespace {

using namespace std::chrono_literals;

// curl exit codes (libcurl's CURLcode).
constexpr int kCouldntConnect = 7;
constexpr int kFtpCouldntRetrFile = 19;
constexpr int kPeerFailedVerification = 60;
constexpr int kLoginDenied = 67;
constexpr int kRemoteFileNotFound = 78;

constexpr std::size_t kBigSize = 400 * 1024;

class FileServersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (FindInPath("curl").empty()) GTEST_SKIP() << "curl is not installed";
    mkdir(root_.c_str(), 0755);
    mkdir((root_ + "/sub").c_str(), 0755);
    mkdir(work_.c_str(), 0755);
    WriteFile(root_ + "/hello.txt", "hello, origin\n");
    WriteFile(root_ + "/sub/big.bin", PatternBytes(kBigSize, 7));
  }

  // curl with a private HOME, so no ~/.ssh/known_hosts or ~/.netrc is read
  // or written; the output goes to out_ when fetch is set.
  ToolResult Curl(std::vector<std::string> args, bool fetch = false) {
    std::vector<std::string> argv = {"curl", "-sS", "--max-time", "120"};
    if (fetch) {
      unlink(out_.c_str());
      argv.insert(argv.end(), {"-o", out_});
    }
    argv.insert(argv.end(), args.begin(), args.end());
    return RunTool(argv, 150s, {{"HOME", tmp_.path()}});
  }

  // Starts a fetch of url on a thread, waits (bounded) until some bytes
  // arrived, runs action, and returns the fetch's result.
  template <typename Action>
  ToolResult FetchAround(std::vector<std::string> args, Action action) {
    ToolResult result;
    unlink(out_.c_str());  // a previous fetch's output must not count as progress
    std::thread fetch([&] { result = Curl(args, true); });
    for (int i = 0; i < 3000; ++i) {  // 30 s at most
      struct stat st {};
      if (stat(out_.c_str(), &st) == 0 && st.st_size > 0) break;
      std::this_thread::sleep_for(10ms);
    }
    action();
    fetch.join();
    return result;
  }

  TempDir tmp_{"originfs-file-servers"};
  std::string root_ = tmp_.Join("root");
  std::string work_ = tmp_.Join("work");
  std::string out_ = tmp_.Join("out.bin");
};

// A listing line ending in tail (the server's CRLF may reach us as LF).
bool HasEntry(const std::string& listing, const std::string& tail) {
  return listing.find(tail + "\r\n") != std::string::npos ||
         listing.find(tail + "\n") != std::string::npos;
}

#define SKIP_UNLESS_SERVING(server) \
  if (!(server).error().empty()) GTEST_SKIP() << (server).error()

TEST_F(FileServersTest, VsftpdListsWithLsLinesAndServesExactBytes) {
  VsftpdServer server(root_, work_);
  SKIP_UNLESS_SERVING(server);
  ASSERT_TRUE(server.url().starts_with("ftp://127.0.0.1:")) << server.url();

  ToolResult list = Curl({server.url()});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(HasEntry(list.out, " hello.txt")) << list.out;
  EXPECT_NE(list.out.find("\nd"), std::string::npos) << "sub as a directory line: " << list.out;
  EXPECT_TRUE(HasEntry(list.out, " sub")) << list.out;

  ToolResult get = Curl({server.url() + "sub/big.bin"}, true);
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(ReadFile(out_), ReadFile(root_ + "/sub/big.bin"));

  EXPECT_EQ(Curl({server.url() + "missing.txt"}).exit_code, kRemoteFileNotFound);
  // Anonymous only: any named login is refused with 530.
  EXPECT_EQ(Curl({"-u", "originfs:wrong", server.url() + "hello.txt"}).exit_code, kLoginDenied);
  // No MLSD: the command fails (500), so clients must parse LIST.
  EXPECT_EQ(Curl({"-X", "MLSD", server.url()}).exit_code, kFtpCouldntRetrFile);
}

TEST_F(FileServersTest, VsftpdThrottledTransferIsCutByStopAndServedAfterRestart) {
  VsftpdServer server(root_, work_, /*max_rate_bytes=*/64 * 1024);
  SKIP_UNLESS_SERVING(server);
  ToolResult cut = FetchAround({server.url() + "sub/big.bin"}, [&] { EXPECT_TRUE(server.Stop()); });
  EXPECT_NE(cut.exit_code, 0);
  RecordProperty("cut_curl_exit", cut.exit_code);  // 18 (partial file) seen
  EXPECT_LT(ReadFile(out_).value_or("").size(), kBigSize);
  EXPECT_EQ(Curl({server.url()}).exit_code, kCouldntConnect);

  ASSERT_TRUE(server.Restart()) << server.error();
  ToolResult again = Curl({server.url() + "sub/big.bin"}, true);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(ReadFile(out_), ReadFile(root_ + "/sub/big.bin"));
}

TEST_F(FileServersTest, ProftpdListsMlsdFactsAndChecksThePassword) {
  ProftpdServer server(root_, work_);
  SKIP_UNLESS_SERVING(server);
  std::vector<std::string> login = {"-u", server.user() + ":" + server.password()};
  auto with_login = [&](std::vector<std::string> args) {
    args.insert(args.begin(), login.begin(), login.end());
    return args;
  };

  ToolResult list = Curl(with_login({server.url()}));
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(HasEntry(list.out, " hello.txt")) << list.out;
  EXPECT_TRUE(HasEntry(list.out, " sub")) << list.out;

  ToolResult mlsd = Curl(with_login({"-X", "MLSD", server.url() + "sub/"}));
  ASSERT_EQ(mlsd.exit_code, 0) << mlsd.err;
  EXPECT_NE(mlsd.out.find("size=" + std::to_string(kBigSize) + ";type=file;"), std::string::npos)
      << mlsd.out;
  EXPECT_NE(mlsd.out.find("modify="), std::string::npos) << mlsd.out;
  EXPECT_TRUE(HasEntry(mlsd.out, "; big.bin")) << mlsd.out;

  ToolResult get = Curl(with_login({server.url() + "sub/big.bin"}), true);
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(ReadFile(out_), ReadFile(root_ + "/sub/big.bin"));

  EXPECT_EQ(Curl(with_login({server.url() + "missing.txt"})).exit_code, kRemoteFileNotFound);
  EXPECT_EQ(Curl({"-u", server.user() + ":wrong", server.url()}).exit_code, kLoginDenied);
  EXPECT_EQ(Curl({server.url()}).exit_code, kLoginDenied) << "no anonymous login";
}

TEST_F(FileServersTest, ProftpdWithoutMlsdStillLists) {
  ProftpdServer server(root_, work_, {.mlsd = false});
  SKIP_UNLESS_SERVING(server);
  std::string login = server.user() + ":" + server.password();
  EXPECT_EQ(Curl({"-u", login, "-X", "MLSD", server.url() + "sub/"}).exit_code,
            kFtpCouldntRetrFile);
  ToolResult list = Curl({"-u", login, server.url() + "sub/"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(HasEntry(list.out, " big.bin")) << list.out;
}

TEST_F(FileServersTest, ProftpdExplicitTlsNeedsTheTestCa) {
  ProftpdServer server(root_, work_, {.tls = true});
  SKIP_UNLESS_SERVING(server);
  ASSERT_FALSE(server.ca_file().empty());
  std::string login = server.user() + ":" + server.password();

  ToolResult get =
      Curl({"--ssl-reqd", "--cacert", server.ca_file(), "-u", login, server.url() + "sub/big.bin"},
           true);
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(ReadFile(out_), ReadFile(root_ + "/sub/big.bin"));
  ToolResult list = Curl({"--ssl-reqd", "--cacert", server.ca_file(), "-u", login, server.url()});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(HasEntry(list.out, " hello.txt")) << list.out;

  EXPECT_EQ(Curl({"--ssl-reqd", "-u", login, server.url()}).exit_code, kPeerFailedVerification);
  // TLSRequired: a login without AUTH TLS is refused (550 to USER).
  EXPECT_EQ(Curl({"-u", login, server.url()}).exit_code, kLoginDenied);
}

TEST_F(FileServersTest, ProftpdThrottledTransferSeesTheOldInodeAfterAReplace) {
  ProftpdServer server(root_, work_, {.max_rate_kib = 64});
  SKIP_UNLESS_SERVING(server);
  std::string login = server.user() + ":" + server.password();
  std::string path = root_ + "/sub/big.bin";
  std::string before = *ReadFile(path);
  std::string after = PatternBytes(kBigSize / 2, 8);

  ToolResult old = FetchAround({"-u", login, server.url() + "sub/big.bin"},
                               [&] { ReplaceFileAtomically(path, after); });
  ASSERT_EQ(old.exit_code, 0) << old.err;
  EXPECT_EQ(ReadFile(out_), before) << "a transfer under way keeps the inode it opened";
  ToolResult next = Curl({"-u", login, server.url() + "sub/big.bin"}, true);
  ASSERT_EQ(next.exit_code, 0) << next.err;
  EXPECT_EQ(ReadFile(out_), after);

  ToolResult cut =
      FetchAround({"-u", login, server.url() + "sub/big.bin"}, [&] { EXPECT_TRUE(server.Stop()); });
  EXPECT_NE(cut.exit_code, 0);
  RecordProperty("cut_curl_exit", cut.exit_code);  // 18 (partial file) seen
  ASSERT_TRUE(server.Restart()) << server.error();
  EXPECT_EQ(Curl({"-u", login, server.url() + "hello.txt"}).out, "hello, origin\n");
}

TEST_F(FileServersTest, SshdServesSftpWithKeyOrPasswordAndAPinnedHostKey) {
  SshdServer server(root_, work_);
  SKIP_UNLESS_SERVING(server);
  ASSERT_EQ(server.url(), "sftp://127.0.0.1:" + std::to_string(server.port()) + root_ + "/");
  std::string known = ReadFile(server.known_hosts()).value_or("");
  EXPECT_TRUE(known.starts_with("[127.0.0.1]:" + std::to_string(server.port()) + " ssh-ed25519 "))
      << known;
  struct stat st {};
  ASSERT_EQ(stat(server.client_key().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  std::vector<std::string> pin = {"--hostpubsha256", server.host_key_sha256()};
  std::vector<std::string> key = {"-u",       server.user() + ":",
                                  "--key",    server.client_key(),
                                  "--pubkey", server.client_public_key()};
  auto args = [](std::vector<std::string> a, const std::vector<std::string>& b,
                 const std::vector<std::string>& c) {
    a.insert(a.end(), b.begin(), b.end());
    a.insert(a.end(), c.begin(), c.end());
    return a;
  };

  ToolResult list = Curl(args({server.url()}, pin, key));
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(HasEntry(list.out, " hello.txt")) << list.out;
  EXPECT_TRUE(HasEntry(list.out, " sub")) << list.out;

  ToolResult get = Curl(args({server.url() + "sub/big.bin"}, pin, key), true);
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(ReadFile(out_), ReadFile(root_ + "/sub/big.bin"));
  EXPECT_EQ(Curl(args({server.url() + "missing.txt"}, pin, key)).exit_code, kRemoteFileNotFound);

  std::vector<std::string> md5_pin = {"--hostpubmd5", server.host_key_md5()};
  EXPECT_EQ(Curl(args({server.url() + "hello.txt"}, md5_pin, key)).out, "hello, origin\n");
  std::vector<std::string> wrong_pin = {"--hostpubsha256",
                                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
  EXPECT_EQ(Curl(args({server.url()}, wrong_pin, key)).exit_code, kPeerFailedVerification);

  if (server.password().empty()) GTEST_SKIP() << "no temporary account: key login only";
  std::vector<std::string> password = {"-u", server.user() + ":" + server.password()};
  EXPECT_EQ(Curl(args({server.url() + "hello.txt"}, pin, password)).out, "hello, origin\n");
  std::vector<std::string> wrong = {"-u", server.user() + ":wrong"};
  EXPECT_EQ(Curl(args({server.url()}, pin, wrong)).exit_code, kLoginDenied);
}

TEST_F(FileServersTest, SshdRemovesItsTemporaryAccount) {
  std::string user;
  {
    SshdServer server(root_, work_);
    SKIP_UNLESS_SERVING(server);
    if (server.password().empty()) GTEST_SKIP() << "no temporary account: key login only";
    user = server.user();
    EXPECT_NE(ReadFile("/etc/passwd")->find("\n" + user + ":"), std::string::npos);
  }
  EXPECT_EQ(ReadFile("/etc/passwd")->find("\n" + user + ":"), std::string::npos);
}

}  // namespace
}  // namespace originfs::testing

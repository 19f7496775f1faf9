// A tree that is only at the origin, served by real web servers from
// Debian, looks through the mount as the same tree does on a plain disk:
// the same names and types from find, sizes from du, tar's member list, a
// git clone that fscks, a python package that imports.
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/file_servers.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/web_server.h"

namespace originfs::e2e {
namespace {

using testing::WebServer;
using testing::WebServerKind;

class OriginListingsTest : public MountTest, public ::testing::WithParamInterface<WebServerKind> {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    ASSERT_EQ(chmod(root_.c_str(), 0755), 0);  // web servers' workers read as another user
    tree_ = root_ + "/tree";
    work_ = root_ + "/work";
    ASSERT_EQ(mkdir(tree_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(work_.c_str(), 0755), 0);
  }

  // The same shell command's output in the origin's tree and in the mount.
  std::pair<std::string, std::string> Both(const std::string& cmd) {
    auto run = [&](const std::string& dir) {
      auto r = RunCommand({"bash", "-c", "cd '" + dir + "' && " + cmd}, 60s);
      EXPECT_EQ(r.exit_code, 0) << cmd << " in " << dir << ": " << r.err;
      return r.out;
    };
    return {run(tree_), run(mnt_)};
  }

  void MakeTree() {
    std::string script =
        "set -e; cd '" + tree_ +
        "'; mkdir -p pkg/sub tree/a/b 'sp ace' empty; "
        "echo 'X = 1' > pkg/__init__.py; echo 'Y = 2' > pkg/sub/__init__.py; "
        "echo 'def f(): return 42' > pkg/sub/mod.py; echo deep > tree/a/b/c.txt; "
        "echo odd > 'sp ace/100% #1 ?.txt'; echo u > $'\\xc3\\xbcn\\xc3\\xaf.txt'; "
        "head -c 300000 /dev/urandom > blob.bin; "
        "git init -q --bare repo.git; git -C repo.git symbolic-ref HEAD refs/heads/main; "
        "git clone -q repo.git '" +
        work_ + "/w' 2>/dev/null; cd '" + work_ +
        "/w'; for i in 1 2 3; do echo $i > f$i; git add f$i; "
        "git -c user.email=t@e -c user.name=t commit -qm c$i; done; "
        "git push -q origin HEAD:main; "
        "chmod -R a+rX '" +
        tree_ + "'";
    auto r = RunCommand({"bash", "-c", script}, 60s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // find, du, tar, ls -aR, git clone + fsck and a python import see the
  // mount as they see the tree.
  void ExpectSameAsTheTree() {
    auto [want, got] = Both("find . -printf '%P %y %s\\n' | sed 's/ d [0-9]*$/ d/' | sort");
    EXPECT_EQ(got, want);
    // (Directories' own sizes are their bucket's, not the origin disk's.)
    auto du = Both(
        "du --apparent-size -a -b . | while read s p; do [ -d \"$p\" ] || "
        "echo \"$s $p\"; done | sort -k2");
    EXPECT_EQ(du.second, du.first);
    auto tar = Both("tar cf - . | tar tf - | sort");
    EXPECT_EQ(tar.second, tar.first);
    auto ls = Both("ls -aR | sort");
    EXPECT_EQ(ls.second, ls.first);
    auto md5 = Both("find . -type f -print0 | sort -z | xargs -0 -r md5sum");
    EXPECT_EQ(md5.second, md5.first);

    auto clone = RunCommand({"bash", "-c",
                             "git clone -q '" + M("repo.git") + "' '" + work_ + "/clone' && cd '" +
                                 work_ + "/clone' && git fsck --full 2>&1 && git log --format=%s"},
                            60s);
    EXPECT_EQ(clone.exit_code, 0) << clone.err << clone.out;
    EXPECT_NE(clone.out.find("c3\nc2\nc1"), std::string::npos) << clone.out;
    auto py =
        RunCommand({"python3", "-c",
                    "import sys; sys.path.insert(0, '" + mnt_ +
                        "'); import pkg, pkg.sub.mod; print(pkg.X, pkg.sub.Y, pkg.sub.mod.f())"},
                   30s);
    EXPECT_EQ(py.exit_code, 0) << py.err;
    EXPECT_EQ(py.out, "1 2 42\n");
  }

  std::string tree_, work_;
};

TEST_P(OriginListingsTest, TreeOnlyAtTheOriginLooksLikeThePlainTree) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  std::string server_work = work_ + "/server";
  ASSERT_EQ(mkdir(server_work.c_str(), 0755), 0);
  WebServer server(GetParam(), tree_, server_work);
  if (!server.error().empty()) GTEST_SKIP() << server.error();
  DaemonOptions o;
  o.rules = {RuleSpec{"", server.url()}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  ExpectSameAsTheTree();
}

INSTANTIATE_TEST_SUITE_P(Servers, OriginListingsTest,
                         ::testing::Values(WebServerKind::kNginx, WebServerKind::kNginxJson,
                                           WebServerKind::kApache, WebServerKind::kLighttpd,
                                           WebServerKind::kPython, WebServerKind::kCaddy,
                                           WebServerKind::kRcloneHttp),
                         [](const auto& info) { return testing::WebServerName(info.param); });

// WebDAV servers list collections with PROPFIND, exactly: rclone serve
// webdav with list = "webdav", and Apache's mod_dav, which serves no index
// page, under the default list = "auto" (one PROPFIND finds it out).
class WebdavListingsTest : public OriginListingsTest {
 protected:
  void Serve(WebServerKind kind, const std::string& extra) {
    ASSERT_NO_FATAL_FAILURE(MakeTree());
    std::string server_work = work_ + "/server";
    ASSERT_EQ(mkdir(server_work.c_str(), 0755), 0);
    server_ = std::make_unique<WebServer>(kind, tree_, server_work);
    if (!server_->error().empty()) GTEST_SKIP() << server_->error();
    DaemonOptions o;
    o.rules = {RuleSpec{"", server_->url(), std::nullopt, "", extra}};
    ASSERT_NO_FATAL_FAILURE(Mount(o));
  }
  void TearDown() override {
    OriginListingsTest::TearDown();
    server_.reset();
  }
  std::unique_ptr<WebServer> server_;
};

TEST_F(WebdavListingsTest, RcloneServeWebdavWithListWebdav) {
  ASSERT_NO_FATAL_FAILURE(Serve(WebServerKind::kRcloneWebdav, "list = \"webdav\""));
  ExpectSameAsTheTree();
  EXPECT_NE(mount_->Log().find("PROPFIND: "), std::string::npos);
}

TEST_F(WebdavListingsTest, ApacheModDavUnderListAuto) {
  ASSERT_NO_FATAL_FAILURE(Serve(WebServerKind::kApacheDav, ""));
  // Sizes come from the listing: stat of a listed file needs no download.
  EXPECT_EQ(ListDir(M("pkg")), (std::vector<std::string>{"__init__.py", "sub"}));
  EXPECT_NE(ListDir(mnt_).size(), 0u);
  struct stat st;
  ASSERT_EQ(lstat(M("blob.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 300000);
  EXPECT_EQ(mount_->Log().find("fetched key=blob.bin"), std::string::npos) << mount_->Log();
  ExpectSameAsTheTree();
}

// nginx with `try_files $uri $uri/ /index.html` and no listings answers
// every missing path with its index page and 200. On a default mount (no
// soft_404 in the rule) the probe of a name that cannot exist finds that
// out: missing names are ENOENT, git and python work by path, and the
// index page itself is still served.
TEST_F(WebdavListingsTest, ASoftNotFoundOriginIsFoundOutWithoutConfiguration) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  ASSERT_EQ(WriteAll(tree_ + "/index.html", "<html><body>the site</body></html>\n"), 0);
  ASSERT_EQ(chmod((tree_ + "/index.html").c_str(), 0644), 0);
  std::string server_work = work_ + "/server";
  ASSERT_EQ(mkdir(server_work.c_str(), 0755), 0);
  server_ = std::make_unique<WebServer>(WebServerKind::kNginxTryFiles, tree_, server_work);
  if (!server_->error().empty()) GTEST_SKIP() << server_->error();
  DaemonOptions o;
  o.rules = {RuleSpec{"", server_->url()}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(StatErr(M("no-such-file.txt")), ENOENT);
  EXPECT_EQ(StatErr(M("pkg/nothing/deeper")), ENOENT);
  EXPECT_EQ(ReadAll(M("index.html")).data, "<html><body>the site</body></html>\n");
  EXPECT_EQ(ReadAll(M("tree/a/b/c.txt")).data, "deep\n");
  struct stat st;
  ASSERT_EQ(lstat(M("tree/a").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  // python probes __init__.cpython-311-x86_64-linux-gnu.so and others
  // first: a landed copy of the page would be "too short" an ELF file.
  auto py = RunCommand(
      {"python3", "-c", "import sys; sys.path.insert(0, '" + mnt_ + "'); import pkg; print(pkg.X)"},
      30s);
  EXPECT_EQ(py.exit_code, 0) << py.err;
  EXPECT_EQ(py.out, "1\n");
  auto git = RunCommand({"git", "--git-dir=" + M("repo.git"), "log", "--format=%s", "main"}, 60s);
  EXPECT_EQ(git.exit_code, 0) << git.err;
  EXPECT_EQ(git.out, "c3\nc2\nc1\n");
  // Nothing of the index page landed under another name.
  auto landed = RunCommand({"bash", "-c",
                            "cd '" + bucket_ +
                                "' && grep -rl --exclude-dir=.originfs 'the site' . "
                                "| grep -v '^./index.html$' || true"},
                           30s);
  EXPECT_EQ(landed.out, "") << "copies of the not-found page landed";
  EXPECT_NE(mount_->Log().find("a name that cannot exist gets 200"), std::string::npos);
}

// caddy's HTML page (browse), as a rule that asks for HTML gets it.
TEST_F(WebdavListingsTest, CaddysHtmlPagesWhenTheRuleAsksForHtml) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  std::string server_work = work_ + "/server";
  ASSERT_EQ(mkdir(server_work.c_str(), 0755), 0);
  server_ = std::make_unique<WebServer>(WebServerKind::kCaddy, tree_, server_work);
  if (!server_->error().empty()) GTEST_SKIP() << server_->error();
  std::string rules = work_ + "/rules.toml";  // headers: a file only its owner reads
  ASSERT_EQ(WriteAll(rules,
                     "[[rule]]\norigin = \"" + server_->url() +
                         "\"\nheaders = { Accept = \"text/html\" }\n",
                     0600),
            0);
  DaemonOptions o;
  o.extra_opts = {"rules=" + rules};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ExpectSameAsTheTree();
}

class NoListingsTest : public OriginListingsTest {};

TEST_F(NoListingsTest, AnOriginWithoutIndexPagesStillServesPaths) {
  // busybox httpd has no directory listings: directories list what the
  // bucket and lookups know, and paths still resolve one by one.
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  std::string server_work = work_ + "/server";
  ASSERT_EQ(mkdir(server_work.c_str(), 0755), 0);
  WebServer server(WebServerKind::kBusybox, tree_, server_work);
  if (!server.error().empty()) GTEST_SKIP() << server.error();
  DaemonOptions o;
  o.rules = {RuleSpec{"", server.url(), std::nullopt, "no-ext"}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(ListDir(mnt_), std::vector<std::string>{}) << "no listing: nothing is invented";
  EXPECT_EQ(ReadAll(M("tree/a/b/c.txt")).data, "deep\n");
  EXPECT_EQ(ListDir(M("tree/a/b")), std::vector<std::string>{"c.txt"});
}

}  // namespace
}  // namespace originfs::e2e

namespace originfs::e2e {
namespace {

class WarmRecursiveTest : public OriginListingsTest {};

TEST_F(WarmRecursiveTest, MigratesATreeWithOneRequestPerFileAndDirectory) {
  constexpr int kDirs = 30, kFiles = 100;
  auto made =
      RunCommand({"bash", "-c",
                  "cd '" + tree_ + "' && for d in $(seq 0 " + std::to_string(kDirs - 1) +
                      "); do mkdir -p sub/d$d; for f in $(seq 0 " + std::to_string(kFiles - 1) +
                      "); do echo \"$d/$f\" > sub/d$d/f$f.txt; done; done; "
                      "chmod -R a+rX '" +
                      tree_ + "'"},
                 120s);
  ASSERT_EQ(made.exit_code, 0) << made.err;
  std::string server_work = work_ + "/server";
  ASSERT_EQ(mkdir(server_work.c_str(), 0755), 0);
  WebServer server(WebServerKind::kNginx, tree_, server_work);
  if (!server.error().empty()) GTEST_SKIP() << server.error();
  DaemonOptions o;
  o.rules = {RuleSpec{"", server.url()}};
  o.watchdog = 120s;
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  int before = server.Gets();
  auto r = RunCommand({ORIGINFS_BINARY, "warm", mnt_, "-j", "16", "--recursive", "sub"}, 120s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("fetched " + std::to_string(kDirs * kFiles)), std::string::npos) << r.out;
  // One GET per file, one per directory listing (sub and its 30 directories),
  // and the lookup of sub itself (GET /sub, redirected to /sub/).
  EXPECT_EQ(server.Gets() - before, kDirs * kFiles + kDirs + 1 + 2);
  EXPECT_EQ(ReadAll(B("sub/d7/f42.txt")).data, "7/42\n");
  // Resumable: a second run finds everything present and asks nothing new
  // (the listings are fresh).
  int after = server.Gets();
  auto again = RunCommand({ORIGINFS_BINARY, "warm", mnt_, "--recursive", "sub"}, 120s);
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("already present " + std::to_string(kDirs * kFiles)), std::string::npos)
      << again.out;
  EXPECT_EQ(server.Gets(), after);
}

}  // namespace
}  // namespace originfs::e2e

namespace originfs::e2e {
namespace {

// The same tree in an S3 bucket (moto_server; every directory without files
// gets the usual "dir/" marker object, as S3 consoles make them).
constexpr char kUpload[] = R"PY(
import os, sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="id", aws_secret_access_key="secret",
                  config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="tree")
root = sys.argv[2]
for d, dirs, files in os.walk(root):
    rel = os.path.relpath(d, root)
    prefix = "" if rel == "." else rel + "/"
    if not dirs and not files:
        s3.put_object(Bucket="tree", Key=prefix, Body=b"")
    for f in files:
        with open(os.path.join(d, f), "rb") as fh:
            s3.put_object(Bucket="tree", Key=prefix + f, Body=fh.read())
)PY";

class S3TreeTest : public OriginListingsTest {};

TEST_F(S3TreeTest, TreeOnlyInAnS3BucketLooksLikeThePlainTree) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  if (RunCommand({"python3", "-c", "import boto3"}, 30s).exit_code != 0)
    GTEST_SKIP() << "python3 boto3 is not installed";
  std::string moto_work = work_ + "/moto";
  ASSERT_EQ(mkdir(moto_work.c_str(), 0755), 0);
  testing::MotoServer moto(moto_work);
  if (!moto.error().empty()) GTEST_SKIP() << moto.error();
  ASSERT_EQ(WriteAll(work_ + "/upload.py", kUpload), 0);
  auto up = RunCommand({"python3", work_ + "/upload.py", moto.url(), tree_}, 120s);
  ASSERT_EQ(up.exit_code, 0) << up.err;
  std::string creds = work_ + "/credentials";
  ASSERT_EQ(WriteAll(creds, "[default]\naws_access_key_id = id\naws_secret_access_key = s\n", 0600),
            0);
  std::string rules = work_ + "/rules.toml";
  ASSERT_EQ(WriteAll(rules,
                     "[[rule]]\ntype = \"s3\"\norigin = \"" + moto.url() +
                         "/tree\"\ncredentials_file = \"" + creds + "\"\n",
                     0600),
            0);
  DaemonOptions o;
  o.extra_opts = {"rules=" + rules};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ExpectSameAsTheTree();
  Unmount();
}

}  // namespace
}  // namespace originfs::e2e

namespace originfs::e2e {
namespace {

// File servers (FTP, FTPS, SFTP) from Debian: the same tree, the same
// programs. Listings through MLSD, LIST (vsftpd has no MLSD; proftpd with
// it denied) and SFTP's directory read.
class FileServerOriginTest : public OriginListingsTest {
 protected:
  template <typename Server, typename... Args>
  Server* Serve(Args&&... args) {
    std::string server_work = work_ + "/server";
    mkdir(server_work.c_str(), 0755);
    auto s = std::make_unique<Server>(tree_, server_work, std::forward<Args>(args)...);
    Server* raw = s.get();
    server_ = std::move(s);
    return raw;
  }
  // A credentials file (mode 0600) with the server's login.
  std::string Credentials(const std::string& user, const std::string& password) {
    std::string path = work_ + "/login.cred";
    EXPECT_EQ(WriteAll(path, "user = " + user + "\npassword = " + password + "\n"), 0);
    EXPECT_EQ(chmod(path.c_str(), 0600), 0);
    return path;
  }
  void MountRule(const std::string& origin, const std::string& extra) {
    DaemonOptions o;
    o.rules = {RuleSpec{"", origin, std::nullopt, "", extra}};
    ASSERT_NO_FATAL_FAILURE(Mount(o));
  }
  void TearDown() override {
    OriginListingsTest::TearDown();
    server_.reset();
  }
  // The URL with the user named in it (sftp key logins).
  static std::string WithUser(const std::string& url, const std::string& user) {
    std::size_t at = url.find("://") + 3;
    return url.substr(0, at) + user + "@" + url.substr(at);
  }
  std::unique_ptr<testing::FileServer> server_;
};

TEST_F(FileServerOriginTest, VsftpdListsWithListOnly) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  auto* s = Serve<testing::VsftpdServer>();
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  ASSERT_NO_FATAL_FAILURE(MountRule(s->url(), ""));
  ExpectSameAsTheTree();
  EXPECT_EQ(StatErr(M("no-such-file.txt")), ENOENT);
  EXPECT_EQ(StatErr(M("tree/no/such")), ENOENT);
  EXPECT_NE(mount_->Log().find("MLSD refused"), std::string::npos) << "LIST was not used";
}

TEST_F(FileServerOriginTest, ProftpdWithMlsdNeedsNoDownloadForStat) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  auto* s = Serve<testing::ProftpdServer>();
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  ASSERT_NO_FATAL_FAILURE(
      MountRule(s->url(), "credentials_file = \"" + Credentials(s->user(), s->password()) + "\""));
  struct stat st, want;
  ASSERT_EQ(lstat(M("blob.bin").c_str(), &st), 0);
  ASSERT_EQ(lstat((tree_ + "/blob.bin").c_str(), &want), 0);
  EXPECT_EQ(st.st_size, 300000);
  EXPECT_EQ(st.st_mtime, want.st_mtime);  // MLSD's exact time
  EXPECT_EQ(mount_->Log().find("fetched key=blob.bin"), std::string::npos) << "stat downloaded it";
  ExpectSameAsTheTree();
  EXPECT_EQ(StatErr(M("no-such-file.txt")), ENOENT);
  EXPECT_EQ(mount_->Log().find(s->password()), std::string::npos) << "the password was logged";
}

TEST_F(FileServerOriginTest, ProftpdWithoutMlsdAndOverExplicitTls) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  auto* s = Serve<testing::ProftpdServer>(testing::ProftpdOptions{.tls = true, .mlsd = false});
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  std::string ftps = "ftps://" + s->url().substr(std::string("ftp://").size());
  ASSERT_NO_FATAL_FAILURE(MountRule(ftps, "credentials_file = \"" +
                                              Credentials(s->user(), s->password()) +
                                              "\"\nca_file = \"" + s->ca_file() + "\""));
  ExpectSameAsTheTree();
}

TEST_F(FileServerOriginTest, FtpsWithoutTheServersCaIsEio) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  auto* s = Serve<testing::ProftpdServer>(testing::ProftpdOptions{.tls = true});
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  std::string ftps = "ftps://" + s->url().substr(std::string("ftp://").size());
  ASSERT_NO_FATAL_FAILURE(
      MountRule(ftps, "credentials_file = \"" + Credentials(s->user(), s->password()) + "\""));
  EXPECT_EQ(StatErr(M("blob.bin")), EIO);
}

TEST_F(FileServerOriginTest, AWrongPasswordIsEioAndNeverLogged) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  auto* s = Serve<testing::ProftpdServer>();
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  ASSERT_NO_FATAL_FAILURE(
      MountRule(s->url(), "credentials_file = \"" + Credentials(s->user(), "Wr0ngPass") + "\""));
  EXPECT_EQ(StatErr(M("blob.bin")), EIO);
  std::string log = mount_->Log();
  EXPECT_NE(log.find("530"), std::string::npos) << log;
  EXPECT_EQ(log.find("Wr0ngPass"), std::string::npos) << "the password was logged";
}

TEST_F(FileServerOriginTest, SftpWithAKeyAndKnownHosts) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  auto* s = Serve<testing::SshdServer>();
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  ASSERT_NO_FATAL_FAILURE(MountRule(
      WithUser(s->url(), s->user()),
      "ssh_key = \"" + s->client_key() + "\"\nknown_hosts = \"" + s->known_hosts() + "\""));
  ExpectSameAsTheTree();
  EXPECT_EQ(StatErr(M("no-such-file.txt")), ENOENT);
}

TEST_F(FileServerOriginTest, SftpWithAPassword) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  auto* s = Serve<testing::SshdServer>();
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  if (s->password().empty()) GTEST_SKIP() << "no password login on this host (no useradd)";
  ASSERT_NO_FATAL_FAILURE(
      MountRule(s->url(), "credentials_file = \"" + Credentials(s->user(), s->password()) +
                              "\"\nknown_hosts = \"" + s->known_hosts() + "\""));
  EXPECT_EQ(ReadAll(M("tree/a/b/c.txt")).data, "deep\n");
  EXPECT_EQ(mount_->Log().find(s->password()), std::string::npos) << "the password was logged";
}

TEST_F(FileServerOriginTest, AnUnknownHostKeyIsRefusedNamingItsFingerprint) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  auto* s = Serve<testing::SshdServer>();
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  std::string empty = work_ + "/known_hosts.empty";
  ASSERT_EQ(WriteAll(empty, ""), 0);
  ASSERT_NO_FATAL_FAILURE(
      MountRule(WithUser(s->url(), s->user()),
                "ssh_key = \"" + s->client_key() + "\"\nknown_hosts = \"" + empty + "\""));
  EXPECT_EQ(StatErr(M("blob.bin")), EIO);
  std::string log = mount_->Log();
  EXPECT_NE(log.find("SHA256:" + s->host_key_sha256()), std::string::npos) << log;
}

// A file replaced at the origin while it downloads: the copy is one version
// whole (the server keeps sending the file it opened), never a mix.
TEST_F(FileServerOriginTest, AFileReplacedWhileItDownloadsIsOneVersion) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  std::string old_bytes(2 << 20, 'o'), new_bytes(3 << 20, 'n');
  ASSERT_EQ(WriteAll(tree_ + "/moving.bin", old_bytes), 0);
  ASSERT_EQ(chmod((tree_ + "/moving.bin").c_str(), 0644), 0);
  auto* s = Serve<testing::ProftpdServer>(testing::ProftpdOptions{.max_rate_kib = 1024});
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  ASSERT_NO_FATAL_FAILURE(
      MountRule(s->url(), "credentials_file = \"" + Credentials(s->user(), s->password()) + "\""));
  std::thread replace([&] {
    std::this_thread::sleep_for(500ms);
    testing::ReplaceFileAtomically(tree_ + "/moving.bin", new_bytes);
  });
  auto got = ReadAll(M("moving.bin"));
  replace.join();
  EXPECT_EQ(got.err, 0);
  EXPECT_TRUE(got.data == old_bytes || got.data == new_bytes)
      << "a mixed or short copy of " << got.data.size() << " bytes";
}

// The server goes away mid-file: the reader gets EIO, nothing partial lands,
// and the next read (server back) gets the whole file.
TEST_F(FileServerOriginTest, AServerThatDropsMidFileLeavesNoPartialFile) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  std::string bytes(3 << 20, 'x');
  ASSERT_EQ(WriteAll(tree_ + "/slow.bin", bytes), 0);
  ASSERT_EQ(chmod((tree_ + "/slow.bin").c_str(), 0644), 0);
  auto* s = Serve<testing::ProftpdServer>(testing::ProftpdOptions{.max_rate_kib = 1024});
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  ASSERT_NO_FATAL_FAILURE(MountRule(
      s->url(),
      "credentials_file = \"" + Credentials(s->user(), s->password()) + "\"\nretries = 0"));
  std::thread stop([&] {
    std::this_thread::sleep_for(700ms);
    s->Stop();
  });
  auto got = ReadAll(M("slow.bin"));
  stop.join();
  EXPECT_TRUE(got.err == EIO || got.data == bytes) << got.err << " " << got.data.size();
  struct stat st;
  if (lstat(B("slow.bin").c_str(), &st) == 0) EXPECT_EQ(st.st_size, 3 << 20) << "a partial file";
  ASSERT_TRUE(s->Restart()) << s->error();
  std::this_thread::sleep_for(1100ms);  // past the remembered failure
  EXPECT_EQ(ReadAll(M("slow.bin")).data, bytes);
}

// The login from a netrc file (no credentials_file), as curl reads it.
TEST_F(FileServerOriginTest, TheLoginFromANetrcFile) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  auto* s = Serve<testing::ProftpdServer>();
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  std::string netrc = work_ + "/netrc";
  ASSERT_EQ(
      WriteAll(netrc, "machine 127.0.0.1 login " + s->user() + " password " + s->password() + "\n"),
      0);
  ASSERT_EQ(chmod(netrc.c_str(), 0600), 0);
  ASSERT_NO_FATAL_FAILURE(MountRule(s->url(), "netrc = \"" + netrc + "\""));
  EXPECT_EQ(ReadAll(M("tree/a/b/c.txt")).data, "deep\n");
}

// refresh without ETags: a file whose time at the server is newer is
// fetched again and replaced; one that is not stays, without its body sent
// again (FTP: the time condition; SFTP: the stat before the body).
TEST_F(FileServerOriginTest, RefreshComparesTheServersTime) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  for (int sftp = 0; sftp < 2; ++sftp) {
    SCOPED_TRACE(sftp ? "sftp" : "ftp");
    std::string origin, extra;
    if (sftp) {
      auto* s = Serve<testing::SshdServer>();
      if (!s->error().empty()) GTEST_SKIP() << s->error();
      origin = WithUser(s->url(), s->user());
      extra = "ssh_key = \"" + s->client_key() + "\"\nknown_hosts = \"" + s->known_hosts() + "\"";
    } else {
      auto* s = Serve<testing::ProftpdServer>();
      if (!s->error().empty()) GTEST_SKIP() << s->error();
      origin = s->url();
      extra = "credentials_file = \"" + Credentials(s->user(), s->password()) + "\"";
    }
    ASSERT_NO_FATAL_FAILURE(MountRule(origin, extra));
    std::string f = tree_ + "/tree/a/b/c.txt";
    ASSERT_EQ(WriteAll(f, "deep\n"), 0);
    ASSERT_EQ(RunCommand({"touch", "-d", "2024-01-01 00:00:00", f}, 10s).exit_code, 0);
    EXPECT_EQ(ReadAll(M("tree/a/b/c.txt")).data, "deep\n");
    auto same = RunCommand({ORIGINFS_BINARY, "refresh", mnt_, "tree/a/b/c.txt"}, 30s);
    EXPECT_EQ(same.exit_code, 0) << same.err;
    EXPECT_NE(same.out.find("unchanged"), std::string::npos) << same.out;
    ASSERT_EQ(WriteAll(f, "deeper now\n"), 0);
    ASSERT_EQ(RunCommand({"touch", "-d", "2025-01-01 00:00:00", f}, 10s).exit_code, 0);
    auto newer = RunCommand({ORIGINFS_BINARY, "refresh", mnt_, "tree/a/b/c.txt"}, 30s);
    EXPECT_EQ(newer.exit_code, 0) << newer.err;
    EXPECT_NE(newer.out.find("updated"), std::string::npos) << newer.out;
    EXPECT_EQ(ReadAll(M("tree/a/b/c.txt")).data, "deeper now\n");
    struct stat st;
    ASSERT_EQ(lstat(M("tree/a/b/c.txt").c_str(), &st), 0);
    EXPECT_EQ(st.st_mtime, 1735689600);  // the server's time
    ASSERT_NO_FATAL_FAILURE(Unmount());
    server_.reset();
    RunCommand({"rm", "-rf", bucket_ + "/tree", bucket_ + "/.originfs"}, 10s);
  }
}

// Names the server does not have stay absent once the listing's word on
// them expired and they are asked for by path: SFTP answers a body-less
// request for any path, so that was taken for a directory (found by review).
TEST_F(FileServerOriginTest, SftpNamesAskedForByPathAfterTheListingAreAbsent) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  auto* s = Serve<testing::SshdServer>();
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  DaemonOptions o;
  o.negative_ttl = 1;
  o.rules = {RuleSpec{
      "", WithUser(s->url(), s->user()), std::nullopt, "",
      "ssh_key = \"" + s->client_key() + "\"\nknown_hosts = \"" + s->known_hosts() + "\""}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(StatErr(M("nope.txt")), ENOENT);
  EXPECT_EQ(StatErr(M("pkg/nope")), ENOENT);
  std::this_thread::sleep_for(1100ms);  // the listings' absences expire
  EXPECT_EQ(StatErr(M("nope.txt")), ENOENT);
  EXPECT_EQ(StatErr(M("pkg/nope")), ENOENT);
  ASSERT_EQ(mkdir((tree_ + "/newdir").c_str(), 0755), 0);
  ASSERT_EQ(WriteAll(tree_ + "/newdir/n.txt", "n\n"), 0);
  EXPECT_EQ(ReadAll(M("newdir/n.txt")).data, "n\n") << "a directory new at the server";
}

// A file the login may not read answers 550 over FTPS; the connection it
// was asked on is not used again (curl would read each later reply one step
// late on it: every other file EIO, found by review).
TEST_F(FileServerOriginTest, AnUnreadableFileOverFtpsDoesNotSpoilTheOthers) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  ASSERT_EQ(WriteAll(tree_ + "/secret.txt", "no\n"), 0);
  ASSERT_EQ(chmod((tree_ + "/secret.txt").c_str(), 0), 0);
  auto* s = Serve<testing::ProftpdServer>(testing::ProftpdOptions{.tls = true});
  if (!s->error().empty()) GTEST_SKIP() << s->error();
  std::string ftps = "ftps://" + s->url().substr(std::string("ftp://").size());
  ASSERT_NO_FATAL_FAILURE(MountRule(ftps, "credentials_file = \"" +
                                              Credentials(s->user(), s->password()) +
                                              "\"\nca_file = \"" + s->ca_file() + "\""));
  EXPECT_EQ(ReadAll(M("blob.bin")).data.size(), 300000u);
  EXPECT_EQ(ReadAll(M("secret.txt")).err, ENOENT);  // FTP's 550 (see the README)
  EXPECT_EQ(ReadAll(M("tree/a/b/c.txt")).data, "deep\n");
  EXPECT_EQ(ReadAll(M("pkg/__init__.py")).data, "X = 1\n");
  EXPECT_EQ(mount_->Log().find("MLSD refused"), std::string::npos) << mount_->Log();
}
}  // namespace
}  // namespace originfs::e2e

// Security: TLS is verified unless the rule says otherwise, credentials in a
// rules file are refused when others can read it and never logged, the
// kernel enforces the bucket files' modes for other users under allow_other,
// and bad configuration is refused with a message, never a crash.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

class SecurityTest : public MountTest {
 protected:
  // A self-signed certificate for 127.0.0.1 (files in the temp root).
  ::testing::AssertionResult MakeCert(const std::string& stem, testing::TlsFiles* out) {
    out->cert = root_ + "/" + stem + ".pem";
    out->key = root_ + "/" + stem + ".key";
    auto r = RunCommand({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                         "-keyout", out->key, "-out", out->cert},
                        60s);
    if (r.exit_code != 0) return ::testing::AssertionFailure() << "openssl req: " << r.err;
    return ::testing::AssertionSuccess();
  }

  // Runs argv as user nobody (uid/gid 65534, no supplementary groups).
  CommandResult AsNobody(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
    return RunCommand(argv, 10s);
  }
};

// ---- TLS -----------------------------------------------------------------------

TEST_F(SecurityTest, HttpsIsVerifiedUnlessTheRuleSaysOtherwise) {
  testing::TlsFiles tls, other;
  ASSERT_TRUE(MakeCert("origin", &tls));
  ASSERT_TRUE(MakeCert("other", &other));
  testing::TestOrigin https(tls);
  ASSERT_GT(https.port(), 0);
  ASSERT_TRUE(https.url().starts_with("https://"));
  for (const char* dir : {"default", "ca", "wrong-ca", "insecure"})
    https.SetFile(std::string("/") + dir + "/file.txt", std::string("over TLS: ") + dir);
  DaemonOptions o;
  o.rules = {RuleSpec{"default/", https.url()},
             RuleSpec{"ca/", https.url(), {}, "", "ca_file = \"" + tls.cert + "\""},
             RuleSpec{"wrong-ca/", https.url(), {}, "", "ca_file = \"" + other.cert + "\""},
             RuleSpec{"insecure/", https.url(), {}, "", "insecure = true"}};
  o.extra_opts = {"retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  for (const char* dir : {"default", "wrong-ca"}) {
    SCOPED_TRACE(dir);
    std::string key = std::string(dir) + "/file.txt";
    auto r = ReadAll(M(key));
    EXPECT_EQ(r.err, EIO) << r.stage << ": " << ErrnoName(r.err);
    EXPECT_FALSE(Exists(B(key)));
    EXPECT_EQ(https.GetCount("/" + key), 0) << "a request was sent over an unverified connection";
  }
  for (const char* dir : {"ca", "insecure"}) {
    SCOPED_TRACE(dir);
    std::string key = std::string(dir) + "/file.txt";
    auto r = ReadAll(M(key));
    EXPECT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
    EXPECT_EQ(r.data, std::string("over TLS: ") + dir);
    EXPECT_TRUE(EventuallyExists(B(key)));
    EXPECT_EQ(https.GetCount("/" + key), 1);
  }
  ASSERT_NO_FATAL_FAILURE(Unmount());
  std::string log = mount_->Log();
  for (const char* dir : {"default", "wrong-ca"}) {
    std::string needle = std::string("fetch key=") + dir + "/file.txt";
    auto pos = log.find(needle);
    ASSERT_NE(pos, std::string::npos) << "no failure logged for " << dir << ":\n" << log;
    std::string line = log.substr(pos, log.find('\n', pos) - pos);
    EXPECT_NE(line.find("TLS"), std::string::npos) << "the log gives no TLS reason: " << line;
  }
}

// ---- credentials ----------------------------------------------------------------

const char* const kSecret = "SECRET123";

std::string SecretRule(const std::string& origin) {
  return "[[rule]]\nprefix = \"\"\norigin = \"" + origin +
         "\"\nheaders = { Authorization = \"Bearer " + kSecret + "\" }\n";
}

TEST_F(SecurityTest, CredentialsFileReadableByOthersIsRefused) {
  std::string rules = root_ + "/secret.toml";
  ASSERT_EQ(WriteAll(rules, SecretRule(origin_.url())), 0);
  for (mode_t mode : {0644, 0640, 0604, 0660}) {
    SCOPED_TRACE(mode);
    ASSERT_EQ(chmod(rules.c_str(), mode), 0);
    auto r = RunCommand({ORIGINFS_BINARY, bucket_, mnt_, "-o", "rules=" + rules, "-f"}, 10s);
    EXPECT_FALSE(r.timed_out) << "mounted with a world-readable credentials file";
    EXPECT_NE(r.exit_code, 0);
    EXPECT_EQ(r.term_signal, 0);
    EXPECT_NE(r.err.find("chmod 600"), std::string::npos) << "unclear message: " << r.err;
    EXPECT_EQ(r.err.find(kSecret), std::string::npos) << "the message shows the secret: " << r.err;
    EXPECT_FALSE(IsMounted(mnt_));
    auto check = RunCommand({ORIGINFS_BINARY, "check", rules}, 10s);
    EXPECT_NE(check.exit_code, 0) << "originfs check accepts it: " << check.out;
  }
  EXPECT_EQ(origin_.TotalCount(), 0);
}

TEST_F(SecurityTest, CredentialsAreSentButNeverLogged) {
  testing::TestOrigin elsewhere;  // another origin, reached by a redirect
  elsewhere.SetFile("/moved.txt", "elsewhere");
  origin_.SetFile("/private.txt", "for the bearer only");
  testing::Behavior err;
  err.status = 500;
  err.body = "fails";
  origin_.Set("/broken.txt", err);
  testing::Behavior moved;
  moved.status = 302;
  moved.redirect_to = elsewhere.url() + "/moved.txt";
  origin_.Set("/moved.txt", moved);
  // The fixture rewrites the rules file without changing its mode: make it 0600 first.
  ASSERT_EQ(WriteAll(mount_->rules_path(), "", 0600), 0);
  ASSERT_EQ(chmod(mount_->rules_path().c_str(), 0600), 0);
  DaemonOptions o;
  o.rules = {RuleSpec{"",
                      origin_.url(),
                      {},
                      "",
                      std::string("headers = { Authorization = \"Bearer ") + kSecret + "\" }"}};
  o.extra_opts = {"log_level=trace", "retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  auto r = ReadAll(M("private.txt"));
  EXPECT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(r.data, "for the bearer only");
  EXPECT_EQ(origin_.LastHeader("/private.txt", "Authorization"), std::string("Bearer ") + kSecret);
  EXPECT_EQ(ReadAll(M("broken.txt")).err, EIO);
  EXPECT_EQ(StatErr(M("missing.txt")), ENOENT);
  EXPECT_EQ(origin_.LastHeader("/missing.txt", "Authorization"), std::string("Bearer ") + kSecret);
  // A redirect to another host does not carry the credential along.
  auto m = ReadAll(M("moved.txt"));
  EXPECT_EQ(m.data, "elsewhere") << m.stage << ": " << ErrnoName(m.err);
  EXPECT_EQ(elsewhere.GetCount("/moved.txt"), 1);
  EXPECT_EQ(elsewhere.LastHeader("/moved.txt", "Authorization"), "")
      << "the credential was sent to the redirect target";

  auto check = RunCommand({ORIGINFS_BINARY, "check", mount_->rules_path()}, 10s);
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_NE(check.out.find("Authorization"), std::string::npos) << check.out;
  EXPECT_EQ(check.out.find(kSecret), std::string::npos) << "originfs check prints the secret";
  EXPECT_EQ(check.err.find(kSecret), std::string::npos);

  ASSERT_NO_FATAL_FAILURE(Unmount());
  std::string log = mount_->Log();
  EXPECT_NE(log.find("private.txt"), std::string::npos) << "trace log is empty?\n" << log;
  EXPECT_EQ(log.find(kSecret), std::string::npos) << "the secret is in the log:\n" << log;
}

// ---- permissions for other users ------------------------------------------------

TEST_F(SecurityTest, AllowOtherEnforcesBucketModes) {
  // Other users must be able to reach the mount point at all.
  ASSERT_EQ(chmod(root_.c_str(), 0755), 0);
  ASSERT_EQ(WriteAll(B("secret.txt"), "root only", 0600), 0);
  ASSERT_EQ(chmod(B("secret.txt").c_str(), 0600), 0);
  ASSERT_EQ(WriteAll(B("public.txt"), "everyone"), 0);
  ASSERT_EQ(chmod(B("public.txt").c_str(), 0644), 0);
  ASSERT_EQ(mkdir(B("private").c_str(), 0700), 0);
  ASSERT_EQ(chmod(B("private").c_str(), 0700), 0);
  ASSERT_EQ(WriteAll(B("private/inner.txt"), "hidden by its directory"), 0);
  origin_.SetFile("/fetched.txt", "from the origin");
  origin_.SetFile("/private/remote.txt", "behind a 0700 directory");
  DaemonOptions o = Defaults();
  o.extra_opts = {"allow_other"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  auto pub = AsNobody({"cat", M("public.txt")});
  EXPECT_EQ(pub.exit_code, 0) << pub.err;
  EXPECT_EQ(pub.out, "everyone");
  auto sec = AsNobody({"cat", M("secret.txt")});
  EXPECT_NE(sec.exit_code, 0) << "nobody read a 0600 root file: " << sec.out;
  EXPECT_NE(sec.err.find("Permission denied"), std::string::npos) << sec.err;
  auto inner = AsNobody({"cat", M("private/inner.txt")});
  EXPECT_NE(inner.exit_code, 0) << "nobody read through a 0700 directory: " << inner.out;
  EXPECT_NE(inner.err.find("Permission denied"), std::string::npos) << inner.err;
  auto ls = AsNobody({"ls", M("private")});
  EXPECT_NE(ls.exit_code, 0) << "nobody listed a 0700 directory: " << ls.out;
  // Nor can nobody make originfs fetch into a directory it cannot search.
  auto remote = AsNobody({"cat", M("private/remote.txt")});
  EXPECT_NE(remote.exit_code, 0) << remote.out;
  EXPECT_EQ(origin_.TotalCount(), 0) << ::testing::PrintToString(origin_.Log());
  // Writes into root-owned places are refused.
  auto write = AsNobody({"sh", "-c", "echo x > " + M("public.txt")});
  EXPECT_NE(write.exit_code, 0);
  auto create = AsNobody({"touch", M("by-nobody.txt")});
  EXPECT_NE(create.exit_code, 0);
  EXPECT_FALSE(Exists(B("by-nobody.txt")));
  // A fetched object is world-readable (0644, owned by the bucket's owner).
  auto fetched = AsNobody({"cat", M("fetched.txt")});
  EXPECT_EQ(fetched.exit_code, 0) << fetched.err;
  EXPECT_EQ(fetched.out, "from the origin");
  // root still reads everything.
  EXPECT_EQ(ReadAll(M("secret.txt")).data, "root only");
  EXPECT_EQ(ReadAll(M("private/inner.txt")).data, "hidden by its directory");
}

// Group access through a supplementary group: the daemon created files with
// the caller's fsuid and fsgid but its own supplementary groups, so a user
// allowed in by one of theirs got EACCES through the mount (not on the bucket).
TEST_F(SecurityTest, CreatingUsesTheCallersSupplementaryGroups) {
  ASSERT_EQ(chmod(root_.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(B("team").c_str(), 0770), 0);
  ASSERT_EQ(chown(B("team").c_str(), 0, 4242), 0);
  ASSERT_EQ(chmod(B("team").c_str(), 0770), 0);
  DaemonOptions o = Defaults();
  o.extra_opts = {"allow_other"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  auto as_member = [&](std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"setpriv", "--reuid=65534", "--regid=65534", "--groups=4242"});
    return RunCommand(argv, 10s);
  };
  auto touch = as_member({"touch", M("team/by-member.txt")});
  EXPECT_EQ(touch.exit_code, 0) << touch.err;
  auto dir = as_member({"mkdir", M("team/sub")});
  EXPECT_EQ(dir.exit_code, 0) << dir.err;
  struct stat st {};
  ASSERT_EQ(StatErr(B("team/by-member.txt"), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
  auto outsider = AsNobody({"touch", M("team/by-outsider.txt")});
  EXPECT_NE(outsider.exit_code, 0);
  EXPECT_FALSE(Exists(B("team/by-outsider.txt")));
}

// A bucket owned by a service user: directories that landings make are its
// own too, as the landed files are, so it can create files in an
// origin-only directory shown to it as its own (they were root's: EACCES).
TEST_F(SecurityTest, DirectoriesALandingMakesBelongToTheBucketOwner) {
  ASSERT_EQ(chmod(root_.c_str(), 0755), 0);
  ASSERT_EQ(chown(bucket_.c_str(), 65534, 65534), 0);
  origin_.SetFile("/d/e/f.txt", "deep");
  origin_.SetNginxDirectories(true);
  DaemonOptions o = Defaults();
  o.extra_opts = {"allow_other"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_EQ(ReadAll(M("d/e/f.txt")).data, "deep");
  ASSERT_TRUE(EventuallyExists(B("d/e/f.txt")));
  for (const char* p : {"d", "d/e", "d/e/f.txt"}) {
    struct stat st {};
    ASSERT_EQ(StatErr(B(p), &st), 0) << p;
    EXPECT_EQ(st.st_uid, 65534u) << p;
    EXPECT_EQ(st.st_gid, 65534u) << p;
  }
  auto create = AsNobody({"touch", M("d/e/by-the-owner.txt")});
  EXPECT_EQ(create.exit_code, 0) << create.err;
  EXPECT_TRUE(Exists(B("d/e/by-the-owner.txt")));
}

// open(O_CREAT|O_NOFOLLOW) of a name the kernel looked up as absent must not
// follow a symlink put in the bucket meanwhile (an uploader, or an attacker
// with access to the bucket): the daemon used to drop O_NOFOLLOW and create
// the symlink's target. A race, so tried until it is hit (or 4000 times).
TEST_F(SecurityTest, CreateKeepsNoFollowAgainstASymlinkPutInTheBucket) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  std::string victim = root_ + "/victim";
  std::atomic<bool> stop{false};
  std::thread flipper([&] {
    while (!stop) {
      symlink(victim.c_str(), B("s").c_str());
      unlink(B("s").c_str());
    }
  });
  int created_through_link = 0;
  for (int i = 0; i < 4000 && !created_through_link; ++i) {
    int fd = open(M("s").c_str(), O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    if (Exists(victim)) created_through_link = i + 1;
    unlink(M("s").c_str());
  }
  stop = true;
  flipper.join();
  unlink(B("s").c_str());
  EXPECT_EQ(created_through_link, 0) << "O_NOFOLLOW create followed the bucket's symlink";
  unlink(victim.c_str());
}

TEST_F(SecurityTest, WithoutAllowOtherOtherUsersAreKeptOut) {
  ASSERT_EQ(chmod(root_.c_str(), 0755), 0);
  ASSERT_EQ(WriteAll(B("public.txt"), "everyone"), 0);
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto r = AsNobody({"cat", M("public.txt")});
  EXPECT_NE(r.exit_code, 0) << "another user reached a mount without allow_other: " << r.out;
  EXPECT_EQ(ReadAll(M("public.txt")).data, "everyone");
}

// ---- bad configuration --------------------------------------------------------------

struct BadConfig {
  const char* name;
  const char* rules;    // rules file content ("%s": a valid origin URL), or nullptr
  const char* options;  // the -o list ("%r": the rules file), or nullptr for "rules=%r"
  const char* expect;   // the message must contain this
};

class BadConfigTest : public SecurityTest, public ::testing::WithParamInterface<BadConfig> {};

std::string Subst(std::string s, const std::string& what, const std::string& with) {
  for (auto pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + with.size()))
    s.replace(pos, what.size(), with);
  return s;
}

TEST_P(BadConfigTest, RefusedWithAMessageNotACrash) {
  const BadConfig& c = GetParam();
  std::string rules = root_ + "/rules-under-test.toml";
  std::string good = "[[rule]]\nprefix = \"\"\norigin = \"" + origin_.url() + "\"\n";
  std::string content = c.rules ? Subst(c.rules, "%s", origin_.url()) : good;
  if (content == "%deep")
    content = "x = " + std::string(200000, '[');  // the parser must not recurse that deep
  ASSERT_EQ(WriteAll(rules, content, 0600), 0);
  std::string opts = Subst(c.options ? c.options : "rules=%r", "%r", rules);
  // A refusal takes milliseconds; still running after 5 s means it mounted.
  auto r = RunCommand({ORIGINFS_BINARY, bucket_, mnt_, "-o", opts, "-f"}, 5s);
  EXPECT_FALSE(r.timed_out) << "originfs accepted it, mounted and ran with " << opts;
  EXPECT_EQ(r.term_signal, 0) << "originfs died of signal " << r.term_signal << "; stderr:\n"
                              << r.err;
  EXPECT_GT(r.exit_code, 0) << "stderr:\n" << r.err;
  EXPECT_NE(r.err.find("originfs: "), std::string::npos)
      << "no message of originfs's own: " << r.err;
  EXPECT_NE(r.err.find(c.expect), std::string::npos)
      << "message does not mention \"" << c.expect << "\": " << r.err;
  EXPECT_FALSE(IsMounted(mnt_));
  if (c.rules) {
    auto check = RunCommand({ORIGINFS_BINARY, "check", rules}, 10s);
    EXPECT_EQ(check.term_signal, 0) << check.err;
    EXPECT_GT(check.exit_code, 0) << "originfs check accepts it: " << check.out;
  }
  if (IsMounted(mnt_)) RunCommand({"fusermount3", "-u", mnt_}, 10s);
}

const BadConfig kBadConfigs[] = {
    // rules files
    {"EmptyRulesFile", "", nullptr, "no [[rule]]"},
    {"NotToml", "this is not toml\n", nullptr, "rules-under-test.toml"},
    {"BinaryGarbage", "\x01\x02\xff\xfe[[[ = = ]]", nullptr, "rules-under-test.toml"},
    {"InvalidUtf8", "[[rule]]\nprefix = \"\xff\xfe\"\norigin = \"%s\"\n", nullptr,
     "rules-under-test.toml"},
    {"DeepNesting", "%deep", nullptr, "rules-under-test.toml"},
    {"RuleNotATable", "rule = 5\n", nullptr, "rule"},
    {"UnknownTopLevel", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\n[server]\nport = 1\n", nullptr,
     "server"},
    {"MissingOrigin", "[[rule]]\nprefix = \"a/\"\n", nullptr, "rule #1"},
    {"OriginWithQuery", "[[rule]]\nprefix = \"\"\norigin = \"http://example.com/?a=b\"\n", nullptr,
     "rule #1"},
    {"OriginWithFragment", "[[rule]]\nprefix = \"\"\norigin = \"http://example.com/#x\"\n", nullptr,
     "rule #1"},
    {"OriginWithSpace", "[[rule]]\nprefix = \"\"\norigin = \"http://exa mple.com\"\n", nullptr,
     "rule #1"},
    {"OriginNoHost", "[[rule]]\nprefix = \"\"\norigin = \"http://\"\n", nullptr, "rule #1"},
    {"OriginUserinfo", "[[rule]]\nprefix = \"\"\norigin = \"http://user:pw@example.com\"\n",
     nullptr, "rule #1"},
    {"OriginFileScheme", "[[rule]]\nprefix = \"\"\norigin = \"file:///etc\"\n", nullptr, "rule #1"},
    {"OriginNotAString", "[[rule]]\nprefix = \"\"\norigin = 42\n", nullptr, "rule #1"},
    {"OriginsEmpty", "[[rule]]\nprefix = \"\"\norigins = []\n", nullptr, "rule #1"},
    {"OriginAndOrigins", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\norigins = [\"%s\"]\n", nullptr,
     "rule #1"},
    {"PrefixLeadingSlash", "[[rule]]\nprefix = \"/a\"\norigin = \"%s\"\n", nullptr, "rule #1"},
    {"PrefixWithNul", "[[rule]]\nprefix = \"a\\u0000b\"\norigin = \"%s\"\n", nullptr, "rule #1"},
    {"DuplicatePrefix",
     "[[rule]]\nprefix = \"x\"\norigin = \"%s\"\n[[rule]]\nprefix = \"x\"\norigin = \"%s\"\n",
     nullptr, "rule #2"},
    {"HeaderNewline",
     "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nheaders = { X = \"a\\r\\nInjected: 1\" }\n",
     nullptr, "rule #1"},
    {"HeaderBadName", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nheaders = { \"X Y\" = \"a\" }\n",
     nullptr, "rule #1"},
    {"NegativeMaxRedirects", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nmax_redirects = -1\n",
     nullptr, "rule #1"},
    {"HugeRetries", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nretries = 99999999999\n", nullptr,
     "rule #1"},
    {"ZeroTimeout", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\ntimeout = 0\n", nullptr, "rule #1"},
    {"NanTimeout", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\ntimeout = nan\n", nullptr, "rule #1"},
    {"InfConnectTimeout", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nconnect_timeout = inf\n",
     nullptr, "rule #1"},
    {"BadSize", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nmax_object_size = \"lots\"\n", nullptr,
     "rule #1"},
    {"OverflowingSize",
     "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nmax_object_size = \"99999999999999999T\"\n",
     nullptr, "rule #1"},
    {"NegativeSize", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nmax_object_size = -5\n", nullptr,
     "rule #1"},
    {"NegativeSizeString", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nmax_object_size = \"-5\"\n",
     nullptr, "rule #1"},
    {"FallthroughOn200", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nfallthrough_on = [200]\n",
     nullptr, "rule #1"},
    {"BadVerify", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nverify = \"sha1\"\n", nullptr,
     "rule #1"},
    {"MissingCaFile",
     "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nca_file = \"/nonexistent/ca.pem\"\n", nullptr,
     "rule #1"},
    {"ZeroMaxConcurrent", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nmax_concurrent = 0\n", nullptr,
     "rule #1"},
    // -o values
    {"NoRules", "", "log_level=debug", "rules"},
    {"RulesFileMissing", nullptr, "rules=/nonexistent/rules.toml", "/nonexistent/rules.toml"},
    {"RulesFileIsADirectory", nullptr, "rules=/tmp", "/tmp"},
    {"RulesAndOrigin", nullptr, "rules=%r,origin=http://127.0.0.1:1", "origin"},
    {"EmptyRules", nullptr, "rules=", "rules"},
    {"OriginGopher", nullptr, "origin=gopher://127.0.0.1", "gopher://"},
    {"OriginNoHostOption", nullptr, "origin=http://", "origin"},
    {"NegativeTtl", nullptr, "rules=%r,negative_ttl=-1", "negative_ttl"},
    {"TtlNotANumber", nullptr, "rules=%r,negative_ttl=ten", "negative_ttl"},
    {"EntryTimeoutNegative", nullptr, "rules=%r,entry_timeout=-1", "entry_timeout"},
    {"EntryTimeoutNan", nullptr, "rules=%r,entry_timeout=nan", "entry_timeout"},
    {"AttrTimeoutInf", nullptr, "rules=%r,attr_timeout=inf", "attr_timeout"},
    {"ConnectTimeoutNan", nullptr, "rules=%r,connect_timeout=nan", "connect_timeout"},
    {"ConnectTimeoutText", nullptr, "rules=%r,connect_timeout=soon", "connect_timeout"},
    {"SizeUnit", nullptr, "rules=%r,max_object_size=10Q", "max_object_size"},
    {"SizeOverflow", nullptr, "rules=%r,max_object_size=99999999999999999999", "max_object_size"},
    {"SizeOverflowUnit", nullptr, "rules=%r,max_object_size=99999999999T", "max_object_size"},
    {"SizeEmpty", nullptr, "rules=%r,max_object_size=", "max_object_size"},
    {"DownloadThreadsZero", nullptr, "rules=%r,download_threads=0", "download_threads"},
    {"DownloadThreadsHuge", nullptr, "rules=%r,download_threads=1000000", "download_threads"},
    {"MaxThreadsZero", nullptr, "rules=%r,max_threads=0", "max_threads"},
    {"LowSpeedTimeZero", nullptr, "rules=%r,low_speed_time=0", "low_speed_time"},
    {"RetriesNegative", nullptr, "rules=%r,retries=-1", "retries"},
    {"RetriesHuge", nullptr, "rules=%r,retries=1000", "retries"},
    {"MaxRedirectsNegative", nullptr, "rules=%r,max_redirects=-1", "max_redirects"},
    {"LogLevel", nullptr, "rules=%r,log_level=loud", "log_level"},
    {"LogFileUnderAFile", nullptr, "rules=%r,log_file=/etc/hostname/originfs.log", "/etc/hostname"},
    {"UidNegative", nullptr, "rules=%r,uid=-1", "uid"},
    {"GidText", nullptr, "rules=%r,gid=wheel", "gid"},
    {"UmaskNotOctal", nullptr, "rules=%r,umask=999", "umask"},
    {"FsyncMaybe", nullptr, "rules=%r,fsync=maybe", "fsync"},
    {"MetricsIntervalTiny", nullptr, "rules=%r,metrics_interval=0.001", "metrics_interval"},
    {"StateDirUnderAFile", nullptr, "rules=%r,state_dir=/etc/hostname/state", "state_dir"},
    {"UnknownFuseOption", nullptr, "rules=%r,no_such_option_at_all", "FUSE"},
};

INSTANTIATE_TEST_SUITE_P(Config, BadConfigTest, ::testing::ValuesIn(kBadConfigs),
                         [](const ::testing::TestParamInfo<BadConfig>& info) {
                           return info.param.name;
                         });

TEST_F(SecurityTest, BadCommandLinesAreRefused) {
  std::string rules = root_ + "/ok.toml";
  ASSERT_EQ(WriteAll(rules, "[[rule]]\nprefix = \"\"\norigin = \"" + origin_.url() + "\"\n"), 0);
  ASSERT_EQ(WriteAll(root_ + "/a-file", "x"), 0);
  std::vector<std::vector<std::string>> cases = {
      {ORIGINFS_BINARY},
      {ORIGINFS_BINARY, bucket_},
      {ORIGINFS_BINARY, bucket_, mnt_, "extra", "-o", "rules=" + rules},
      {ORIGINFS_BINARY, bucket_, mnt_, "-o"},
      {ORIGINFS_BINARY, bucket_, mnt_, "-o", "rules=" + rules, "--no-such-flag"},
      {ORIGINFS_BINARY, root_ + "/missing", mnt_, "-o", "rules=" + rules, "-f"},
      {ORIGINFS_BINARY, bucket_, root_ + "/missing", "-o", "rules=" + rules, "-f"},
      {ORIGINFS_BINARY, root_ + "/a-file", mnt_, "-o", "rules=" + rules, "-f"},
      {ORIGINFS_BINARY, bucket_, root_ + "/a-file", "-o", "rules=" + rules, "-f"},
      {ORIGINFS_BINARY, "check"},
      {ORIGINFS_BINARY, "check", root_ + "/missing.toml"},
      {ORIGINFS_BINARY, "reload", root_ + "/not-a-mount"},
      {ORIGINFS_BINARY, "stats", root_ + "/not-a-mount"},
  };
  for (const auto& argv : cases) {
    std::string shown;
    for (const auto& a : argv) shown += a + " ";
    SCOPED_TRACE(shown);
    auto r = RunCommand(argv, 10s);
    EXPECT_FALSE(r.timed_out);
    EXPECT_EQ(r.term_signal, 0) << r.err;
    EXPECT_GT(r.exit_code, 0);
    EXPECT_FALSE(r.err.empty()) << "no message";
    EXPECT_FALSE(IsMounted(mnt_));
    if (IsMounted(mnt_)) RunCommand({"fusermount3", "-u", mnt_}, 10s);
  }
}

}  // namespace
}  // namespace originfs::e2e

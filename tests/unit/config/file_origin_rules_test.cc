// Rules whose origin is a file server: the schemes, and where the login and
// keys come from (files only their owner may read).
#include <sys/stat.h>

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/config/rules.h"
#include "tests/support/temp_dir.h"

namespace originfs {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(FileOriginRulesTest, FtpFtpsAndSftpOriginsAreRules) {
  auto set = RuleSet::Parse(
      "[[rule]]\nprefix = \"a/\"\norigin = \"ftp://127.0.0.1:2121/pub/\"\n"
      "[[rule]]\nprefix = \"b/\"\norigin = \"ftps://files.example.com/base\"\nca_file = "
      "\"/dev/null\"\n"
      "[[rule]]\norigin = \"sftp://127.0.0.1:2222/srv/data\"\ninsecure = true\n",
      "t");
  ASSERT_TRUE(set.has_value()) << set.error().message;
  EXPECT_EQ(set->rules()[0].origin, "ftp://127.0.0.1:2121/pub");
  EXPECT_EQ(set->rules()[2].origin, "sftp://127.0.0.1:2222/srv/data");
  auto bad = RuleSet::Parse("[[rule]]\norigin = \"gopher://h/\"\n", "t");
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().message, HasSubstr("sftp://"));
  // A password in the URL would end up in logs: refused.
  auto pass = RuleSet::Parse("[[rule]]\norigin = \"ftp://u:s3cret@h/\"\n", "t");
  ASSERT_FALSE(pass.has_value());
  EXPECT_THAT(pass.error().message, HasSubstr("credentials_file"));
  EXPECT_THAT(pass.error().message, Not(HasSubstr("s3cret")));
  // A user alone may be named (key logins).
  EXPECT_TRUE(RuleSet::Parse("[[rule]]\norigin = \"sftp://migrator@h/srv\"\n", "t").has_value());
  EXPECT_FALSE(RuleSet::Parse("[[rule]]\norigin = \"http://u@h/\"\n", "t").has_value());
  auto mixed = RuleSet::Parse("[[rule]]\norigins = [\"ftp://a/\", \"http://b/\"]\n", "t");
  ASSERT_FALSE(mixed.has_value());
  EXPECT_THAT(mixed.error().message, HasSubstr("file servers"));
}

TEST(FileOriginRulesTest, TheLoginComesFromAFileOthersMayNotRead) {
  testing::TempDir dir;
  std::string creds = dir.Join("ftp.cred");
  testing::WriteFile(creds,
                     "# the old NAS\nuser = migrator\npassword = p4ss w0rd\n\n[other]\n"
                     "user = someone\npassword = else\n");
  ASSERT_EQ(chmod(creds.c_str(), 0600), 0);
  std::string rules =
      "[[rule]]\norigin = \"ftp://127.0.0.1:21/\"\ncredentials_file = \"" + creds + "\"\n";
  auto set = RuleSet::Parse(rules, "t");
  ASSERT_TRUE(set.has_value()) << set.error().message;
  ASSERT_TRUE(set->rules()[0].login.has_value());
  EXPECT_EQ(set->rules()[0].login->user, "migrator");
  EXPECT_EQ(set->rules()[0].login->password, "p4ss w0rd");
  std::string shown = set->Format();
  EXPECT_THAT(shown, HasSubstr("login=" + creds));
  EXPECT_THAT(shown, Not(HasSubstr("p4ss"))) << "a secret was shown";

  auto other = RuleSet::Parse(rules + "profile = \"other\"\n", "t");
  ASSERT_TRUE(other.has_value()) << other.error().message;
  EXPECT_EQ(other->rules()[0].login->user, "someone");

  ASSERT_EQ(chmod(creds.c_str(), 0640), 0);
  auto open = RuleSet::Parse(rules, "t");
  ASSERT_FALSE(open.has_value());
  EXPECT_EQ(open.error().code, EACCES);
  EXPECT_THAT(open.error().message, HasSubstr("chmod 600"));
  EXPECT_THAT(open.error().message, Not(HasSubstr("p4ss")));
}

TEST(FileOriginRulesTest, SshKeysGoWithSftpAndArePrivate) {
  testing::TempDir dir;
  std::string key = dir.Join("id_ed25519"), hosts = dir.Join("known_hosts");
  testing::WriteFile(key, "not checked here\n");
  testing::WriteFile(hosts, "");
  ASSERT_EQ(chmod(key.c_str(), 0600), 0);
  std::string sftp = "[[rule]]\norigin = \"sftp://127.0.0.1/srv\"\nssh_key = \"" + key +
                     "\"\nknown_hosts = \"" + hosts + "\"\n";
  auto set = RuleSet::Parse(sftp, "t");
  ASSERT_TRUE(set.has_value()) << set.error().message;
  EXPECT_EQ(set->rules()[0].ssh_key, key);
  EXPECT_EQ(set->rules()[0].known_hosts, hosts);
  auto ftp =
      RuleSet::Parse("[[rule]]\norigin = \"ftp://127.0.0.1/\"\nssh_key = \"" + key + "\"\n", "t");
  ASSERT_FALSE(ftp.has_value());
  EXPECT_THAT(ftp.error().message, HasSubstr("sftp"));
  auto http =
      RuleSet::Parse("[[rule]]\norigin = \"http://127.0.0.1/\"\nnetrc = \"" + key + "\"\n", "t");
  ASSERT_FALSE(http.has_value());
  ASSERT_EQ(chmod(key.c_str(), 0644), 0);
  auto open = RuleSet::Parse(sftp, "t");
  ASSERT_FALSE(open.has_value());
  EXPECT_EQ(open.error().code, EACCES);
}

}  // namespace
}  // namespace originfs

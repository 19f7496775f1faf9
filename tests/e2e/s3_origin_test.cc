// type = "s3" rules against a real S3 implementation (moto_server on
// 127.0.0.1, started with signature checks on): signed GETs land the
// bucket's objects, a wrong secret is EIO (never ENOENT), single-part ETags
// are verified and multipart ones are not mistaken for MD5s. Skipped where
// moto_server or boto3 is missing.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/fmt/fmt.h>

#include <gtest/gtest.h>

#include "tests/support/rule_options_fixture.h"
#include "tests/support/web_server.h"

namespace originfs::e2e {
namespace {

// Creates an IAM user allowed everything on S3 and its key (the three calls
// moto lets through unsigned), then a bucket and its objects, signed with
// that key. Prints the key id and secret.
constexpr char kSetup[] = R"PY(
import sys, boto3
from botocore.config import Config
url = sys.argv[1]
anon = dict(endpoint_url=url, region_name="us-east-1",
            aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **anon)
iam.create_user(UserName="migrator")
iam.put_user_policy(UserName="migrator", PolicyName="all", PolicyDocument=
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}')
key = iam.create_access_key(UserName="migrator")["AccessKey"]
s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"],
                  aws_secret_access_key=key["SecretAccessKey"],
                  config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="oldsite")
s3.put_object(Bucket="oldsite", Key="index.html", Body=b"<h1>old site</h1>\n")
s3.put_object(Bucket="oldsite", Key="docs/guide.txt", Body=b"read me\n" * 1000)
part = b"p" * (5 * 1024 * 1024)
mp = s3.create_multipart_upload(Bucket="oldsite", Key="big.bin")
parts = []
for n in (1, 2):
    r = s3.upload_part(Bucket="oldsite", Key="big.bin", UploadId=mp["UploadId"], PartNumber=n, Body=part)
    parts.append({"ETag": r["ETag"], "PartNumber": n})
s3.complete_multipart_upload(Bucket="oldsite", Key="big.bin", UploadId=mp["UploadId"],
                             MultipartUpload={"Parts": parts})
print(key["AccessKeyId"])
print(key["SecretAccessKey"])
)PY";

// Mounts over moto_server; a test skips where moto_server or boto3 is missing.
class MotoTest : public RuleOptionsTest {
 protected:
  void StartMoto(int auth_after) {
    if (RunCommand({"python3", "-c", "import boto3"}, 30s).exit_code != 0)
      GTEST_SKIP() << "python3 boto3 is not installed";
    std::string work = root_ + "/moto";
    ASSERT_EQ(mkdir(work.c_str(), 0755), 0);
    moto_ = std::make_unique<testing::MotoServer>(work, auth_after);
    if (!moto_->error().empty()) GTEST_SKIP() << moto_->error();
  }

  void TearDown() override {
    RuleOptionsTest::TearDown();
    moto_.reset();
  }

  std::unique_ptr<testing::MotoServer> moto_;
};

class S3OriginTest : public MotoTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RuleOptionsTest::SetUp());
    StartMoto(/*auth_after=*/3);
    if (IsSkipped() || HasFatalFailure()) return;
    std::string script = root_ + "/setup.py";
    ASSERT_EQ(WriteAll(script, kSetup), 0);
    auto r = RunCommand({"python3", script, moto_->url()}, 120s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::size_t nl = r.out.find('\n');
    ASSERT_NE(nl, std::string::npos) << r.out;
    key_id_ = r.out.substr(0, nl);
    secret_ = r.out.substr(nl + 1, r.out.find('\n', nl + 1) - nl - 1);
    ASSERT_FALSE(secret_.empty()) << r.out;
  }

  // A credentials file (mode 0600) and a rule for the bucket, path style.
  std::string Rules(const std::string& secret, const std::string& extra = "") {
    std::string creds = root_ + "/credentials";
    EXPECT_EQ(WriteAll(creds,
                       "[default]\naws_access_key_id = " + key_id_ +
                           "\naws_secret_access_key = " + secret + "\n",
                       0600),
              0);
    chmod(creds.c_str(), 0600);
    return "[[rule]]\ntype = \"s3\"\norigin = \"" + moto_->url() +
           "\"\nbucket = \"oldsite\"\nregion = \"us-east-1\"\ncredentials_file = \"" + creds +
           "\"\ndirs = \"no-ext\"\n"
           // moto 5.2.1 refuses its own correct signature for ListObjectsV2
           // with a delimiter (boto3's too): listings are tested with checks off.
           "list = \"none\"\n" +
           extra;
  }

  std::string key_id_, secret_;
};

TEST_F(S3OriginTest, SignedGetsLandTheBucketsObjects) {
  ASSERT_NO_FATAL_FAILURE(MountToml(Rules(secret_)));
  ExpectServed("index.html", "<h1>old site</h1>\n");
  std::string guide;
  for (int i = 0; i < 1000; ++i) guide += "read me\n";
  ExpectServed("docs/guide.txt", guide);  // its ETag is its MD5: verified
  EXPECT_TRUE(Exists(B("docs/guide.txt")));
  // A multipart object's ETag ("...-2") is no MD5 of the body: not checked.
  auto big = ReadAll(M("big.bin"));
  EXPECT_EQ(big.err, 0) << big.stage << ": " << ErrnoName(big.err);
  EXPECT_EQ(big.data, std::string(10 * 1024 * 1024, 'p'));
  auto missing = ReadAll(M("nothing-here.txt"));
  EXPECT_EQ(missing.err, ENOENT) << "a 404 from S3 is not found";
}

TEST_F(S3OriginTest, WrongSecretIsEioAndLandsNothing) {
  ASSERT_NO_FATAL_FAILURE(MountToml(Rules(secret_ + "x")));
  ExpectEio("index.html");  // 403 SignatureDoesNotMatch
}

TEST_F(S3OriginTest, CheckNamesWhereTheKeysComeFromAndNeverShowsThem) {
  std::string rules = root_ + "/check.toml";
  ASSERT_EQ(WriteAll(rules, Rules(secret_), 0600), 0);
  auto r = Originfs({"check", rules});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("type=s3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(root_ + "/credentials [default]"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(secret_), std::string::npos) << "the secret was printed";
  EXPECT_EQ(r.err.find(secret_), std::string::npos) << "the secret was printed";
}

// Listings with moto's signature checks off (see above): a tree only in the
// bucket walks as the same tree copied locally, past ListObjectsV2's 1,000
// keys per page, names with spaces, '%', '+' and non-ASCII included.
constexpr char kTreeSetup[] = R"PY(
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="id", aws_secret_access_key="secret",
                  config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="tree")
for line in open(sys.argv[2], encoding="utf-8"):
    key, size = line.rstrip("\n").split("\t")
    s3.put_object(Bucket="tree", Key=key, Body=b"x" * int(size))
)PY";

class S3BucketListingTest : public MotoTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RuleOptionsTest::SetUp());
    StartMoto(/*auth_after=*/-1);
    if (IsSkipped() || HasFatalFailure()) return;
    keys_ = {{"readme.txt", 10},        {"docs/a.txt", 1},        {"docs/b c.txt", 2},
             {"docs/100%+plus.txt", 3}, {"docs/ünï côdé.txt", 4}, {"docs/deep/x/y.txt", 5}};
    for (int i = 0; i < 1100; ++i) keys_.emplace_back(fmt::format("many/f{:04d}.txt", i), i % 7);
    std::string list;
    for (auto& [k, n] : keys_) list += fmt::format("{}\t{}\n", k, n);
    ASSERT_EQ(WriteAll(root_ + "/keys.tsv", list), 0);
    ASSERT_EQ(WriteAll(root_ + "/tree.py", kTreeSetup), 0);
    auto r = RunCommand({"python3", root_ + "/tree.py", moto_->url(), root_ + "/keys.tsv"}, 240s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  std::string Rules() {
    std::string creds = root_ + "/credentials";
    EXPECT_EQ(
        WriteAll(creds, "[default]\naws_access_key_id = id\naws_secret_access_key = s\n", 0600), 0);
    return "[[rule]]\ntype = \"s3\"\norigin = \"" + moto_->url() +
           "/tree\"\ncredentials_file = \"" + creds + "\"\n";
  }

  std::vector<std::pair<std::string, int>> keys_;
};

TEST_F(S3BucketListingTest, ATreeOnlyInTheBucketWalksLikeItsLocalCopy) {
  ASSERT_NO_FATAL_FAILURE(MountToml(Rules()));
  // The same tree as plain files: find's view of both must be the same.
  for (auto& [k, n] : keys_) {
    std::string p = P(k);
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    ASSERT_EQ(WriteAll(p, std::string(static_cast<std::size_t>(n), 'x')), 0);
  }
  auto walk = [](const std::string& dir) {
    return RunCommand({"sh", "-c", "cd \"$0\" && find . -printf '%y %s %P\\n' | sort", dir}, 120s);
  };
  auto want = walk(plain_);
  ASSERT_EQ(want.exit_code, 0) << want.err;
  long before = Counter("requests");
  auto got = walk(mnt_);
  ASSERT_EQ(got.exit_code, 0) << got.err;
  // Directory sizes differ between filesystems; compare types, file sizes, names.
  auto files_only = [](const std::string& s) {
    std::vector<std::string> lines;
    std::istringstream in(s);
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("d ")) line = "d " + line.substr(line.find(' ', 2) + 1);
      lines.push_back(line);
    }
    std::sort(lines.begin(), lines.end());
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  };
  EXPECT_EQ(files_only(got.out), files_only(want.out));
  // One listing per directory (2 pages for many/), no GET of any file: sizes
  // come from the listings.
  long requests = Counter("requests") - before;
  EXPECT_LE(requests, 8) << "expected one ListObjectsV2 per directory page";
  EXPECT_EQ(Counter("fetches"), 0);
  // A name the listing lacks is ENOENT without a request.
  before = Counter("requests");
  struct stat st;
  EXPECT_NE(lstat(M("docs/not-there.txt").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(Counter("requests"), before);
  // The bytes are right, and the mount stays writable inside listed directories.
  ExpectServed("docs/ünï côdé.txt", "xxxx");
  ExpectServed("docs/100%+plus.txt", "xxx");
  ASSERT_EQ(WriteAll(M("docs/deep/new.txt"), "local"), 0);
  ASSERT_EQ(mkdir(M("docs/deep/newdir").c_str(), 0755), 0);
  EXPECT_TRUE(Exists(B("docs/deep/new.txt")));
}

}  // namespace
}  // namespace originfs::e2e

namespace originfs::e2e {
namespace {

// S3 objects encrypted with a KMS key or a customer's key have ETags that
// are no MD5 of the body: type = "s3" checks an ETag only where it is one.
// moto keeps MD5 ETags even with SSE headers, so the test origin plays S3.
class S3EncryptionTest : public MountTest {};

TEST_F(S3EncryptionTest, KmsAndCustomerKeyObjectsAreNotCheckedAgainstTheirEtag) {
  const std::string not_md5 = "\"0123456789abcdef0123456789abcdef\"";
  auto object = [&](std::map<std::string, std::string> headers) {
    testing::Behavior b;
    b.body = "encrypted at rest\n";
    headers["ETag"] = not_md5;
    b.headers = std::move(headers);
    return b;
  };
  origin_.Set("/bkt/kms.txt", object({{"x-amz-server-side-encryption", "aws:kms"}}));
  origin_.Set("/bkt/dsse.txt", object({{"x-amz-server-side-encryption", "aws:kms:dsse"}}));
  origin_.Set("/bkt/ssec.txt",
              object({{"x-amz-server-side-encryption-customer-algorithm", "AES256"}}));
  // SSE-S3 (AES256) ETags are the MD5 still, and so is a plain object's.
  origin_.Set("/bkt/sse-s3.txt", object({{"x-amz-server-side-encryption", "AES256"}}));
  origin_.Set("/bkt/plain.txt", object({}));
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "",
                      "type = \"s3\"\nbucket = \"bkt\"\nregion = \"us-east-1\"\nlist = \"none\""}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  for (const char* name : {"kms.txt", "dsse.txt", "ssec.txt"})
    EXPECT_EQ(ReadAll(M(name)).data, "encrypted at rest\n") << name;
  for (const char* name : {"sse-s3.txt", "plain.txt"}) {
    EXPECT_EQ(ReadAll(M(name)).err, EIO) << name << ": its ETag is not its MD5";
    struct stat st;
    EXPECT_NE(lstat(B(name).c_str(), &st), 0) << name << " landed";
  }
}

}  // namespace
}  // namespace originfs::e2e

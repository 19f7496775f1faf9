// apt and git read a repository through a legacy web server whose root is
// the mount, while the repository is updated at the origin: with the index
// files revalidated at every open (revalidate = "0s" by suffix rules), they
// see the new generation whole, never an index of one beside files of
// another.
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"
#include "tests/support/web_server.h"

namespace originfs::e2e {
namespace {

using testing::WebServer;
using testing::WebServerKind;

class MigrationProgramsTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    ASSERT_EQ(chmod(root_.c_str(), 0755), 0);  // nginx's workers read as another user
    tree_ = root_ + "/tree";
    work_ = root_ + "/work";
    for (const std::string& d : {tree_, work_, work_ + "/origin", work_ + "/front"})
      ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
    origin_server_ = std::make_unique<WebServer>(WebServerKind::kNginx, tree_, work_ + "/origin");
    if (!origin_server_->error().empty()) GTEST_SKIP() << origin_server_->error();
  }
  void TearDown() override {
    front_.reset();
    MountTest::TearDown();
    origin_server_.reset();
  }
  // The mount, with suffix rules that revalidate the index files at every
  // open, and a second nginx serving it (the legacy web server).
  void MountAndServe(const std::vector<std::string>& index_suffixes) {
    DaemonOptions o;
    for (const std::string& s : index_suffixes)
      o.rules.push_back(RuleSpec{"", origin_server_->url(), std::nullopt, "",
                                 "suffix = \"" + s + "\"\nrevalidate = \"0s\""});
    o.rules.push_back(RuleSpec{"", origin_server_->url()});
    o.extra_opts = {"allow_other"};  // nginx's workers
    ASSERT_NO_FATAL_FAILURE(Mount(o));
    front_ = std::make_unique<WebServer>(WebServerKind::kNginx, mnt_, work_ + "/front");
    ASSERT_TRUE(front_->error().empty()) << front_->error();
  }
  CommandResult Sh(const std::string& script, std::chrono::seconds limit = 120s) {
    return RunCommand({"bash", "-c", "set -e; " + script}, limit);
  }

  std::string tree_, work_;
  std::unique_ptr<WebServer> origin_server_, front_;
};

// A flat apt repository (Packages, Packages.gz, Release with SHA256 sums),
// made by dpkg-scanpackages; MAKE_REPO builds it from the .debs in it.
const char* const kMakeRepo = R"(
make_deb() {  # name version dir
  local p=$(mktemp -d); mkdir -p $p/DEBIAN $p/usr/share/$1
  printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: t <t@e>\nDescription: t\n' $1 $2 > $p/DEBIAN/control
  echo "$1 $2" > $p/usr/share/$1/v; dpkg-deb -b $p $3/$1_$2_all.deb > /dev/null; rm -rf $p
}
index_repo() {  # dir, date of the generation
  cd $1; dpkg-scanpackages -m . /dev/null > Packages 2> /dev/null; gzip -kf Packages
  { echo 'Suite: ./'; echo "Date: $2"; echo 'SHA256:'
    for f in Packages Packages.gz; do echo " $(sha256sum $f | cut -d' ' -f1) $(stat -c %s $f) $f"; done; } > Release
  touch -d "$2" Packages Packages.gz Release; chmod -R a+rX .; cd - > /dev/null
}
)";

TEST_F(MigrationProgramsTest, AptSeesOneGenerationOfARepositoryUpdatedAtTheOrigin) {
  if (testing::FindInPath("apt-get").empty() || testing::FindInPath("dpkg-scanpackages").empty())
    GTEST_SKIP() << "apt-get or dpkg-scanpackages is not installed";
  std::string repo = tree_ + "/repo";
  auto made =
      Sh(std::string(kMakeRepo) + "mkdir -p " + repo + "; make_deb originfs-hello 1.0 " + repo +
         "; make_deb originfs-old 1.0 " + repo + "; index_repo " + repo + " '2026-01-01 00:00:00'");
  ASSERT_EQ(made.exit_code, 0) << made.err;
  ASSERT_NO_FATAL_FAILURE(MountAndServe({"Release", "Packages", "Packages.gz"}));
  std::string c = work_ + "/client";
  std::string apt =
      " -o Dir::Etc::SourceList=" + c + "/sources.list -o Dir::Etc::SourceParts=/dev/null" +
      " -o Dir::State=" + c + "/state -o Dir::Cache=" + c + "/cache -o Dir::State::status=" + c +
      "/status -o APT::Sandbox::User=root -o Debug::NoLocking=1 -o Acquire::Languages=none" +
      " -o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false";
  auto setup = Sh("mkdir -p " + c + "/state/lists/partial " + c +
                  "/cache/archives/partial; touch " + c + "/status; echo 'deb [trusted=yes] " +
                  front_->url() + "/repo ./' > " + c + "/sources.list");
  ASSERT_EQ(setup.exit_code, 0) << setup.err;
  auto update = Sh("apt-get" + apt + " update 2>&1");
  ASSERT_EQ(update.exit_code, 0) << update.out;
  auto policy = Sh("apt-cache" + apt + " policy originfs-hello originfs-old");
  EXPECT_NE(policy.out.find("Candidate: 1.0"), std::string::npos) << policy.out;
  auto get = Sh("cd " + c + " && apt-get" + apt + " download originfs-old 2>&1");
  EXPECT_EQ(get.exit_code, 0) << get.out;

  // The repository's next generation: a new version, an old package gone.
  auto next = Sh(std::string(kMakeRepo) + "make_deb originfs-hello 2.0 " + repo + "; rm " + repo +
                 "/originfs-old_1.0_all.deb; index_repo " + repo + " '2026-01-02 00:00:00'");
  ASSERT_EQ(next.exit_code, 0) << next.err;
  update = Sh("apt-get" + apt + " update 2>&1");
  EXPECT_EQ(update.exit_code, 0) << update.out;
  EXPECT_EQ(update.out.find("unexpected size"), std::string::npos) << update.out;
  EXPECT_EQ(update.out.find("Hash Sum mismatch"), std::string::npos) << update.out;
  policy = Sh("apt-cache" + apt + " policy originfs-hello originfs-old");
  EXPECT_NE(policy.out.find("Candidate: 2.0"), std::string::npos) << policy.out;
  EXPECT_EQ(policy.out.find("originfs-old:\n  Installed: (none)\n  Candidate: 1.0"),
            std::string::npos)
      << policy.out;
  get = Sh("cd " + c + " && apt-get" + apt + " download originfs-hello 2>&1 && ls");
  EXPECT_EQ(get.exit_code, 0) << get.out;
  EXPECT_NE(get.out.find("originfs-hello_2.0_all.deb"), std::string::npos) << get.out;
}

TEST_F(MigrationProgramsTest, GitOverDumbHttpFollowsARepackAtTheOrigin) {
  std::string bare = tree_ + "/repo.git", w = work_ + "/w";
  auto commit = [&](int from, int to) {
    std::string s = "cd " + w + "; for i in $(seq " + std::to_string(from) + " " +
                    std::to_string(to) +
                    "); do echo $i > f$i; git add f$i; "
                    "git -c user.email=t@e -c user.name=t commit -qm c$i; done; "
                    "git push -q origin HEAD:main; cd " +
                    bare + "; git update-server-info; chmod -R a+rX " + bare;
    return Sh(s);
  };
  auto made =
      Sh("git init -q --bare " + bare + "; git -C " + bare +
         " symbolic-ref HEAD refs/heads/main; git clone -q " + bare + " " + w + " 2> /dev/null");
  ASSERT_EQ(made.exit_code, 0) << made.err;
  ASSERT_EQ(commit(1, 3).exit_code, 0);
  ASSERT_NO_FATAL_FAILURE(MountAndServe({"info/refs", "objects/info/packs"}));
  std::string url = front_->url() + "/repo.git";
  auto clone = Sh("git clone -q " + url + " " + work_ + "/c1 && git -C " + work_ +
                  "/c1 log --format=%s | head -1");
  ASSERT_EQ(clone.exit_code, 0) << clone.err;
  EXPECT_EQ(clone.out, "c3\n");
  // At the origin: more commits, then every object packed, loose ones gone.
  ASSERT_EQ(commit(4, 6).exit_code, 0);
  auto repack = Sh("cd " + bare +
                   "; git repack -q -a -d; git prune-packed; git update-server-info;"
                   " chmod -R a+rX " +
                   bare);
  ASSERT_EQ(repack.exit_code, 0) << repack.err;
  auto pull = Sh("git -C " + work_ + "/c1 pull -q origin main 2>&1 && git -C " + work_ +
                 "/c1 log --format=%s | head -1");
  EXPECT_EQ(pull.exit_code, 0) << pull.out << pull.err;
  EXPECT_EQ(pull.out, "c6\n");
  auto fresh = Sh("git clone -q " + url + " " + work_ + "/c2 2>&1 && git -C " + work_ +
                  "/c2 fsck --full 2>&1 && git -C " + work_ + "/c2 log --format=%s | head -1");
  EXPECT_EQ(fresh.exit_code, 0) << fresh.out << fresh.err;
  EXPECT_NE(fresh.out.find("c6\n"), std::string::npos) << fresh.out;
}

}  // namespace
}  // namespace originfs::e2e

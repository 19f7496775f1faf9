// FUSE over io_uring through real mounts (-o io_uring, issue 15). The
// kernel offers it only with /sys/module/fuse/parameters/enable_uring set:
// the test sets it and puts back what it found. One test, so no other test
// of this binary changes the parameter meanwhile.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

constexpr const char* kParam = "/sys/module/fuse/parameters/enable_uring";

std::string ReadParam() {
  std::ifstream in(kParam);
  std::string v;
  in >> v;
  return v;
}

bool WriteParam(const std::string& v) {
  std::ofstream out(kParam);
  out << v;
  out.close();
  return !out.fail();
}

class IoUringTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    saved_ = ReadParam();
    if (saved_.empty()) GTEST_SKIP() << "kernel without FUSE over io_uring (" << kParam << ")";
  }
  void TearDown() override {
    if (!saved_.empty()) {
      EXPECT_TRUE(WriteParam(saved_ == "Y" ? "1" : "0")) << "restoring " << kParam;
    }
    MountTest::TearDown();
  }

  // A workload of many request kinds, checked against what it must leave.
  void Workload(const std::string& tag) {
    const std::string big = PatternBytes(3 << 20, 11);
    origin_.SetFile("/" + tag + "-big.bin", big);
    origin_.SetFile("/" + tag + "-small.txt", "small from the origin\n");
    auto r = ReadAll(M(tag + "-big.bin"));
    ASSERT_TRUE(r.data == big) << r.stage << ": " << ErrnoName(r.err) << ", " << r.data.size()
                               << " bytes\n"
                               << mount_->Log();
    ASSERT_EQ(ReadAll(M(tag + "-small.txt")).data, "small from the origin\n");
    ASSERT_TRUE(EventuallyExists(B(tag + "-big.bin")));
    ASSERT_EQ(mkdir(M(tag + "-made").c_str(), 0755), 0);
    const std::string written = PatternBytes(2 << 20, 12);  // writes up to max_write
    ASSERT_EQ(WriteAll(M(tag + "-made/w.bin"), written), 0);
    EXPECT_TRUE(ReadAll(B(tag + "-made/w.bin")).data == written);
    EXPECT_TRUE(ReadAll(M(tag + "-made/w.bin")).data == written);
    for (int i = 0; i < 200; ++i)
      ASSERT_EQ(WriteAll(M(tag + "-made/f" + std::to_string(i)), std::to_string(i)), 0);
    EXPECT_EQ(ListDir(M(tag + "-made")).size(), 201u);
    ASSERT_EQ(rename(M(tag + "-made/f0").c_str(), M(tag + "-made/renamed").c_str()), 0);
    ASSERT_EQ(unlink(M(tag + "-made/f1").c_str()), 0);
    ASSERT_EQ(symlink("renamed", M(tag + "-made/link").c_str()), 0);
    EXPECT_EQ(ReadAll(M(tag + "-made/link")).data, "0");
    struct stat st;
    ASSERT_EQ(stat(M(tag + "-big.bin").c_str(), &st), 0);
    EXPECT_EQ(st.st_size, static_cast<off_t>(big.size()));
    EXPECT_EQ(ListDir(M(tag + "-made")), ListDir(B(tag + "-made")));
    EXPECT_NE(StatErr(M(tag + "-absent.txt")), 0);
  }

  std::string saved_;
};

TEST_F(IoUringTest, RequestsComeThroughRingsAndWithoutKernelSupportThroughDevFuse) {
  ASSERT_TRUE(WriteParam("1")) << "cannot set " << kParam;
  DaemonOptions o = Defaults();
  o.extra_opts.push_back("io_uring");
  o.extra_opts.push_back("passthrough=off");  // reads and writes as requests too
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_NO_FATAL_FAILURE(Workload("ring"));
  long served = Counter("uring_requests");
  EXPECT_GT(served, 400) << mount_->Log();
  EXPECT_NE(mount_->Log().find("FUSE over io_uring: requests arrive through"), std::string::npos)
      << mount_->Log();

  // Operations that wait for a download to land (here: renames of files
  // still arriving, more of them than there are ring threads) must not hold
  // the rings: local requests are answered meanwhile.
  {
    constexpr int kSlow = 6;  // more than the 2 ring threads per CPU
    std::vector<std::string> bodies;
    for (int i = 0; i < kSlow; ++i) {
      testing::Behavior b;
      b.body = PatternBytes(256 << 10, 40 + i);
      b.stall_ms = 3000;  // half the body, then a pause
      origin_.Set("/slow" + std::to_string(i) + ".bin", b);
      bodies.push_back(b.body);
      ASSERT_EQ(StatErr(M("slow" + std::to_string(i) + ".bin")), 0);  // the download starts
    }
    std::vector<std::future<int>> renames;
    for (int i = 0; i < kSlow; ++i) {
      std::string from = M("slow" + std::to_string(i) + ".bin"), to = from + ".moved";
      renames.push_back(std::async(std::launch::async, [from, to] {
        return rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
      }));
    }
    std::this_thread::sleep_for(300ms);  // the renames are waiting for their downloads
    auto t0 = std::chrono::steady_clock::now();
    // In another directory: the kernel itself holds the root's lock during
    // each rename there.
    ASSERT_EQ(WriteAll(M("ring-made/local.txt"), "answered"), 0);
    EXPECT_EQ(ReadAll(M("ring-made/local.txt")).data, "answered");
    EXPECT_FALSE(ListDir(M("ring-made")).empty());
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    // A liveness bound (the downloads stall for 3 s), not a speed target.
    EXPECT_LT(waited, 1500ms) << "local requests waited behind renames of files still arriving";
    for (int i = 0; i < kSlow; ++i) {
      ASSERT_EQ(renames[i].wait_for(30s), std::future_status::ready);
      EXPECT_EQ(renames[i].get(), 0);
      EXPECT_TRUE(ReadAll(B("slow" + std::to_string(i) + ".bin.moved")).data == bodies[i]);
    }
  }
  ASSERT_NO_FATAL_FAILURE(Unmount());

  // With passthrough as well (the default): opens through the rings.
  o.extra_opts.pop_back();
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_NO_FATAL_FAILURE(Workload("both"));
  EXPECT_GT(Counter("uring_requests"), 100);
  EXPECT_GT(Counter("passthrough_opens"), 0);
  ASSERT_NO_FATAL_FAILURE(Unmount());

  // Not offered: one line, and everything through /dev/fuse.
  ASSERT_TRUE(WriteParam("0"));
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_NO_FATAL_FAILURE(Workload("plain"));
  EXPECT_EQ(Counter("uring_requests"), 0);
  EXPECT_NE(mount_->Log().find("FUSE over io_uring unavailable"), std::string::npos)
      << mount_->Log();
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

// Listings asked of the origin (index pages for readdir, a manifest for
// lookups) ran on the ring threads: a slow origin held the rings, and with
// them every request of those CPUs, local files included.
TEST_F(IoUringTest, ListingsFromASlowOriginDoNotHoldTheRings) {
  ASSERT_TRUE(WriteParam("1")) << "cannot set " << kParam;
  constexpr int kSlow = 6;  // more than the 2 ring threads per CPU
  origin_.SetNginxDirectories(true);
  for (int i = 0; i < kSlow; ++i) {
    testing::Behavior page;
    page.body = "<html><head><title>Index of /d" + std::to_string(i) +
                "/</title></head><body><pre><a href=\"../\">../</a>\n<a href=\"f\">f</a>\n"
                "</pre></body></html>";
    page.content_type = "text/html";
    page.delay_ms = 3000;
    origin_.Set("/d" + std::to_string(i) + "/", page);
    origin_.SetFile("/d" + std::to_string(i) + "/f", "f");
  }
  testing::Behavior manifest;
  manifest.body = "m/a.txt\n";
  manifest.content_type = "text/plain";
  manifest.delay_ms = 3000;
  origin_.Set("/manifest.txt", manifest);
  ASSERT_EQ(WriteAll(B("local.txt"), "answered"), 0);
  DaemonOptions o;
  o.rules = {RuleSpec{"m/", origin_.url(), std::nullopt, "",
                      "manifest = \"" + origin_.url() + "/manifest.txt\""},
             RuleSpec{"", origin_.url(), std::nullopt, "", ""}};
  o.extra_opts = {"io_uring", "passthrough=off"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  for (int i = 0; i < kSlow; ++i) ASSERT_EQ(StatErr(M("d" + std::to_string(i))), 0);
  std::vector<std::future<std::size_t>> lists, lookups;
  for (int i = 0; i < kSlow; ++i) {
    lists.push_back(std::async(std::launch::async,
                               [this, i] { return ListDir(M("d" + std::to_string(i))).size(); }));
    lookups.push_back(std::async(std::launch::async, [this, i] {
      return static_cast<std::size_t>(StatErr(M("m/x" + std::to_string(i))));
    }));
  }
  std::this_thread::sleep_for(300ms);  // the listings are being asked for
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(ReadAll(M("local.txt")).data, "answered");
  EXPECT_EQ(StatErr(M("local.txt")), 0);
  auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  // A liveness bound (the origin answers after 3 s), not a speed target.
  EXPECT_LT(waited, 1500ms) << "a local file waited behind listings from the origin";
  for (auto& l : lists) {
    ASSERT_EQ(l.wait_for(30s), std::future_status::ready);
    EXPECT_EQ(l.get(), 1u);
  }
  for (auto& l : lookups) {
    ASSERT_EQ(l.wait_for(30s), std::future_status::ready);
    EXPECT_EQ(l.get(), static_cast<std::size_t>(ENOENT));
  }
  EXPECT_NE(Counter("uring_requests"), 0);
}

}  // namespace
}  // namespace originfs::e2e

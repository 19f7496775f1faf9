// The Mirror against a fake HttpClient (tests/support/fake_http_client.h),
// with a real BucketStore and a real LMDB index in a temporary directory. No
// network. Shared by the tests in tests/unit/mirror/.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/common/unique_fd.h"
#include "core/mirror/mirror.h"
#include "core/store/index.h"
#include "tests/support/fake_http_client.h"
#include "tests/support/flight_wait.h"
#include "tests/support/store_fixture.h"
#include "tests/support/temp_dir.h"

namespace originfs {

// Readable parameter values in test names and failure messages.
inline void PrintTo(FetchErrc e, std::ostream* os) { *os << ToString(e); }

namespace mirror_test {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Optional;

using testing::AwaitDone;
using testing::AwaitHead;
using testing::Canned;
using testing::FakeHttpClient;

constexpr char kTwoRules[] = R"(
[[rule]]
prefix = "a/"
origin = "http://o1/base"

[[rule]]
prefix = ""
origin = "http://o2"
)";

constexpr int64_t kMtime = 1445412480;  // Wed, 21 Oct 2015 07:28:00 GMT

class MirrorFakeTest : public testing::StoreTest {
 protected:
  void TearDown() override {
    mirror_.reset();
    StoreTest::TearDown();
  }

  void MakeMirror(std::string_view rules_toml, MirrorOptions options = DefaultOptions()) {
    auto rules = RuleSet::Parse(rules_toml, "test-rules");
    ASSERT_TRUE(rules.has_value()) << rules.error().message;
    mirror_ = std::make_unique<Mirror>(std::move(*rules), http_, *store_, *index_, options);
  }

  static MirrorOptions DefaultOptions() {
    MirrorOptions o;
    o.download_threads = 4;
    // The fake client's log is exact: no probe of a down origin within a test.
    o.probe_interval_ms = 3600 * 1000;
    return o;
  }

  std::optional<std::string> BucketFile(std::string_view key) const {
    return testing::ReadFile(bucket_ + "/" + std::string(key));
  }

  // Objects in the bucket, not counting originfs's own state.
  std::vector<std::string> BucketObjects() const {
    return testing::ListFilesRecursive(bucket_, BucketStore::kStateDirName);
  }

  std::vector<std::string> StagingLeftovers() const {
    return testing::ListDir(bucket_ + "/.originfs/staging");
  }

  bool Remembered404(std::string_view key) {
    auto r = index_->IsNotFound(key, time(nullptr));
    EXPECT_TRUE(r.has_value());
    return r && *r;
  }

  FakeHttpClient http_;
  std::unique_ptr<Mirror> mirror_;
};

}  // namespace mirror_test
}  // namespace originfs

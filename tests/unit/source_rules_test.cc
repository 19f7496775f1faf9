// Rules of the source tree that no compiler checks.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace originfs {
namespace {

// Every kernel notification is sent by the notifier (fs/notifier.cc): one
// sent from a request handler or a download thread can wait for a lock the
// kernel holds while it waits for us (a refresh racing rm deadlocked so).
TEST(SourceRulesTest, OnlyTheNotifierSendsKernelNotifications) {
  namespace fs = std::filesystem;
  int files = 0;
  for (const char* top : {"core", "fs"}) {
    for (const auto& e : fs::recursive_directory_iterator(fs::path(ORIGINFS_SOURCE_DIR) / top)) {
      if (!e.is_regular_file()) continue;
      std::string ext = e.path().extension();
      if (ext != ".cc" && ext != ".h") continue;
      ++files;
      std::ifstream in(e.path());
      std::stringstream ss;
      ss << in.rdbuf();
      std::string rel = fs::relative(e.path(), ORIGINFS_SOURCE_DIR).string();
      if (rel == "fs/notifier.cc") continue;
      EXPECT_EQ(ss.str().find("fuse_lowlevel_notify_"), std::string::npos)
          << rel << " sends a kernel notification itself: use the Notifier";
    }
  }
  EXPECT_GT(files, 50);
}

}  // namespace
}  // namespace originfs

// A key may hold any byte but '/' and NUL. Written raw into the log, a name
// with a newline forged whole log lines (and escape sequences reached the
// terminal of whoever tails it); every message is written escaped.
#include <sys/stat.h>

#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

class LogLinesTest : public MountTest {};

TEST_F(LogLinesTest, ANameWithANewlineCannotForgeALogLine) {
  origin_.SetFile("/real.txt", "r");
  ASSERT_NO_FATAL_FAILURE(Mount());  // log_level=debug: every lookup is logged
  const std::string forged = "x\nFORGED fetched key=evil\x1b[2J.txt";
  EXPECT_NE(StatErr(M(forged)), 0);
  ASSERT_EQ(ReadAll(M("real.txt")).data, "r");
  std::string log = mount_->Log();
  ASSERT_NE(log.find("FORGED"), std::string::npos) << "the name was not logged at all:\n" << log;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_FALSE(line.starts_with("FORGED")) << "a forged log line: " << line;
    EXPECT_EQ(line.find('\x1b'), std::string::npos) << "a raw escape sequence: " << line;
  }
  EXPECT_NE(log.find("x\\nFORGED"), std::string::npos) << "not escaped as \\n";
}

}  // namespace
}  // namespace originfs::e2e

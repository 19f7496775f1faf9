// Helpers shared by the test layers: temporary directories, whole-file
// reads and writes, and an open-descriptor count for leak checks.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace originfs::testing {

// A fresh directory under /tmp (mkdtemp), removed with everything below it
// on destruction. Symlinks inside are removed, never followed.
class TempDir {
 public:
  explicit TempDir(std::string_view tag = "originfs-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + rel.
  std::string Join(std::string_view rel) const;

 private:
  std::string path_;
};

// The whole content of a file, or nullopt if it cannot be opened.
std::optional<std::string> ReadFile(const std::string& path);
// Everything readable from fd starting at offset 0 (pread; the offset is not moved).
std::optional<std::string> ReadFd(int fd);
// Creates or truncates path with contents; aborts the test binary on failure.
void WriteFile(const std::string& path, std::string_view contents);
// Names in dir (without "." and ".."), sorted; empty if dir cannot be read.
std::vector<std::string> ListDir(const std::string& dir);
// Regular files below dir, as paths relative to dir, sorted. Skips "skip" (a
// top-level name) when given.
std::vector<std::string> ListFilesRecursive(const std::string& dir, std::string_view skip = {});
// Number of open descriptors of this process.
int CountOpenFds();
// Deterministic pseudo-random bytes (so a short body cannot match by accident).
std::string PatternBytes(std::size_t n, unsigned seed = 1);

}  // namespace originfs::testing

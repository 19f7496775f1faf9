#include <gtest/gtest.h>

#include <string>

#include "core/vfs/inode.h"

namespace originfs {
namespace {

TEST(HandleBytesTest, KeepsShortAndLongHandles) {
  HandleBytes h;
  EXPECT_TRUE(h.empty());
  const std::string ext4 = "\x01\x02\x03\x04\x05\x06\x07\x08";  // 8 bytes: inline
  h.assign(ext4.data(), ext4.size());
  EXPECT_EQ(std::string(h.data(), h.size()), ext4);
  std::string btrfs(20, '\0');  // 20 bytes: on the heap
  for (std::size_t i = 0; i < btrfs.size(); ++i) btrfs[i] = static_cast<char>(i * 7);
  h.assign(btrfs.data(), btrfs.size());
  EXPECT_EQ(std::string(h.data(), h.size()), btrfs);
  h.assign(ext4.data(), ext4.size());  // frees the heap copy (checked by ASan builds)
  EXPECT_EQ(std::string(h.data(), h.size()), ext4);
  h.clear();
  EXPECT_TRUE(h.empty());
  std::string too_long(MAX_HANDLE_SZ + 1, 'x');
  h.assign(too_long.data(), too_long.size());
  EXPECT_TRUE(h.empty());
}

}  // namespace
}  // namespace originfs

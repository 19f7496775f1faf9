#include "core/origin/ftp_listing.h"

#include <gtest/gtest.h>

namespace originfs {
namespace {

TEST(FtpListingTest, MlsdGivesExactSizesTimesAndTypes) {
  // proftpd 1.3.8's answer, CRLF line ends.
  auto e = ParseFtpListing(
      "modify=20241205183000;perm=adfr;size=1234;type=file;unique=FD01U2;UNIX.group=0;"
      "UNIX.mode=0644;UNIX.owner=0; b.txt\r\n"
      "modify=20241205183000;perm=flcdmpe;type=cdir;unique=FD01U1; .\r\n"
      "modify=20241205183000;perm=flcdmpe;type=pdir;unique=FD01U0; ..\r\n"
      "modify=20241101000000;perm=flcdmpe;type=dir;unique=FD01U3; sub dir\r\n"
      "modify=20241101000000;perm=adfr;size=9;type=OS.unix=slink:/etc/x; link\r\n");
  ASSERT_TRUE(e);
  ASSERT_EQ(e->size(), 3u);
  EXPECT_EQ((*e)[0].name, "b.txt");
  EXPECT_FALSE((*e)[0].is_dir);
  EXPECT_EQ((*e)[0].size, 1234u);
  EXPECT_EQ((*e)[0].mtime, 1733423400);  // 2024-12-05 18:30:00 UTC
  EXPECT_EQ((*e)[1].name, "link");
  EXPECT_TRUE((*e)[1].type_unknown);
  EXPECT_FALSE((*e)[1].size);
  EXPECT_EQ((*e)[2].name, "sub dir");
  EXPECT_TRUE((*e)[2].is_dir);
}

TEST(FtpListingTest, UnixListGivesSizesAndTypesButNoTimes) {
  // vsftpd's LIST, and what libcurl writes for an SFTP directory.
  auto e = ParseFtpListing(
      "total 12\n"
      "drwxr-xr-x    2 0        0            4096 Dec 05 18:30 dir\n"
      "-rw-r--r--    1 0        0            1234 Dec 05 18:30 a file.txt\n"
      "-rw-r--r--    1 ftp      ftp             0 Jan  1  2020 empty\n"
      "lrwxrwxrwx    1 0        0               5 Dec 05 18:30 ln -> a file.txt\n"
      "-rw-r--r--    1 owner      77 Dec 05 18:30 nogroup\n"
      "drwxr-xr-x    2 0        0            4096 Dec 05 18:30 .\n");
  ASSERT_TRUE(e);
  ASSERT_EQ(e->size(), 5u);
  EXPECT_EQ((*e)[0].name, "a file.txt");
  EXPECT_EQ((*e)[0].size, 1234u);
  EXPECT_FALSE((*e)[0].mtime);
  EXPECT_EQ((*e)[1].name, "dir");
  EXPECT_TRUE((*e)[1].is_dir);
  EXPECT_EQ((*e)[2].name, "empty");
  EXPECT_EQ((*e)[2].size, 0u);
  EXPECT_EQ((*e)[3].name, "ln");
  EXPECT_TRUE((*e)[3].type_unknown);
  EXPECT_EQ((*e)[4].name, "nogroup");
  EXPECT_EQ((*e)[4].size, 77u);
}

TEST(FtpListingTest, WindowsListing) {
  auto e = ParseFtpListing(
      "12-05-24  06:30PM       <DIR>          Program Files\r\n"
      "12-05-24  06:31PM                 1234 readme.txt\r\n");
  ASSERT_TRUE(e);
  ASSERT_EQ(e->size(), 2u);
  EXPECT_EQ((*e)[0].name, "Program Files");
  EXPECT_TRUE((*e)[0].is_dir);
  EXPECT_EQ((*e)[1].name, "readme.txt");
  EXPECT_EQ((*e)[1].size, 1234u);
}

TEST(FtpListingTest, AnEmptyDirectoryAndTextThatIsNoListing) {
  auto empty = ParseFtpListing("");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
  EXPECT_FALSE(ParseFtpListing("<html><body>hello</body></html>\n"));
  // A name with a slash cannot be one entry.
  auto e = ParseFtpListing("type=file;size=1; a/b\r\n");
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->empty());
}

TEST(FtpListingTest, IndexPagesOfFileServersAreToldByTheirType) {
  auto e = ParseIndexPage("-rw-r--r--    1 0 0 3 Dec 05 18:30 x\n", kFtpListListingType);
  ASSERT_TRUE(e);
  ASSERT_EQ(e->size(), 1u);
  EXPECT_EQ((*e)[0].name, "x");
  EXPECT_FALSE(ParseIndexPage("-rw-r--r--    1 0 0 3 Dec 05 18:30 x\n", "text/html"));
}

TEST(FtpListingTest, MlsdTimes) {
  EXPECT_EQ(ParseMlsdTime("19700101000001"), 1);
  EXPECT_EQ(ParseMlsdTime("20241205183000.123"), 1733423400);
  EXPECT_FALSE(ParseMlsdTime("2024120518300"));
  EXPECT_FALSE(ParseMlsdTime("20241305183000"));
}

}  // namespace
}  // namespace originfs

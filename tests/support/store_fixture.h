// A real bucket directory with its BucketStore and LMDB index in a temporary
// directory, for tests of the layers above the store (tests/unit/mirror,
// tests/unit/vfs). TearDown checks that no descriptor leaked; a subclass
// releases what it built on the store first, then calls it.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "core/store/bucket_store.h"
#include "core/store/index.h"
#include "tests/support/temp_dir.h"

namespace originfs::testing {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fds_before_ = CountOpenFds();
    bucket_ = tmp_.Join("bucket");
    ASSERT_EQ(mkdir(bucket_.c_str(), 0755), 0);
    auto store = BucketStore::Open(bucket_, StoreOptions{});
    ASSERT_TRUE(store.has_value()) << store.error().message;
    store_ = std::move(*store);
    auto index = OpenLmdbIndex(tmp_.Join("index"), IndexOptions{.map_size = 64ull << 20});
    ASSERT_TRUE(index.has_value()) << index.error().message;
    index_ = std::move(*index);
  }

  void TearDown() override {
    index_.reset();
    store_.reset();
    EXPECT_EQ(CountOpenFds(), fds_before_) << "descriptor leaked";
  }

  TempDir tmp_;
  std::string bucket_;
  std::unique_ptr<BucketStore> store_;
  std::unique_ptr<Index> index_;
  int fds_before_ = 0;
};

}  // namespace originfs::testing

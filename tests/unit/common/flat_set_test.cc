#include "core/common/flat_set.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <unordered_map>

namespace originfs {
namespace {

struct Item {
  uint64_t key = 0;
  uint64_t value = 0;
  explicit operator bool() const { return key != 0; }
};
struct ItemKey {
  uint64_t operator()(const Item& i) const { return i.key; }
};
// A poor hash on purpose: long probe runs that wrap around the array's end.
struct Clustering {
  std::size_t operator()(uint64_t k) const { return k % 7; }
};

template <typename H>
void CheckAgainstMap(uint64_t key_range, int ops, unsigned seed) {
  FlatSet<Item, ItemKey, H> set;
  std::unordered_map<uint64_t, uint64_t> ref;
  std::mt19937_64 rng(seed);
  for (int n = 0; n < ops; ++n) {
    uint64_t k = rng() % key_range + 1;
    switch (rng() % 3) {
      case 0: {
        auto [it, inserted] = set.insert(Item{k, uint64_t(n)});
        bool ref_inserted = ref.try_emplace(k, uint64_t(n)).second;
        ASSERT_EQ(inserted, ref_inserted) << k;
        ASSERT_EQ(it->value, ref.at(k));
        break;
      }
      case 1:
        ASSERT_EQ(set.erase(k), ref.erase(k) == 1) << k;
        break;
      default: {
        const Item* it = set.find(k);
        auto r = ref.find(k);
        ASSERT_EQ(it != nullptr, r != ref.end()) << k;
        if (it) {
          ASSERT_EQ(it->value, r->second);
        }
      }
    }
    ASSERT_EQ(set.size(), ref.size());
  }
  std::size_t seen = 0;
  set.for_each([&](Item& i) {
    ++seen;
    EXPECT_EQ(ref.at(i.key), i.value);
  });
  EXPECT_EQ(seen, ref.size());
  for (auto& [k, v] : ref) EXPECT_TRUE(set.contains(k)) << k;
}

TEST(FlatSetTest, AgreesWithUnorderedMap) { CheckAgainstMap<std::hash<uint64_t>>(5000, 200000, 1); }

TEST(FlatSetTest, AgreesWithUnorderedMapUnderCollisions) {
  // Every key hashes to one of 7 homes: deletions must shift whole runs back,
  // across the wrap-around, without losing an element.
  CheckAgainstMap<Clustering>(300, 50000, 2);
}

TEST(FlatSetTest, HoldsOwningPointersAndStaysCompact) {
  struct Node {
    uint64_t id;
  };
  struct NodeKey {
    uint64_t operator()(const std::shared_ptr<Node>& n) const { return n->id; }
  };
  FlatSet<std::shared_ptr<Node>, NodeKey, std::hash<uint64_t>> set;
  std::weak_ptr<Node> watched;
  for (uint64_t i = 1; i <= 100000; ++i) {
    auto n = std::make_shared<Node>(Node{i});
    if (i == 777) watched = n;
    set.insert(std::move(n));
  }
  EXPECT_EQ(set.size(), 100000u);
  // 16 bytes a slot at a load of at least 2/5.
  EXPECT_LE(set.memory_bytes(), 100000u * sizeof(std::shared_ptr<Node>) * 5 / 2);
  auto taken = set.take(777);
  ASSERT_TRUE(taken);
  EXPECT_EQ(taken->id, 777u);
  EXPECT_FALSE(set.contains(777));
  taken.reset();
  EXPECT_TRUE(watched.expired());  // the set kept no other reference
  EXPECT_FALSE(set.take(777));
}

}  // namespace
}  // namespace originfs

// Listings saved from real servers (tests/unit/data/listings) and a
// mutator for fuzzing the parsers with them.
#pragma once

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/origin/listing.h"

namespace originfs::testing {

inline std::string SavedPage(const std::string& name) {
  std::ifstream in(std::string(ORIGINFS_SOURCE_DIR) + "/tests/unit/data/listings/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Names with '/' after directories, in order.
inline std::vector<std::string> ListedNames(const std::vector<ListedEntry>& v) {
  std::vector<std::string> out;
  for (const auto& e : v) out.push_back(e.name + (e.is_dir ? "/" : ""));
  return out;
}

// page with 1-8 bytes replaced, inserted or runs removed, at random.
inline std::string Mutated(const std::string& page, std::mt19937& rng) {
  static const std::string kBytes("<>\"'/&;#%?.=a \n\0\xc3[]{}:,-D2", 27);
  std::string m = page;
  for (int k = 0, edits = 1 + static_cast<int>(rng() % 8); k < edits && !m.empty(); ++k) {
    std::size_t at = rng() % m.size();
    char c = kBytes[rng() % kBytes.size()];
    switch (rng() % 3) {
      case 0:
        m[at] = c;
        break;
      case 1:
        m.insert(at, 1, c);
        break;
      default:
        m.erase(at, 1 + rng() % 16);
    }
  }
  return m;
}

// What any parse of any input must give: usable names, each once, sorted.
inline void ExpectUsableSortedNames(const std::vector<ListedEntry>& r, const std::string& what) {
  for (std::size_t i = 0; i < r.size(); ++i) {
    EXPECT_TRUE(UsableName(r[i].name)) << what;
    if (i) {
      EXPECT_LT(r[i - 1].name, r[i].name) << what;
    }
  }
}

}  // namespace originfs::testing

// The differential fuzzer's world: a generated tree served by a TestOrigin
// (index pages, nginx-style directories, versioned shared files), the same
// tree on a plain reference directory, and which names came from the origin.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/differential/ops.h"
#include "tests/support/test_origin.h"

namespace originfs::difffuzz {

constexpr int kSharedFiles = 4;
constexpr int kVersions = 3;

struct Tree {
  std::map<std::string, std::string> files;  // "w0/a/x" -> body
  std::set<std::string> dirs;                // "w0", "w0/a", ... (seeded at the origin)
  // shared/vK: kVersions bodies each, replaced at the origin while the run goes on.
  std::vector<std::vector<std::string>> versions;
};

// The relative paths a worker's ops name (files and directories alike).
const std::vector<std::string>& Pool();

// The same tree for the same seed and worker count.
Tree MakeTree(std::uint64_t seed, int workers);

// Serves tree from origin: files, an index page per directory, directories
// as nginx shows them, shared files replaced every period_ms.
void Serve(const Tree& tree, testing::TestOrigin& origin, int period_ms);
// Writes the worker trees (not shared/) below dir.
void WriteReference(const Tree& tree, const std::string& dir);

// Is worker w's relative path a name the origin has (file or directory)?
bool Seeded(const Tree& tree, int w, const std::string& rel);
bool SeededDir(const Tree& tree, int w, const std::string& rel);

// Ops whose outcome differs from a plain directory's by design (rename(2)
// of an origin directory is EXDEV) are not run.
bool KnownDefect(const Tree& tree, int w, const Op& op);

}  // namespace originfs::difffuzz

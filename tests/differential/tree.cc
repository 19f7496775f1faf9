#include "tests/differential/tree.h"

#include <sys/stat.h>

#include <random>

#include "tests/support/temp_dir.h"

namespace originfs::difffuzz {
namespace {

std::string W(int w) { return "w" + std::to_string(w); }

std::string IndexPage(const std::string& dir, const std::set<std::string>& hrefs) {
  std::string page = "<html><head><title>Index of " + dir + "</title></head><body><h1>Index of " +
                     dir + "</h1><hr><pre><a href=\"../\">../</a>\n";
  for (const auto& h : hrefs) page += "<a href=\"" + h + "\">" + h + "</a>\n";
  return page + "</pre><hr></body></html>";
}

}  // namespace

const std::vector<std::string>& Pool() {
  static const std::vector<std::string> pool = {"x",     "y",     "z",   "big",   "a",
                                                "b",     "a/x",   "a/y", "a/big", "a/c",
                                                "a/c/x", "a/c/y", "b/x", "b/z",   "b/c"};
  return pool;
}

Tree MakeTree(std::uint64_t seed, int workers) {
  std::mt19937_64 rng(seed * 7919 + 17);
  Tree t;
  static const std::vector<std::string> files = {"x",     "y",     "z",     "big", "a/x", "a/y",
                                                 "a/big", "a/c/x", "a/c/y", "b/x", "b/z"};
  for (int w = 0; w < workers; ++w) {
    t.dirs.insert(W(w));
    for (const auto& f : files) {
      if (rng() % 2) continue;
      bool big = f.ends_with("big");
      std::size_t size = big ? (1u << 20) + rng() % (3u << 20) : rng() % 3 == 0 ? 0 : rng() % 30000;
      std::string path = W(w) + "/" + f;
      t.files[path] = Bytes(size, static_cast<std::uint32_t>(rng()));
      for (auto slash = path.rfind('/'); slash != std::string::npos && slash > 0;
           slash = path.rfind('/', slash - 1)) {
        t.dirs.insert(path.substr(0, slash));
        if (slash == 0) break;
      }
    }
  }
  t.dirs.insert("shared");
  for (int k = 0; k < kSharedFiles; ++k) {
    std::vector<std::string> v;
    std::size_t size = k == 0 ? (2u << 20) : 10000 + rng() % 400000;
    for (int i = 0; i < kVersions; ++i) v.push_back(Bytes(size, static_cast<std::uint32_t>(rng())));
    t.versions.push_back(std::move(v));
  }
  return t;
}

void Serve(const Tree& tree, testing::TestOrigin& origin, int period_ms) {
  origin.SetNginxDirectories(true);
  std::map<std::string, std::set<std::string>> children;  // "" is the root
  auto add = [&](const std::string& path, bool dir) {
    auto slash = path.rfind('/');
    std::string parent = slash == std::string::npos ? "" : path.substr(0, slash);
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    children[parent].insert(dir ? name + "/" : name);
  };
  for (const auto& d : tree.dirs) add(d, true);
  for (const auto& [path, body] : tree.files) {
    add(path, false);
    origin.SetFile("/" + path, body);
  }
  for (int k = 0; k < static_cast<int>(tree.versions.size()); ++k) {
    std::string path = "shared/v" + std::to_string(k);
    add(path, false);
    testing::Behavior b;
    for (int i = 0; i < static_cast<int>(tree.versions[k].size()); ++i)
      b.versions.push_back({std::make_shared<const std::string>(tree.versions[k][i]),
                            "\"v" + std::to_string(k) + "." + std::to_string(i) + "\""});
    b.version_period_ms = period_ms;
    b.body = tree.versions[k][0];
    origin.Set("/" + path, b);
  }
  for (const auto& d : tree.dirs) children.try_emplace(d);
  for (const auto& [dir, names] : children) {
    std::string url = dir.empty() ? "/" : "/" + dir + "/";
    testing::Behavior b;
    b.body = IndexPage(url, names);
    b.content_type = "text/html";
    origin.Set(url, b);
  }
}

void WriteReference(const Tree& tree, const std::string& dir) {
  for (const auto& d : tree.dirs) {
    if (d == "shared") continue;
    mkdir((dir + "/" + d).c_str(), 0755);  // parents come first: the set is sorted
  }
  for (const auto& [path, body] : tree.files) {
    testing::WriteFile(dir + "/" + path, body);
    chmod((dir + "/" + path).c_str(), 0644);
  }
}

bool Seeded(const Tree& tree, int w, const std::string& rel) {
  std::string path = W(w) + "/" + rel;
  return tree.files.contains(path) || tree.dirs.contains(path);
}

bool SeededDir(const Tree& tree, int w, const std::string& rel) {
  return tree.dirs.contains(W(w) + "/" + rel);
}

bool KnownDefect(const Tree& tree, int w, const Op& op) {
  // rename(2) of a directory the origin has is EXDEV (its origin part cannot
  // move with it; mv copies it instead), where a plain directory moves.
  return op.kind == Kind::kRename && SeededDir(tree, w, op.a);
}

}  // namespace originfs::difffuzz

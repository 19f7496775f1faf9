// libFuzzer target: the parsers of origins' listings (index pages, nginx
// JSON, manifests, S3 ListObjectsV2 pages) on arbitrary bytes. Whatever they accept must be a set
// of names that can each only be one entry of the directory: non-empty, no '/', no NUL, not "." or
// "..", sorted and unique. How to build and run: tests/fuzz/CMakeLists.txt.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/origin/listing.h"
#include "core/origin/s3_listing.h"

namespace {

void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

void CheckEntries(const std::vector<originfs::ListedEntry>& entries) {
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const std::string& n = entries[i].name;
    Require(!n.empty(), "empty name");
    Require(n.find('/') == std::string::npos, "name with '/'");
    Require(n.find('\0') == std::string::npos, "name with NUL");
    Require(n != "." && n != "..", "dot name");
    if (i > 0) Require(entries[i - 1].name < n, "names not sorted and unique");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // The first byte picks the content type the page claims.
  std::string_view type = size > 0 && data[0] % 2 ? "application/json" : "text/html";
  if (auto r = originfs::ParseIndexPage(in, type)) CheckEntries(*r);
  std::size_t bad = 0;
  if (auto t = originfs::ParseManifest(in, &bad)) {
    for (const auto& [dir, entries] : *t) {
      CheckEntries(entries);
      Require(!dir.ends_with('/') && !dir.starts_with('/'), "directory key with an edge '/'");
    }
  } else {
    Require(bad >= 1, "a refused manifest names no line");
  }
  // An S3 page's names (unsorted: files first, then prefixes) obey the same rules.
  if (auto p = originfs::ParseListObjectsV2(in, size > 1 && data[1] % 2 ? "d/" : "")) {
    for (const auto& e : p->entries) CheckEntries({e});
    Require(!p->truncated || !p->next_continuation.empty(), "truncated without a token");
  }
  return 0;
}

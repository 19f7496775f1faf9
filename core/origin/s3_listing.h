// S3's ListObjectsV2 (GET BUCKET?list-type=2&delimiter=/&prefix=DIR/): the
// request for one page of a directory and the parse of its XML answer into
// the directory's entries. Pure functions, no I/O; fuzzed with the other
// listing parsers.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/origin/listing.h"

namespace originfs {

// The URL of one page of the listing of the directory whose keys start with
// prefix ("" for the bucket's root, else ending in '/'), below bucket_url
// (path style "http://host/bucket" or virtual-hosted "https://bucket.host").
// continuation: the previous page's NextContinuationToken ("" for the first).
std::string ListObjectsUrl(std::string_view bucket_url, std::string_view prefix,
                           std::string_view continuation);

struct S3ListPage {
  std::vector<ListedEntry> entries;  // files (Contents) and directories (CommonPrefixes)
  bool truncated = false;
  std::string next_continuation;  // when truncated
};

// The entries of one ListObjectsV2 page for prefix: each Contents key below
// prefix with one more segment (exact size and LastModified) and each
// CommonPrefixes prefix with one more segment (a directory). Keys that are
// not usable names ("", ".", "..", a "/" left over, a NUL) are skipped; the
// "directory marker" object prefix itself is skipped. nullopt when the body
// is not a ListBucketResult.
std::optional<S3ListPage> ParseListObjectsV2(std::string_view xml, std::string_view prefix);

}  // namespace originfs

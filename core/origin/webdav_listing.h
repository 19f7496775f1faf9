// WebDAV (RFC 4918) directory listings: the PROPFIND request with Depth: 1
// for a collection and the parse of its 207 Multi-Status answer into the
// collection's entries, exact (sizes from getcontentlength, times from
// getlastmodified, directories from resourcetype/collection). Pure
// functions, no I/O; fuzzed with the other listing parsers.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/origin/listing.h"

namespace originfs {

// The body of the PROPFIND (Content-Type: application/xml; Depth: 1).
std::string_view PropfindBody();

// The entries of the collection at dir_path (the path of the request URL,
// as sent, ending in '/') from a multistatus document. A response's href
// (a path or an absolute URL, percent-encoded as the server likes) names an
// entry when, decoded, it is dir_path decoded plus one segment; the
// collection's own response and anything deeper are skipped, as are names
// that cannot be file names. Properties count only from a propstat whose
// status is 200. nullopt when the body is not a multistatus.
std::optional<std::vector<ListedEntry>> ParseMultistatus(std::string_view xml,
                                                         std::string_view dir_path);

}  // namespace originfs

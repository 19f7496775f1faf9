// JSON directory listings (listing.h): nginx's autoindex_format json and
// caddy's browse JSON. Internal to the origin layer.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "core/origin/listing.h"

namespace originfs::listing_internal {

// An array of {"name", "type", "size", "mtime"} (nginx) or {"name",
// "is_dir", "size", "mod_time"} (caddy) objects, sorted by name; nullopt for
// anything else.
std::optional<std::vector<ListedEntry>> ParseJson(std::string_view body);

}  // namespace originfs::listing_internal

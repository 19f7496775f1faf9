// The control protocol between a running mount and the `originfs` commands:
// extended attributes under user.originfs. on paths inside the mount. The
// daemon's side is core/vfs/control.cc, the commands' side fs/cli/.
//
//   on the mount root    read   <counter>        one counter (see Vfs::Counters), listed
//                        read   last_reload      "ok" or "error: ..." of the last reload
//                        write  reload           reloads the rules file (value ignored)
//                        read   origins          each origin that has been down: its state
//                        read   rule_stats       a line per rule: what it fetched
//   on a file            read   origin           the URL it came (or is coming) from, listed
//                        read   fetched_at       when it landed, ISO 8601 UTC, listed
//                        read   state            "remote" (not landed yet) or "local"
//                        read   landed_ns        when this mount landed it (ns since the epoch)
//                        write  refresh          "" or "force": fetch it again if it changed;
//                                                "revalidate": the same, of a landed file only
//   on a directory       write  refresh          ask the origin for its listing again
//                        write  restore          NAME: undo the removal of an origin name
//                        read   landed           "unchanged ETAG", "changed locally" or
//                                                "local file": the file against its landing
//   on a directory       read   listing.N        the origin's listing from entry N on, a
//                                                line per entry (migration.cc), then
//                                                "#more M" (read listing.M next), "#end",
//                                                or "#none" (the origin serves none);
//                                                listing.fresh: from 0, read anew
//   on either            read   refresh_result   the outcome of the last refresh of it
// Unlisted names are not shown by listxattr; every name is read-only unless
// marked write.
#pragma once

#include <string>
#include <string_view>

namespace originfs::control {

inline constexpr std::string_view kPrefix = "user.originfs.";
// The bucket's own marks on symlinks and devices (bucket_store.h): never
// shown, read or set through the mount.
inline constexpr std::string_view kBucketPrefix = "trusted.originfs.";

inline constexpr std::string_view kReload = "reload";
inline constexpr std::string_view kLastReload = "last_reload";
inline constexpr std::string_view kRefresh = "refresh";
inline constexpr std::string_view kRefreshForce = "force";  // value of kRefresh
// Value of kRefresh: a revalidation (refresh --recursive): a local file (never
// fetched) is no failure, and it counts as a revalidation.
inline constexpr std::string_view kRefreshRevalidate = "revalidate";
inline constexpr std::string_view kRefreshResult = "refresh_result";
inline constexpr std::string_view kRestore = "restore";
inline constexpr std::string_view kOrigin = "origin";
inline constexpr std::string_view kFetchedAt = "fetched_at";
inline constexpr std::string_view kState = "state";
inline constexpr std::string_view kStateRemote = "remote";
inline constexpr std::string_view kStateLocal = "local";
inline constexpr std::string_view kLandedNs = "landed_ns";
inline constexpr std::string_view kUptime = "uptime";  // counters the commands read
inline constexpr std::string_view kRules = "rules";
inline constexpr std::string_view kOrigins = "origins";  // on the root: each origin's state
inline constexpr std::string_view kLanded = "landed";
inline constexpr std::string_view kRuleStats = "rule_stats";  // on the root: a line per rule
inline constexpr std::string_view kListing = "listing.";      // + the first entry's number
inline constexpr std::string_view kListingFresh = "fresh";    // listing.fresh: entry 0, asked anew

// The full attribute name of one of the names above.
inline std::string Attr(std::string_view name) {
  std::string s(kPrefix);
  s += name;
  return s;
}

}  // namespace originfs::control

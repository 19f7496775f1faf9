// Whether the index can be trusted after a power cut or a crash, and what
// happens when it cannot: the checks made before it is opened, the markers
// it keeps in its directory, and the guard that turns a fault in its map
// into an error instead of a dead daemon.
//
//   kRunningMarker  made when the index is opened, removed when it is closed
//                   cleanly: found at start, the last run ended uncleanly.
//   kCorruptMarker  made when the running daemon found the index corrupt:
//                   found at start, the index is moved aside.
#pragma once

#include <csetjmp>
#include <string>
#include <string_view>

namespace originfs::index_health {

inline constexpr std::string_view kRunningMarker = "running";
inline constexpr std::string_view kCorruptMarker = "corrupt";

// Reads the two meta pages of dir/data.mdb and checks the newest (the one
// LMDB would use) against the file: the magic, a known page size, both
// trees' roots within the file. Empty when consistent (or when there is no
// data.mdb yet), else what is wrong. A meta page that names pages past the
// end of the file is what a power cut leaves when the meta page reached the
// disk before the pages it names. *past_end (if given): the last used page
// is past the end, which LMDB itself can leave (a page freed in the
// transaction that allocated it is never written), so the trees must be
// walked to tell (see lmdb_index.cc).
std::string CheckMeta(const std::string& dir, bool* past_end = nullptr);

// Makes dir/name (empty) durably; returns false on failure (errno set).
bool PutMarker(const std::string& dir, std::string_view name, std::string_view text = "");
bool HasMarker(const std::string& dir, std::string_view name);
void RemoveMarker(const std::string& dir, std::string_view name);

// Runs op; a SIGBUS raised by this thread while it runs (a page of the
// index's map that is no longer backed by the file: truncated or torn) makes
// it return false instead of killing the process. Whatever op had begun is
// abandoned where it stood: the caller must not touch the index again.
// The handler is installed once, on first use; a SIGBUS outside a guarded op
// gets the previous disposition.
bool RunGuarded(void (*op)(void*), void* arg);

}  // namespace originfs::index_health

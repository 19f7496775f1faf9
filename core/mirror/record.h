// Clocks and the identity of a landed file, as the index records it.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <ctime>

#include "core/store/index.h"

namespace originfs {

inline int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

inline int64_t Nanos(const timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

inline ino_t InoOf(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

// Records in rec the identity of the file just landed from fd, so a refresh
// can tell later whether it changed since.
inline void NoteLanded(ObjectRecord& rec, int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return;  // unknown: a refresh then compares the size only
  rec.size = static_cast<uint64_t>(st.st_size);
  rec.landed_ino = st.st_ino;
  rec.landed_mtime_ns = Nanos(st.st_mtim);
  rec.landed_ctime_ns = Nanos(st.st_ctim);
}

}  // namespace originfs

// What the commands share: reading a mount's control attributes, and
// numbers as people read them.
#pragma once

#include <dirent.h>

#include <cstdint>
#include <string>

namespace originfs {

std::string HumanBytes(double b);       // "1.5 MiB"
std::string HumanDuration(uint64_t s);  // "2d 03:04:05"
// The value of attribute name on path (or open fd); false if unreadable.
bool GetAttr(const std::string& path, const std::string& name, std::string* value);
bool FGetAttr(int fd, const std::string& name, std::string* value);
bool IsOriginfsMount(const std::string& mnt);
// The type of a directory entry: d_type, or lstat's where the filesystem
// leaves it DT_UNKNOWN (DT_DIR, DT_REG, or DT_UNKNOWN for anything else or
// a name gone meanwhile).
unsigned char EntryType(DIR* dir, const dirent* e);
// The bucket directory behind mnt (from /proc/self/mountinfo), O_PATH, when
// this process can see into it; -1 otherwise.
int OpenBucketOf(const std::string& mnt);

}  // namespace originfs

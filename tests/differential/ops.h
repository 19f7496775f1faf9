// The differential fuzzer's operations: generated as data (so a failing
// sequence can be replayed and minimized), applied by plain syscalls to a
// root directory — the mount or the reference directory — with an outcome
// that compares equal when both behaved the same.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace originfs::difffuzz {

enum class Kind {
  kCreate,    // open(O_CREAT|O_WRONLY [|O_EXCL|O_TRUNC|O_APPEND]) + write
  kPwrite,    // open(O_WRONLY) + pwrite at off
  kAppend,    // open(O_WRONLY|O_APPEND) + write
  kRead,      // open + read to the end
  kPread,     // open + pread(len, off)
  kTruncate,  // truncate(off)
  kRename,    // rename, or renameat2(RENAME_NOREPLACE) when flags & 1
  kUnlink,
  kLink,     // link(a, b)
  kSymlink,  // symlink(target b, at a)
  kReadlink,
  kMkdir,
  kRmdir,
  kReaddir,    // names and d_type, sorted
  kStat,       // lstat: type, size (not of directories), permissions, links of files
  kCopyRange,  // copy_file_range(a from 0 -> b at off, len)
  kSendfile,   // sendfile(a -> b, truncated first)
  kMmapRead,   // the whole file through a shared read-only mapping
  kMmapWrite,  // len bytes at off % size through a shared mapping, msync
  kFsync,      // fsync (flags & 1: fdatasync) of a fresh descriptor
  kSetXattr,   // user.fz (flags & 1: XATTR_CREATE)
  kGetXattr,   // user.fz and the list of user.* names but originfs's own
  kChmod,
  kRefresh,  // the mount only: setxattr user.originfs.refresh (a no-op for the reference)
  kRemount,  // never generated: where the run mounted again (flags & 1: with an emptied bucket)
  kCount
};

struct Op {
  Kind kind = Kind::kRead;
  std::string a, b;  // paths relative to the worker's root (b: second path or symlink target)
  std::uint64_t off = 0;
  std::uint32_t len = 0;
  std::uint32_t flags = 0;
  std::uint32_t seed = 0;  // of the bytes written
};

struct Outcome {
  int err = 0;        // errno of the first failing call, 0 if none
  std::string value;  // what was read or done, canonical text or bytes
  bool operator==(const Outcome&) const = default;
};

const char* KindName(Kind k);
std::optional<Kind> KindFromName(const std::string& name);
// One line, also the replay format: "kind<TAB>a<TAB>b<TAB>off<TAB>len<TAB>flags<TAB>seed".
std::string Serialize(const Op& op);
std::optional<Op> Parse(const std::string& line);
// A readable summary of an outcome (long values are cut, with their length).
std::string Describe(const Outcome& o);
// The first difference between two outcomes, for the report.
std::string Difference(const Outcome& mount, const Outcome& reference);

// Does the op change the tree (it must then be applied to the reference too)?
bool Mutates(Kind k);
// Paths an op names (a, and b unless it is a symlink's target).
std::vector<std::string> Paths(const Op& op);

// A random op over the worker's pool of relative paths.
Op Generate(std::mt19937_64& rng, const std::vector<std::string>& pool);

// Applies op below root (root + "/" + path). on_mount: kRefresh asks the
// mount; on the reference it only stats the file.
Outcome Apply(const std::string& root, const Op& op, bool on_mount);

// Deterministic bytes (the same for both sides).
std::string Bytes(std::size_t size, std::uint32_t seed);

}  // namespace originfs::difffuzz

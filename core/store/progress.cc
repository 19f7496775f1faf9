// What the host holding a key's lock tells the others (bucket_store.h,
// KeyProgress), and taking over the staging file of one that died.
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <utility>

#include <spdlog/fmt/fmt.h>

#include "core/store/bucket_store.h"

namespace originfs {

KeyLock::~KeyLock() {
  if (fd_ < 0) return;
  unlinkat(dir_fd_, name_.c_str(), 0);  // while still locked: waiters notice and retry
  close(fd_);
}

void KeyLock::Publish(const KeyProgress& p) const {
  if (fd_ < 0) return;
  std::string rec = FormatProgress(p);
  (void)!pwrite(fd_, rec.data(), rec.size(), 0);
}

namespace {

uint64_t ProgressCheck(std::string_view fields) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char c : fields) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

bool StagingName(std::string_view n) {
  if (n.empty() || n.size() > 200 || n.front() == '.') return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_')
      return false;
  return n.ends_with(".part");
}

}  // namespace

namespace {
// Validators go as one hex token (they may hold spaces), after the fields
// older readers parse; too long ones are left out (the version then is not
// pinned for another host).
std::string Hex(std::string_view s) {
  std::string out;
  for (unsigned char c : s) out += fmt::format("{:02x}", c);
  return out;
}
std::optional<std::string> Unhex(std::string_view h) {
  if (h.size() % 2) return std::nullopt;
  std::string out;
  for (std::size_t i = 0; i < h.size(); i += 2) {
    unsigned v;
    if (std::sscanf(std::string(h.substr(i, 2)).c_str(), "%2x", &v) != 1) return std::nullopt;
    out += static_cast<char>(v);
  }
  return out;
}
}  // namespace

std::string FormatProgress(const KeyProgress& p) {
  std::string fields = fmt::format("ofs1 {} {} {} {}", p.received, p.size, p.mtime, p.staging);
  std::string version = Hex(p.etag + '\n' + p.last_modified);
  if ((!p.etag.empty() || !p.last_modified.empty()) && fields.size() + version.size() < 200)
    fields += " " + version;
  std::string rec = fmt::format("{} {:016x}\n", fields, ProgressCheck(fields));
  if (rec.size() < kProgressBytes) rec.resize(kProgressBytes, ' ');
  return rec;
}

std::optional<KeyProgress> ParseProgress(std::string_view rec) {
  std::size_t end = rec.find('\n');
  if (end == std::string_view::npos) return std::nullopt;
  rec = rec.substr(0, end);
  std::size_t last = rec.rfind(' ');
  if (last == std::string_view::npos) return std::nullopt;
  std::string_view fields = rec.substr(0, last), check = rec.substr(last + 1);
  if (check != fmt::format("{:016x}", ProgressCheck(fields))) return std::nullopt;
  KeyProgress p;
  unsigned long long received, size;
  long long mtime;
  char name[256];
  std::string f(fields);
  char version[256] = "";
  int got = std::sscanf(f.c_str(), "ofs1 %llu %llu %lld %255s %255s", &received, &size, &mtime,
                        name, version);
  if (got < 4) return std::nullopt;
  if (got == 5) {
    auto v = Unhex(version);
    std::size_t nl = v ? v->find('\n') : std::string::npos;
    if (nl == std::string::npos) return std::nullopt;
    p.etag = v->substr(0, nl);
    p.last_modified = v->substr(nl + 1);
  }
  p.received = received;
  p.size = size;
  p.mtime = mtime;
  p.staging = name;
  if (!StagingName(p.staging) || p.received > p.size) return std::nullopt;
  return p;
}

Result<int> BucketStore::OpenStaging(std::string_view name) const {
  if (!StagingName(name)) return Fail(EINVAL, "not a staging file name");
  int fd = openat(staging_fd_, std::string(name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return FailErrno("opening another host's staging file");
  return fd;
}

Result<std::unique_ptr<StagingFile>> BucketStore::AdoptStaging(std::string_view name,
                                                               uint64_t received) {
  if (!StagingName(name)) return Fail(EINVAL, "not a staging file name");
  std::string ours = NewStagingName();
  if (renameat(staging_fd_, std::string(name).c_str(), staging_fd_, ours.c_str()) != 0)
    return FailErrno("taking over another host's staging file");
  int fd = openat(staging_fd_, ours.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return FailErrno("opening the staging file taken over");
  std::unique_ptr<StagingFile> f(new StagingFile(fd, staging_fd_, std::move(ours)));
  f->size_ = received;
  return f;
}

KeyLock::KeyLock(KeyLock&& o) noexcept
    : dir_fd_(o.dir_fd_), name_(std::move(o.name_)), fd_(std::exchange(o.fd_, -1)) {}

}  // namespace originfs

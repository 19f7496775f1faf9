#include "core/store/index_health.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>

#include <spdlog/fmt/fmt.h>

namespace originfs::index_health {
namespace {

// LMDB 0.9's on-disk meta page (mdb.c: MDB_page header, then MDB_meta), read
// by offset so that this file needs no LMDB internals.
constexpr uint32_t kMagic = 0xBEEFC0DE;
constexpr std::size_t kPageHeader = 16;  // pgno, pad, flags, lower/upper
constexpr std::size_t kDbSize = 48;      // MDB_db
struct Meta {
  uint32_t magic = 0, version = 0, psize = 0;
  uint64_t roots[2] = {0, 0};
  uint64_t last_pg = 0, txnid = 0;
};

uint64_t U64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint32_t U32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

Meta Parse(const unsigned char* page) {
  const unsigned char* m = page + kPageHeader;
  Meta r;
  r.magic = U32(m);
  r.version = U32(m + 4);
  const unsigned char* dbs = m + 24;  // after magic, version, address, mapsize
  r.psize = U32(dbs);                 // free db's md_pad holds the page size
  for (int i = 0; i < 2; ++i) r.roots[i] = U64(dbs + i * kDbSize + 40);
  r.last_pg = U64(dbs + 2 * kDbSize);
  r.txnid = U64(dbs + 2 * kDbSize + 8);
  return r;
}

bool ReadAt(int fd, unsigned char* buf, std::size_t n, off_t off) {
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, buf + got, n - got, off + static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<std::size_t>(r);
  }
  return true;
}

thread_local sigjmp_buf* t_jump = nullptr;
struct sigaction g_previous;
std::once_flag g_installed;

void OnBus(int sig, siginfo_t* info, void* uc) {
  if (sigjmp_buf* j = t_jump) {
    t_jump = nullptr;
    siglongjmp(*j, 1);
  }
  // Not a guarded op: what would have happened without us.
  if ((g_previous.sa_flags & SA_SIGINFO) && g_previous.sa_sigaction) {
    g_previous.sa_sigaction(sig, info, uc);
    return;
  }
  if (g_previous.sa_handler != SIG_IGN && g_previous.sa_handler != SIG_DFL &&
      g_previous.sa_handler) {
    g_previous.sa_handler(sig);
    return;
  }
  signal(sig, SIG_DFL);  // the faulting access runs again and ends the process
}

}  // namespace

std::string CheckMeta(const std::string& dir, bool* past_end) {
  if (past_end) *past_end = false;
  std::string path = dir + "/data.mdb";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? "" : fmt::format("{}: {}", path, std::strerror(errno));
  struct stat st;
  std::string bad;
  unsigned char page0[256], page1[256];
  if (fstat(fd, &st) != 0) {
    bad = std::strerror(errno);
  } else if (st.st_size == 0) {
    bad = "";  // created, never committed: LMDB initialises it
  } else if (!ReadAt(fd, page0, sizeof page0, 0)) {
    bad = fmt::format("{} bytes: shorter than a meta page", st.st_size);
  } else {
    Meta a = Parse(page0);
    if (a.magic != kMagic) {
      bad = "first meta page has no LMDB magic";
    } else if (a.psize < 512 || a.psize > (1u << 16) || (a.psize & (a.psize - 1))) {
      bad = fmt::format("page size {} in the meta page", a.psize);
    } else if (!ReadAt(fd, page1, sizeof page1, a.psize)) {
      bad = fmt::format("{} bytes: the second meta page is missing", st.st_size);
    } else {
      Meta b = Parse(page1);
      const Meta& newest = (b.magic == kMagic && b.txnid > a.txnid) ? b : a;
      uint64_t pages = static_cast<uint64_t>(st.st_size) / a.psize;
      // The roots must be in the file. (The last used page need not be: a
      // page freed in the transaction that made it is counted but never
      // written. That case is only a reason to walk the trees: PastEnd.)
      for (uint64_t root : newest.roots) {
        if (root != ~uint64_t{0} && (root >= pages || root > newest.last_pg))
          bad = fmt::format("meta page of transaction {} names root page {}, the file has {} pages",
                            newest.txnid, root, pages);
      }
      if (past_end) *past_end = newest.last_pg >= pages;
    }
  }
  close(fd);
  return bad;
}

bool PutMarker(const std::string& dir, std::string_view name, std::string_view text) {
  std::string path = fmt::format("{}/{}", dir, name);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            fdatasync(fd) == 0;
  int saved = errno;
  close(fd);
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ok = fsync(dfd) == 0 && ok;
    close(dfd);
  }
  errno = saved;
  return ok;
}

bool HasMarker(const std::string& dir, std::string_view name) {
  std::string path = fmt::format("{}/{}", dir, name);
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

void RemoveMarker(const std::string& dir, std::string_view name) {
  std::string path = fmt::format("{}/{}", dir, name);
  unlink(path.c_str());
}

bool RunGuarded(void (*op)(void*), void* arg) {
  std::call_once(g_installed, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = OnBus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_previous);
  });
  sigjmp_buf jump;
  sigjmp_buf* outer = t_jump;
  if (sigsetjmp(jump, 1) != 0) {
    t_jump = outer;
    return false;
  }
  t_jump = &jump;
  op(arg);
  t_jump = outer;
  return true;
}

}  // namespace originfs::index_health

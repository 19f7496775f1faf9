#include "tests/differential/world.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <new>
#include <sstream>

namespace originfs::difffuzz {

World::World(std::uint64_t seed, int workers, std::chrono::seconds lifetime) {
  bucket = root.Join("bucket");
  mnt = root.Join("mnt");
  ref = root.Join("ref");
  for (const auto& d : {bucket, mnt, ref}) mkdir(d.c_str(), 0755);
  tree = MakeTree(seed, workers);
  Serve(tree, origin, 250);
  WriteReference(tree, ref);
  // Short timeouts and one retry: an origin that is down costs seconds, not minutes.
  options.rules = {
      e2e::RuleSpec{"", origin.url(), std::nullopt, "", "timeout = 2\nretries = 1\nlist_ttl = 1"}};
  options.negative_ttl = 1;
  options.watchdog = lifetime;
  // Failures are remembered for at most 1 s (the runner allows EIO that
  // long after the faults end).
  options.extra_opts = {"connect_timeout=2", "failure_backoff=1"};
}

bool World::Mount() {
  mount =
      std::make_unique<e2e::OriginfsMount>(bucket, mnt, root.Join("rules.toml"), root.Join("log"));
  auto r = mount->Start(options);
  if (!r) std::cerr << "mount failed: " << r.message() << "\n" << LogTail(30);
  return static_cast<bool>(r);
}

bool World::Unmount() {
  if (!mount) return true;
  auto r = mount->Unmount();
  mount.reset();
  if (!r) std::cerr << "unmount failed: " << r.message() << "\n";
  return static_cast<bool>(r);
}

void World::Reset() {
  std::filesystem::remove_all(bucket);
  std::filesystem::remove_all(ref);
  mkdir(bucket.c_str(), 0755);
  mkdir(ref.c_str(), 0755);
  WriteReference(tree, ref);
}

std::string World::LogTail(std::size_t lines) const {
  std::ifstream in(root.Join("log"));
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += "  | " + all[i] + "\n";
  return out;
}

Shared* NewShared() {
  void* p =
      mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* s = new (p) Shared();
  for (auto& t : s->started_ms) t = 0;
  for (auto& v : s->pinned) v = -1;
  for (auto& v : s->ok) v = 0;
  for (auto& v : s->err) v = 0;
  static_assert(std::atomic<std::int64_t>::is_always_lock_free, "atomics shared between processes");
  return s;
}

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

namespace {

// Is any component of rel (below bucket_w) missing from the bucket?
bool Unlanded(const std::string& bucket_w, const std::string& rel, int depth) {
  std::size_t start = 0;
  for (;;) {
    std::size_t slash = rel.find('/', start);
    std::string prefix = rel.substr(0, slash);
    struct stat st {};
    if (lstat((bucket_w + "/" + prefix).c_str(), &st) != 0) return true;
    if (S_ISLNK(st.st_mode)) {
      if (depth > 6) return false;
      char buf[4096];
      ssize_t n = readlink((bucket_w + "/" + prefix).c_str(), buf, sizeof buf);
      if (n <= 0) return false;
      auto dir_end = prefix.rfind('/');
      std::string target = (dir_end == std::string::npos ? "" : prefix.substr(0, dir_end + 1)) +
                           std::string(buf, static_cast<std::size_t>(n)) +
                           (slash == std::string::npos ? "" : rel.substr(slash));
      return Unlanded(bucket_w, target, depth + 1);
    }
    if (slash == std::string::npos) return false;
    start = slash + 1;
  }
}

std::string Read(const std::string& path, int* err) {
  Op op;
  op.kind = Kind::kRead;
  auto slash = path.rfind('/');
  op.a = path.substr(slash + 1);
  Outcome o = Apply(path.substr(0, slash), op, false);
  *err = o.err;
  return o.value;
}

}  // namespace

bool InvolvesOrigin(const std::string& bucket_w, const Op& op) {
  // Listings and refreshes ask the origin whatever the bucket holds.
  if (op.kind == Kind::kReaddir || op.kind == Kind::kRefresh) return true;
  for (const auto& p : Paths(op))
    if (Unlanded(bucket_w, p, 0)) return true;
  // Removing (or replacing) a directory the origin has reads its listing.
  if (op.kind == Kind::kRmdir || op.kind == Kind::kRename) {
    for (const auto& p : Paths(op)) {
      struct stat st;
      if (lstat((bucket_w + "/" + p).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return true;
    }
  }
  return false;
}

std::string CompareTrees(const std::string& mnt_w, const std::string& ref_w) {
  auto names = [](const std::string& d) {
    auto v = testing::ListDir(d);
    std::sort(v.begin(), v.end());
    return v;
  };
  // (A directory that cannot be read is not an empty one.)
  if (struct stat st; lstat(mnt_w.c_str(), &st) != 0) return mnt_w + ": lstat " + strerror(errno);
  auto m = names(mnt_w), r = names(ref_w);
  if (m != r) {
    std::string s = "names in " + mnt_w + " differ: mount [";
    for (const auto& n : m) s += n + " ";
    s += "] reference [";
    for (const auto& n : r) s += n + " ";
    return s + "]";
  }
  for (const auto& n : m) {
    std::string mp = mnt_w + "/" + n, rp = ref_w + "/" + n;
    struct stat ms {
    }, rs{};
    if (lstat(mp.c_str(), &ms) != 0) return mp + ": lstat " + strerror(errno);
    lstat(rp.c_str(), &rs);
    if ((ms.st_mode & S_IFMT) != (rs.st_mode & S_IFMT)) return mp + ": type differs";
    if ((ms.st_mode & 07777) != (rs.st_mode & 07777)) return mp + ": mode differs";
    if (S_ISDIR(ms.st_mode)) {
      auto d = CompareTrees(mp, rp);
      if (!d.empty()) return d;
    } else if (S_ISREG(ms.st_mode)) {
      int me = 0, re = 0;
      std::string mb = Read(mp, &me), rb = Read(rp, &re);
      if (me || re) return mp + ": read failed (" + std::to_string(me) + ")";
      if (mb != rb)
        return mp + ": content differs (" + std::to_string(mb.size()) + " and " +
               std::to_string(rb.size()) + " bytes)";
    } else if (S_ISLNK(ms.st_mode)) {
      char a[4096], b[4096];
      ssize_t x = readlink(mp.c_str(), a, sizeof a), y = readlink(rp.c_str(), b, sizeof b);
      if (x != y ||
          std::string(a, std::max<ssize_t>(x, 0)) != std::string(b, std::max<ssize_t>(y, 0)))
        return mp + ": symlink target differs";
    }
  }
  return "";
}

bool WriteOps(const std::string& path, std::uint64_t seed, int workers, int w,
              const std::vector<Op>& ops) {
  std::ofstream out(path);
  out << "# differential_fuzz --replay " << path << "\n";
  out << "# seed " << seed << "\n# workers " << workers << "\n# worker " << w << "\n";
  for (const auto& op : ops) out << Serialize(op) << "\n";
  return static_cast<bool>(out);
}

}  // namespace originfs::difffuzz

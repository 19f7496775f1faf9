// LMDB implementation of Index; the only file that includes lmdb.h.
//
// Power cuts: every commit is synced (no MDB_NOSYNC: LMDB keeps integrity
// without it only where the filesystem keeps write order, which ext4 does
// not), and concurrent writers share one transaction (group commit), so a
// burst of landings costs a few syncs, not one each. Before opening, the
// meta pages are checked against the file and, after an unclean shutdown,
// every tree is walked in a child process; what fails is moved aside. A
// fault while running (an LMDB error that says corrupt, or SIGBUS from the
// map) marks the index corrupt, fails every later call and tells the owner
// (IndexOptions::on_corrupt), which stops; the next start moves it aside.
#include <lmdb.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/common/group_commit.h"
#include "core/common/key_hash.h"
#include "core/store/bucket_store.h"
#include "core/store/index.h"
#include "core/store/index_health.h"

namespace originfs {
namespace {

// Version 1 records (without the landed file's identity) still decode.
constexpr unsigned char kRecordVersion = 2;
// LMDB's default maximum key size is 511 bytes; longer keys are hashed and the
// full key is kept in the value to tell collisions apart.
constexpr std::size_t kMaxDirectKey = 480;

void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
void PutStr(std::string& out, std::string_view s) {
  PutU64(out, s.size());
  out += s;
}
bool GetU64(std::string_view& in, uint64_t* v) {
  if (in.size() < 8) return false;
  *v = 0;
  for (int i = 0; i < 8; ++i)
    *v |= static_cast<uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  in.remove_prefix(8);
  return true;
}
bool GetStr(std::string_view& in, std::string* s) {
  uint64_t n;
  if (!GetU64(in, &n) || in.size() < n) return false;
  s->assign(in.data(), n);
  in.remove_prefix(n);
  return true;
}

std::string DbKey(std::string_view key) {
  if (key.size() <= kMaxDirectKey) return std::string(key);
  return fmt::format("\x01#{}{}", KeyHash128Hex(key), key.substr(0, 200));
}

Error LmdbError(int rc, std::string_view what) {
  return Error{EIO, fmt::format("lmdb {}: {}", what, mdb_strerror(rc))};
}

// Aborts on destruction unless committed. Every transaction holds the
// environment's grow lock shared: the map is resized only while none is open
// in this process (mdb_env_set_mapsize's rule).
class Txn {
 public:
  Txn(MDB_env* env, std::shared_mutex& grow, bool write) : grow_(grow) {
    rc_ = mdb_txn_begin(env, nullptr, write ? 0 : MDB_RDONLY, &txn_);
  }
  ~Txn() {
    if (txn_) mdb_txn_abort(txn_);
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  int rc() const { return rc_; }
  MDB_txn* get() { return txn_; }
  int Commit() {
    int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;
    return rc;
  }

 private:
  std::shared_lock<std::shared_mutex> grow_;
  MDB_txn* txn_ = nullptr;
  int rc_;
};

MDB_val Val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }

class LmdbIndex final : public Index {
 public:
  ~LmdbIndex() override {
    // A corrupt index is left as it is (a transaction may have been abandoned
    // in it), and so is its running marker: the next start looks at it.
    if (bad_.load()) return;
    if (env_) mdb_env_close(env_);
    if (!dir_.empty()) index_health::RemoveMarker(dir_, index_health::kRunningMarker);
  }

  static Result<std::unique_ptr<LmdbIndex>> Open(const std::string& dir, const IndexOptions& o) {
    auto idx = std::unique_ptr<LmdbIndex>(new LmdbIndex());
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return FailErrno(fmt::format("creating {}", dir));
    if (index_health::HasMarker(dir, index_health::kCorruptMarker))
      return Fail(EIO, "marked corrupt by the last run");
    bool past_end = false;
    if (std::string bad = index_health::CheckMeta(dir, &past_end); !bad.empty())
      return Fail(EIO, "torn: " + bad);
    if (past_end || index_health::HasMarker(dir, index_health::kRunningMarker)) {
      if (std::string bad = WalkInChild(dir); !bad.empty())
        return Fail(EIO, fmt::format("{}: {}",
                                     past_end ? "pages past the end of the file"
                                              : "after an unclean shutdown",
                                     bad));
    }
    int rc = mdb_env_create(&idx->env_);
    if (rc) return std::unexpected(LmdbError(rc, "env_create"));
    mdb_env_set_maxdbs(idx->env_, 4);
    mdb_env_set_maxreaders(idx->env_, 1024);
    mdb_env_set_mapsize(idx->env_, o.map_size);
    idx->max_not_found_ = o.max_not_found;
    idx->on_corrupt_ = o.on_corrupt;
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD | (o.durable ? 0 : MDB_NOSYNC);
    rc = mdb_env_open(idx->env_, dir.c_str(), flags, 0600);
    if (rc) return std::unexpected(LmdbError(rc, fmt::format("open {}", dir)));
    Txn t(idx->env_, idx->grow_mu_, true);
    if (t.rc()) return std::unexpected(LmdbError(t.rc(), "txn"));
    if ((rc = mdb_dbi_open(t.get(), "objects", MDB_CREATE, &idx->objects_)) ||
        (rc = mdb_dbi_open(t.get(), "notfound", MDB_CREATE, &idx->notfound_)) ||
        (rc = mdb_dbi_open(t.get(), "listings", MDB_CREATE, &idx->listings_)))
      return std::unexpected(LmdbError(rc, "dbi_open"));
    if ((rc = t.Commit())) return std::unexpected(LmdbError(rc, "commit"));
    if (!index_health::PutMarker(dir, index_health::kRunningMarker))
      return FailErrno(fmt::format("marking {} in use", dir));
    idx->dir_ = dir;
    return idx;
  }

  // Opens dir read-only in a child process and reads every entry of every
  // tree: a torn page that would fault or loop kills or stalls the child,
  // never us. Empty when all is well, else what went wrong.
  static std::string WalkInChild(const std::string& dir) {
    pid_t pid = fork();
    if (pid < 0) return fmt::format("fork: {}", std::strerror(errno));
    if (pid == 0) _exit(WalkAll(dir));
    using Clock = std::chrono::steady_clock;
    struct stat st {};
    (void)stat((dir + "/data.mdb").c_str(), &st);
    // Plus a second per 20 MB of index: a big one on a slow disk is not
    // taken for a looping tree.
    const auto limit = kWalkLimit + std::chrono::seconds(st.st_size / (20 << 20));
    const auto deadline = Clock::now() + limit;
    int status = 0;
    for (;;) {
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if (r < 0 && errno != EINTR) return fmt::format("waitpid: {}", std::strerror(errno));
      if (Clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return fmt::format("walking it took over {} s", limit.count());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (WIFSIGNALED(status)) return fmt::format("walking it died of signal {}", WTERMSIG(status));
    if (WEXITSTATUS(status) != 0) return "walking it met an LMDB error";
    return "";
  }

  // The child's walk: 0 when every entry of every tree was read.
  static int WalkAll(const std::string& dir) {
    MDB_env* env;
    if (mdb_env_create(&env)) return 2;
    mdb_env_set_maxdbs(env, 4);
    if (mdb_env_open(env, dir.c_str(), MDB_RDONLY | MDB_NOTLS, 0600)) return 2;
    MDB_txn* txn;
    if (mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn)) return 2;
    uint64_t sum = 0;
    auto walk = [&](MDB_dbi dbi) {
      MDB_cursor* c;
      if (mdb_cursor_open(txn, dbi, &c)) return false;
      MDB_val k, v;
      int rc;
      for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
           rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        for (std::size_t i = 0; i < v.mv_size; i += 512)
          sum += static_cast<const unsigned char*>(v.mv_data)[i];
      }
      mdb_cursor_close(c);
      return rc == MDB_NOTFOUND;
    };
    // The free pages' tree (dbi 0) too: a write takes pages from it.
    MDB_dbi main_db;
    if (!walk(0) || mdb_dbi_open(txn, nullptr, 0, &main_db) || !walk(main_db)) return 3;
    for (const char* name : {"objects", "notfound", "listings"}) {
      MDB_dbi dbi;
      int rc = mdb_dbi_open(txn, name, 0, &dbi);
      if (rc == MDB_NOTFOUND) continue;
      if (rc || !walk(dbi)) return 3;
    }
    return sum == ~uint64_t{0} ? 4 : 0;  // (uses sum, so the reads stay)
  }

  Result<void> Put(std::string_view key, const ObjectRecord& rec) override {
    std::string v = EncodeValue(key, EncodeRecord(rec));
    return Write(objects_, DbKey(key), v);
  }

  Result<std::optional<ObjectRecord>> Get(std::string_view key) override {
    std::string value;
    auto found = Read(objects_, DbKey(key), &value);
    if (!found) return std::unexpected(found.error());
    if (!*found) return std::nullopt;
    std::string_view in = value;
    std::string stored_key;
    if (!GetStr(in, &stored_key) || stored_key != key) return std::nullopt;
    return DecodeRecord(in);
  }

  Result<void> Erase(std::string_view key) override { return Del(objects_, DbKey(key)); }

  Result<bool> HasObjectBelow(std::string_view dir_key) override {
    std::string prefix = std::string(dir_key) + "/";
    return Guarded([&] {
      Txn t(env_, grow_mu_, false);
      if (t.rc()) return t.rc();
      MDB_cursor* c;
      if (int rc = mdb_cursor_open(t.get(), objects_, &c)) return rc;
      MDB_val k = Val(prefix), v;
      int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);  // the first key >= prefix
      if (rc == 0 &&
          !std::string_view(static_cast<const char*>(k.mv_data), k.mv_size).starts_with(prefix))
        rc = MDB_NOTFOUND;
      mdb_cursor_close(c);
      return rc;
    });
  }

  Result<void> PutNotFound(std::string_view key, int64_t expires_at) override {
    std::string payload;
    PutU64(payload, static_cast<uint64_t>(expires_at));
    ORIGINFS_TRY(Write(notfound_, DbKey(key), EncodeValue(key, payload)));
    if (++not_found_puts_ % kSweepEvery == 0) return BoundNotFound(std::time(nullptr));
    return {};
  }

  // The negative cache stays below max_not_found_ entries: expired entries
  // go first, then (a crawler asking for more missing names than that
  // within their lifetime) the first ones in key order, down to 3/4 of the
  // bound. An entry dropped early only means one more question to the origin.
  Result<void> BoundNotFound(int64_t now) {
    return Update("sweep not-found", [&](MDB_txn* txn) {
      MDB_stat st;
      if (int rc = mdb_stat(txn, notfound_, &st)) return rc;
      if (st.ms_entries <= max_not_found_) return 0;
      std::size_t left = st.ms_entries;
      MDB_cursor* c;
      if (int rc = mdb_cursor_open(txn, notfound_, &c)) return rc;
      MDB_val k, v;
      for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
           rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        std::string_view in(static_cast<const char*>(v.mv_data), v.mv_size);
        std::string stored;
        uint64_t expires = 0;
        bool live = GetStr(in, &stored) && GetU64(in, &expires) && int64_t(expires) > now;
        if (!live && mdb_cursor_del(c, 0) == 0) --left;
      }
      for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && left > max_not_found_ * 3 / 4;
           rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (mdb_cursor_del(c, 0) == 0) --left;
      }
      mdb_cursor_close(c);
      return 0;
    });
  }

  Result<bool> IsNotFound(std::string_view key, int64_t now) override {
    std::string value;
    auto found = Read(notfound_, DbKey(key), &value);
    if (!found) return std::unexpected(found.error());
    if (!*found) return false;
    std::string_view in = value;
    std::string stored_key;
    uint64_t expires;
    if (!GetStr(in, &stored_key) || stored_key != key || !GetU64(in, &expires)) return false;
    return static_cast<int64_t>(expires) > now;
  }

  Result<void> EraseNotFound(std::string_view key) override { return Del(notfound_, DbKey(key)); }

  Result<void> PutListing(std::string_view dir_key, std::string_view encoded,
                          int64_t expires_at) override {
    std::string payload;
    PutU64(payload, static_cast<uint64_t>(expires_at));
    payload.append(encoded);
    return Write(listings_, ListingKey(dir_key), EncodeValue(dir_key, payload));
  }

  Result<std::optional<std::string>> GetListing(std::string_view dir_key, int64_t now,
                                                int64_t* expires_at) override {
    std::string value;
    auto found = Read(listings_, ListingKey(dir_key), &value);
    if (!found) return std::unexpected(found.error());
    if (!*found) return std::optional<std::string>();
    std::string_view in = value;
    std::string stored_key;
    uint64_t expires;
    if (!GetStr(in, &stored_key) || stored_key != dir_key || !GetU64(in, &expires) ||
        static_cast<int64_t>(expires) <= now)
      return std::optional<std::string>();
    if (expires_at) *expires_at = static_cast<int64_t>(expires);
    return std::optional<std::string>(std::string(in));
  }

  Result<void> EraseListing(std::string_view dir_key) override {
    return Del(listings_, ListingKey(dir_key));
  }

  // LMDB keys cannot be empty, and the root's directory key is.
  static std::string ListingKey(std::string_view dir_key) {
    return DbKey(std::string("/") + std::string(dir_key));
  }

  Result<uint64_t> CountObjects() override {
    MDB_stat st;
    auto r = Guarded([&] {
      Txn t(env_, grow_mu_, false);
      if (t.rc()) return t.rc();
      return mdb_stat(t.get(), objects_, &st);
    });
    if (!r) return std::unexpected(r.error());
    return *r ? st.ms_entries : 0;
  }

 private:
  LmdbIndex() = default;

  static std::string EncodeValue(std::string_view key, std::string_view payload) {
    std::string v;
    v.reserve(key.size() + payload.size() + 8);
    PutStr(v, key);
    v += payload;
    return v;
  }

  Result<void> Write(MDB_dbi dbi, std::string_view k, std::string_view v) {
    return Update("put", [&](MDB_txn* txn) {
      MDB_val key = Val(k), val = Val(v);
      return mdb_put(txn, dbi, &key, &val, 0);
    });
  }

  // Runs op in a write transaction and commits it, synced. Writers that
  // arrive together share a transaction (group commit): the first becomes
  // the leader, runs every queued op in one transaction, commits and wakes
  // the others. A full map is grown (doubled, up to kMaxMapSize) and the
  // batch run again: the index never fails for its size while the disk has
  // room. An op that fails otherwise gets a transaction of its own, so it
  // cannot fail the others'.
  Result<void> Update(std::string_view what, const std::function<int(MDB_txn*)>& op) {
    Pending mine{&op, 0, {}};
    group_.Join(
        &mine, [this](const std::vector<Pending*>& batch) { RunBatch(batch); },
        [](const std::vector<Pending*>& batch, const std::exception& e) {
          for (Pending* p : batch) {
            p->rc = kGrowFailed;
            p->error = Error{EIO, std::string("index: ") + e.what()};
          }
        });
    if (mine.rc == kCorrupt) return std::unexpected(BadError());
    if (mine.rc == kGrowFailed) return std::unexpected(mine.error);
    if (mine.rc) return std::unexpected(LmdbError(mine.rc, what));
    return {};
  }

  struct Pending {
    const std::function<int(MDB_txn*)>* op;
    int rc;
    Error error;  // with rc kGrowFailed
  };
  static constexpr int kCorrupt = -1;     // Pending::rc: the index is corrupt
  static constexpr int kGrowFailed = -2;  // Pending::rc: see Pending::error

  void RunBatch(const std::vector<Pending*>& batch) {
    if (bad_.load()) {
      for (Pending* p : batch) p->rc = kCorrupt;
      return;
    }
    struct Args {
      LmdbIndex* self;
      const std::vector<Pending*>* batch;
    } args{this, &batch};
    bool ran = index_health::RunGuarded(
        [](void* a) {
          auto* x = static_cast<Args*>(a);
          x->self->RunBatchUnguarded(*x->batch);
        },
        &args);
    if (!ran) MarkCorrupt("SIGBUS in the index's map (its file is shorter than its pages)");
    for (Pending* p : batch) {
      if (!ran || IsCorruption(p->rc)) {
        if (ran) MarkCorrupt(mdb_strerror(p->rc));
        p->rc = kCorrupt;
      }
    }
  }

  void RunBatchUnguarded(const std::vector<Pending*>& batch) {
    for (;;) {
      std::size_t map_size;
      int rc = 0;
      bool full = false, alone = false;
      {
        Txn t(env_, grow_mu_, true);
        if (t.rc()) {
          for (Pending* p : batch) p->rc = t.rc();
          return;
        }
        map_size = MapSize();
        for (Pending* p : batch) {
          rc = (*p->op)(t.get());
          if (rc == MDB_NOTFOUND) rc = 0;
          p->rc = rc;
          if (rc == MDB_MAP_FULL) full = true;
          if (rc) break;
        }
        if (rc && !full) {
          if (batch.size() == 1) return;  // its rc is set; the txn is aborted
          alone = true;
        }
        if (!rc) rc = t.Commit();
        if (!rc) {
          for (Pending* p : batch) p->rc = 0;
          return;
        }
        if (rc == MDB_MAP_FULL) full = true;
      }
      if (alone) {  // one op failed: the others should not fail with it
        for (Pending* p : batch) RunBatchUnguarded({p});
        return;
      }
      if (!full) {
        for (Pending* p : batch) p->rc = rc;
        return;
      }
      if (auto g = Grow(map_size); !g) {
        for (Pending* p : batch) {
          p->rc = kGrowFailed;
          p->error = g.error();
        }
        return;
      }
    }
  }

  static bool IsCorruption(int rc) {
    // (Not MDB_PANIC: a failed write, ENOSPC or EIO, of a sound file.)
    return rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID ||
           rc == MDB_VERSION_MISMATCH;
  }

  // From now on every call fails; the marker makes the next start move the
  // index aside. Logged once; the owner is told once.
  void MarkCorrupt(const std::string& why) {
    {
      std::lock_guard lock(bad_mu_);
      if (bad_.load()) return;
      bad_reason_ = why;
      bad_.store(true);
    }
    spdlog::error("index {} is corrupt ({}); stopping: the next start moves it aside", dir_, why);
    if (!dir_.empty()) index_health::PutMarker(dir_, index_health::kCorruptMarker, why);
    if (on_corrupt_) on_corrupt_(why);
  }

  Error BadError() {
    std::lock_guard lock(bad_mu_);
    return Error{EIO, "index corrupt: " + bad_reason_};
  }

  // Runs a read-only op under the SIGBUS guard.
  template <class F>
  Result<bool> Guarded(F&& f) {
    if (bad_.load()) return std::unexpected(BadError());
    struct Args {
      F* f;
      int rc;
    } args{&f, 0};
    bool ran = index_health::RunGuarded(
        [](void* a) {
          auto* x = static_cast<Args*>(a);
          x->rc = (*x->f)();
        },
        &args);
    if (!ran) MarkCorrupt("SIGBUS in the index's map (its file is shorter than its pages)");
    if (ran && IsCorruption(args.rc)) MarkCorrupt(mdb_strerror(args.rc));
    if (bad_.load()) return std::unexpected(BadError());
    if (args.rc == MDB_NOTFOUND) return false;
    if (args.rc) return std::unexpected(LmdbError(args.rc, "read"));
    return true;
  }

  std::size_t MapSize() {
    MDB_envinfo info;
    mdb_env_info(env_, &info);
    return info.me_mapsize;
  }

  // Doubles the map from full_size (unless another writer already grew it).
  Result<void> Grow(std::size_t full_size) {
    std::unique_lock lock(grow_mu_);  // no transaction of this process is open
    if (MapSize() > full_size) return {};
    if (full_size >= kMaxMapSize)
      return Fail(ENOSPC, fmt::format("index map full at its maximum of {} bytes", full_size));
    std::size_t grown = std::min(full_size * 2, kMaxMapSize);
    int rc = mdb_env_set_mapsize(env_, grown);
    if (rc) return std::unexpected(LmdbError(rc, "set_mapsize"));
    spdlog::info("index map grown from {} to {} MiB", full_size >> 20, grown >> 20);
    return {};
  }

  Result<bool> Read(MDB_dbi dbi, std::string_view k, std::string* out) {
    return Guarded([&] {
      Txn t(env_, grow_mu_, false);
      if (t.rc()) return t.rc();
      MDB_val key = Val(k), val;
      int rc = mdb_get(t.get(), dbi, &key, &val);
      if (rc == 0) out->assign(static_cast<const char*>(val.mv_data), val.mv_size);  // copy now
      return rc;
    });
  }

  Result<void> Del(MDB_dbi dbi, std::string_view k) {
    return Update("del", [&](MDB_txn* txn) {
      MDB_val key = Val(k);
      return mdb_del(txn, dbi, &key, nullptr);
    });
  }

  // Address space reserved for the map at most (it is sparse: the file only
  // grows as records are added).
  static constexpr std::size_t kMaxMapSize = std::size_t(1) << 40;

  // How long the walk after an unclean shutdown may take; a walk that takes
  // longer is taken for a torn tree (a loop) and the index is moved aside.
  static constexpr std::chrono::seconds kWalkLimit{120};
  std::string dir_;  // empty until opened
  std::function<void(const std::string&)> on_corrupt_;
  std::atomic<bool> bad_{false};
  std::mutex bad_mu_;
  std::string bad_reason_;  // guarded by bad_mu_
  // Writers that arrive together share a transaction (see group_commit.h).
  GroupCommit<Pending> group_{{.full = 64,
                               .stream = std::chrono::milliseconds(10),
                               .linger = std::chrono::milliseconds(2)}};
  static constexpr uint64_t kSweepEvery = 1024;  // not-found puts between size checks
  std::atomic<uint64_t> not_found_puts_{0};
  std::size_t max_not_found_ = 100000;
  std::shared_mutex grow_mu_;  // transactions shared, growing the map exclusive
  MDB_env* env_ = nullptr;
  MDB_dbi objects_ = 0;
  MDB_dbi listings_ = 0;
  MDB_dbi notfound_ = 0;
};

}  // namespace

std::string EncodeRecord(const ObjectRecord& rec) {
  std::string out;
  out += static_cast<char>(kRecordVersion);
  PutStr(out, rec.url);
  PutStr(out, rec.etag);
  PutStr(out, rec.last_modified);
  PutU64(out, rec.size);
  PutU64(out, static_cast<uint64_t>(rec.fetched_at));
  PutU64(out, rec.rule);
  PutU64(out, rec.landed_ino);
  PutU64(out, static_cast<uint64_t>(rec.landed_mtime_ns));
  PutU64(out, static_cast<uint64_t>(rec.landed_ctime_ns));
  return out;
}

std::optional<ObjectRecord> DecodeRecord(std::string_view in) {
  if (in.empty()) return std::nullopt;
  unsigned char version = static_cast<unsigned char>(in[0]);
  if (version != 1 && version != kRecordVersion) return std::nullopt;
  in.remove_prefix(1);
  ObjectRecord r;
  uint64_t fetched, rule;
  if (!GetStr(in, &r.url) || !GetStr(in, &r.etag) || !GetStr(in, &r.last_modified) ||
      !GetU64(in, &r.size) || !GetU64(in, &fetched) || !GetU64(in, &rule))
    return std::nullopt;
  r.fetched_at = static_cast<int64_t>(fetched);
  r.rule = static_cast<uint32_t>(rule);
  if (version >= 2) {
    uint64_t mtime_ns, ctime_ns;
    if (!GetU64(in, &r.landed_ino) || !GetU64(in, &mtime_ns) || !GetU64(in, &ctime_ns))
      return std::nullopt;
    r.landed_mtime_ns = static_cast<int64_t>(mtime_ns);
    r.landed_ctime_ns = static_cast<int64_t>(ctime_ns);
  }
  return r;
}

Result<std::unique_ptr<Index>> OpenLmdbIndex(const std::string& dir, const IndexOptions& options) {
  std::string parent = dir.substr(
      0, dir.find_last_of('/') == std::string::npos ? dir.size() : dir.find_last_of('/'));
  if (IsNetworkFilesystem(parent.empty() ? "/" : parent)) {
    return Fail(
        EINVAL,
        fmt::format("state directory {} is on a network filesystem; LMDB needs a local disk "
                    "(set -o state_dir=/var/lib/originfs/NAME)",
                    parent));
  }
  auto idx = LmdbIndex::Open(dir, options);
  if (idx) return std::unique_ptr<Index>(std::move(*idx));
  // Only an index: move a broken one aside and start empty.
  std::string aside = fmt::format("{}.broken-{}", dir, std::time(nullptr));
  spdlog::warn("index at {} unusable ({}); moving it to {} and starting empty", dir,
               idx.error().message, aside);
  if (rename(dir.c_str(), aside.c_str()) != 0) return std::unexpected(idx.error());
  auto again = LmdbIndex::Open(dir, options);
  if (!again) return std::unexpected(again.error());
  return std::unique_ptr<Index>(std::move(*again));
}

}  // namespace originfs

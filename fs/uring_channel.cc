#include "fs/uring_channel.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <liburing.h>
#include <linux/fuse.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/common/thread_pool.h"

namespace originfs {
namespace {

// Protocol 7.42 (Linux 6.14), newer than this system's <linux/fuse.h>.
constexpr uint32_t kCmdRegister = 1;
constexpr uint32_t kCmdCommitAndFetch = 2;
struct EntInOut {  // struct fuse_uring_ent_in_out
  uint64_t flags;
  uint64_t commit_id;
  uint32_t payload_sz;
  uint32_t padding;
  uint64_t reserved;
};
struct ReqHeader {   // struct fuse_uring_req_header
  char in_out[128];  // fuse_in_header on fetch, fuse_out_header on commit
  char op_in[128];   // the operation's fixed argument (the request's first)
  EntInOut ent;
};
struct CmdReq {  // struct fuse_uring_cmd_req, in the SQE's 80-byte command area
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};
static_assert(sizeof(ReqHeader) == 288);

// Every request the daemon has not answered yet holds an entry (a lookup
// waiting for an origin, a read following a download): the entries bound
// the requests in flight per queue, as max_threads bounds blocked handlers
// on /dev/fuse. Their buffers are sized to the payload the INIT reply
// allows (kMaxUringPayload), so 128 entries cost 16 MiB of address space
// per queue, touched only as large requests use them.
constexpr int kThreadsPerQueue = 2;
constexpr int kEntriesPerThread = 64;

struct Ring;
struct Entry {
  Ring* ring = nullptr;
  ReqHeader* header = nullptr;
  char* payload = nullptr;
  std::size_t payload_size = 0;
  struct iovec iov[2] = {};
  uint64_t commit_id = 0;
};

struct Ring {
  int qid = 0;
  io_uring uring{};
  bool initialized = false;
  std::mutex mu;        // submissions (any thread); completions are the owner's
  bool closed = false;  // guarded by mu: the ring is gone, submit nothing
  std::vector<std::unique_ptr<Entry>> entries;
  int stop_fd = -1;
  std::thread thread;
};

struct State {
  fuse_session* se = nullptr;
  // Operations that may wait for a download to land (or, fsync, for the
  // disk) run here, so a ring's thread only ever serves requests that
  // answer at once or later from a download thread.
  std::unique_ptr<ThreadPool> waiting_ops;
  int devfd = -1;
  std::size_t max_payload = 0;
  std::vector<std::unique_ptr<Ring>> rings;
  std::mutex pending_mu;
  std::unordered_map<uint64_t, Entry*> pending;  // unique -> its entry, until replied
  bool stopped = false;                          // guarded by pending_mu
  std::atomic<int> registered{0};
  std::atomic<bool> logged_ready{false};
};

std::mutex g_mu;  // StartUring / StopUring
std::unique_ptr<State> g_state;
std::atomic<State*> g_active{nullptr};
std::atomic<uint64_t> g_requests{0};

// The stop marker in a CQE's user data (entries are pointers).
constexpr uint64_t kStopTag = 1;

void FreeEntry(Entry& e) {
  std::free(e.header);
  std::free(e.payload);
}

// Prepares (under ring.mu) the command for e: REGISTER or COMMIT_AND_FETCH.
bool Submit(State& s, Ring& r, Entry& e, uint32_t op) {
  if (r.closed) return false;
  io_uring_sqe* sqe = io_uring_get_sqe(&r.uring);
  if (!sqe) {
    io_uring_submit(&r.uring);
    sqe = io_uring_get_sqe(&r.uring);
  }
  if (!sqe) return false;
  std::memset(sqe, 0, 2 * sizeof(io_uring_sqe));  // SQE128: the command area follows
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = s.devfd;
  sqe->cmd_op = op;
  if (op == kCmdRegister) {
    sqe->addr = reinterpret_cast<uint64_t>(e.iov);
    sqe->len = 2;
  }
  auto* cmd = reinterpret_cast<CmdReq*>(sqe->cmd);
  cmd->qid = static_cast<uint16_t>(r.qid);
  cmd->commit_id = op == kCmdCommitAndFetch ? e.commit_id : 0;
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(&e));
  return io_uring_submit(&r.uring) >= 0;
}

void Dispatch(fuse_session* se, std::vector<char>& request) {
  fuse_buf buf;
  std::memset(&buf, 0, sizeof buf);
  buf.size = request.size();
  buf.mem = request.data();
  fuse_session_process_buf(se, &buf);
}

// Whether a request may block its thread until a download lands (see
// core/vfs/vfs.h: operations that need an origin file's bytes first), or on
// the disk. I/O without an open handle (fh 0, the zero-message open) may
// have to fetch the file first.
bool MayWait(const fuse_in_header& in, const char* op_in) {
  switch (in.opcode) {
    case FUSE_SETATTR:
    case FUSE_UNLINK:
    case FUSE_RENAME:
    case FUSE_RENAME2:
    case FUSE_LINK:
    case FUSE_SETXATTR:
    case FUSE_REMOVEXATTR:
    case FUSE_FSYNC:
    case FUSE_FSYNCDIR:
    case FUSE_FALLOCATE:
    case FUSE_COPY_FILE_RANGE:
    case FUSE_LSEEK:        // on a handle of a file still arriving, waits until it landed
    case FUSE_READDIR:      // the origin's listing (an index page) may be asked for;
    case FUSE_READDIRPLUS:  // lookups that need one defer themselves (Vfs::Lookup)
      return true;
    case FUSE_WRITE: {
      uint64_t fh;  // the first field of fuse_write_in
      std::memcpy(&fh, op_in, sizeof fh);
      return fh == 0;
    }
    default:
      return false;
  }
}

// Notes that unique's reply belongs in e; false once unmounted (nobody
// waits for the answer).
bool Track(State& s, uint64_t unique, Entry& e) {
  std::lock_guard lock(s.pending_mu);
  if (s.stopped) return false;
  s.pending[unique] = &e;
  return true;
}

// A request in e: reassembled as /dev/fuse would have delivered it
// (header, the operation's argument, the rest) and handed to libfuse.
void Handle(State& s, Entry& e, std::vector<char>& scratch) {
  fuse_in_header in;
  std::memcpy(&in, e.header->in_out, sizeof in);
  uint32_t payload = e.header->ent.payload_sz;
  e.commit_id = e.header->ent.commit_id;
  std::size_t rest = sizeof in + static_cast<std::size_t>(payload);
  if (in.len < rest || in.len - rest > sizeof e.header->op_in || payload > e.payload_size) {
    spdlog::error("io_uring: malformed request (opcode {}, len {}, payload {})", in.opcode, in.len,
                  payload);
    fuse_out_header out{sizeof(fuse_out_header), -EIO, in.unique};
    struct iovec iov {
      &out, sizeof out
    };
    if (!Track(s, in.unique, e)) return;
    CommitUringReply(in.unique, &iov, 1);
    return;
  }
  std::size_t op = in.len - rest;
  scratch.resize(in.len);
  std::memcpy(scratch.data(), &in, sizeof in);
  std::memcpy(scratch.data() + sizeof in, e.header->op_in, op);
  std::memcpy(scratch.data() + sizeof in + op, e.payload, payload);
  if (!Track(s, in.unique, e)) return;
  g_requests.fetch_add(1, std::memory_order_relaxed);
  if (MayWait(in, e.header->op_in)) {
    auto copy = std::make_shared<std::vector<char>>(scratch.begin(), scratch.begin() + in.len);
    s.waiting_ops->Submit([se = s.se, copy] { Dispatch(se, *copy); });
    return;
  }
  Dispatch(s.se, scratch);
}

void RingLoop(State& s, Ring& r) {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(r.qid, &cpus);
  // Requests of this queue come from tasks on this CPU: serve them there.
  if (sched_setaffinity(0, sizeof cpus, &cpus) != 0)
    spdlog::debug("io_uring queue {}: pinning: {}", r.qid, std::strerror(errno));
  std::vector<char> scratch;
  scratch.reserve(s.max_payload + 512);
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_wait_cqe(&r.uring, &cqe);
    if (rc == -EINTR) continue;
    if (rc < 0) {
      spdlog::error("io_uring queue {}: {}", r.qid, std::strerror(-rc));
      return;
    }
    uint64_t tag = io_uring_cqe_get_data64(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&r.uring, cqe);
    if (tag == kStopTag) return;
    auto* e = reinterpret_cast<Entry*>(tag);
    if (res == -EINTR || res == -EAGAIN) {  // resend the same command
      std::lock_guard lock(r.mu);
      Submit(s, r, *e, e->commit_id ? kCmdCommitAndFetch : kCmdRegister);
      continue;
    }
    if (res < 0) {
      // ENOTCONN: the connection ended (unmount); anything else ends this
      // entry (the queue's others go on).
      if (res != -ENOTCONN)
        spdlog::warn("io_uring queue {}: command failed: {}", r.qid, std::strerror(-res));
      continue;
    }
    if (!s.logged_ready.exchange(true))
      spdlog::info("FUSE over io_uring: requests arrive through {} rings ({} queues)",
                   s.rings.size(), s.rings.size() / kThreadsPerQueue);
    Handle(s, *e, scratch);
  }
}

// The kernel's queues: one per possible CPU.
int PossibleCpus() {
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string line;
  if (std::getline(in, line)) {
    auto dash = line.rfind('-');
    try {
      return (dash == std::string::npos ? 0 : std::stoi(line.substr(dash + 1))) + 1;
    } catch (...) {
    }
  }
  long n = sysconf(_SC_NPROCESSORS_CONF);
  return n > 0 ? static_cast<int>(n) : 1;
}

int SetUpRing(State& s, Ring& r) {
  io_uring_params p;
  std::memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_SQE128;
  int rc = io_uring_queue_init_params(2 * kEntriesPerThread + 2, &r.uring, &p);  // + the stop poll
  if (rc < 0) return rc;
  r.initialized = true;
  r.stop_fd = eventfd(0, EFD_CLOEXEC);
  if (r.stop_fd < 0) return -errno;
  for (int i = 0; i < kEntriesPerThread; ++i) {
    auto e = std::make_unique<Entry>();
    e->ring = &r;
    e->header = static_cast<ReqHeader*>(std::aligned_alloc(4096, 4096));
    e->payload_size = s.max_payload;
    e->payload = static_cast<char*>(std::aligned_alloc(4096, (s.max_payload + 4095) / 4096 * 4096));
    if (!e->header || !e->payload) {
      FreeEntry(*e);
      return -ENOMEM;
    }
    std::memset(e->header, 0, sizeof(ReqHeader));
    e->iov[0] = {e->header, sizeof(ReqHeader)};
    e->iov[1] = {e->payload, e->payload_size};
    r.entries.push_back(std::move(e));
  }
  std::lock_guard lock(r.mu);
  io_uring_sqe* sqe = io_uring_get_sqe(&r.uring);
  if (!sqe) return -EBUSY;
  io_uring_prep_poll_add(sqe, r.stop_fd, POLLIN);
  io_uring_sqe_set_data64(sqe, kStopTag);
  for (auto& e : r.entries) {
    if (!Submit(s, r, *e, kCmdRegister)) return -EIO;
  }
  return 0;
}

// Stops the rings. With release_memory false the entries and the state stay
// allocated: a download thread may still hold an entry it is replying to
// (its commit then finds the ring closed), and the process ends soon after.
void TearDown(State& s, bool release_memory) {
  if (s.waiting_ops) s.waiting_ops->Drain();  // their replies still commit
  {
    std::lock_guard lock(s.pending_mu);
    s.stopped = true;
    s.pending.clear();
  }
  for (auto& r : s.rings) {
    if (r->stop_fd >= 0) {
      uint64_t one = 1;
      (void)!write(r->stop_fd, &one, sizeof one);
    }
  }
  for (auto& r : s.rings)
    if (r->thread.joinable()) r->thread.join();
  for (auto& r : s.rings) {
    std::lock_guard lock(r->mu);
    r->closed = true;
    if (r->initialized) io_uring_queue_exit(&r->uring);
    if (r->stop_fd >= 0) close(r->stop_fd);
    r->stop_fd = -1;
    if (release_memory)
      for (auto& e : r->entries) FreeEntry(*e);
  }
}

}  // namespace

int StartUring(fuse_session* se, int devfd, std::size_t max_payload) {
  std::lock_guard lock(g_mu);
  if (g_state) return -EBUSY;
  auto s = std::make_unique<State>();
  s->se = se;
  s->devfd = devfd;
  s->max_payload = max_payload;
  s->waiting_ops = std::make_unique<ThreadPool>(8);
  int queues = PossibleCpus();
  for (int q = 0; q < queues; ++q) {
    for (int t = 0; t < kThreadsPerQueue; ++t) {
      auto r = std::make_unique<Ring>();
      r->qid = q;
      s->rings.push_back(std::move(r));
    }
  }
  for (auto& r : s->rings) {
    int rc = SetUpRing(*s, *r);
    if (rc < 0) {
      spdlog::warn("FUSE over io_uring: setting up queue {}: {}; requests stay on /dev/fuse",
                   r->qid, std::strerror(-rc));
      TearDown(*s, true);  // never active: nothing holds an entry
      return rc;
    }
  }
  g_active.store(s.get());
  for (auto& r : s->rings) {
    Ring* ring = r.get();
    State* st = s.get();
    ring->thread = std::thread([st, ring] { RingLoop(*st, *ring); });
  }
  g_state = std::move(s);
  return 0;
}

void StopUring() {
  std::lock_guard lock(g_mu);
  if (!g_state) return;
  if (!g_active.load()) return;  // stopped already
  TearDown(*g_state, false);
  g_active.store(nullptr);
  spdlog::info("FUSE over io_uring: {} requests served through the rings", g_requests.load());
}

uint64_t UringRequests() { return g_requests.load(std::memory_order_relaxed); }

bool UringActive() { return g_active.load(std::memory_order_relaxed) != nullptr; }

long CommitUringReply(uint64_t unique, const struct iovec* iov, int count) {
  State* s = g_active.load(std::memory_order_acquire);
  if (!s || count < 1 || iov[0].iov_len < sizeof(fuse_out_header)) return -1;
  Entry* e = nullptr;
  {
    std::lock_guard lock(s->pending_mu);
    auto it = s->pending.find(unique);
    if (it == s->pending.end()) return -1;
    e = it->second;
    s->pending.erase(it);
  }
  fuse_out_header out;
  std::memcpy(&out, iov[0].iov_base, sizeof out);
  std::size_t total = 0;
  for (int i = 1; i < count; ++i) total += iov[i].iov_len;
  if (total > e->payload_size) {
    spdlog::error("io_uring: reply of {} bytes exceeds the ring buffer", total);
    out.error = -EIO;
    total = 0;
  } else {
    std::size_t at = 0;
    for (int i = 1; i < count; ++i) {
      std::memcpy(e->payload + at, iov[i].iov_base, iov[i].iov_len);
      at += iov[i].iov_len;
    }
  }
  out.len = static_cast<uint32_t>(sizeof out + total);
  std::memcpy(e->header->in_out, &out, sizeof out);
  e->header->ent.payload_sz = static_cast<uint32_t>(total);
  Ring& r = *e->ring;
  std::lock_guard lock(r.mu);
  if (!Submit(*s, r, *e, kCmdCommitAndFetch)) {
    spdlog::error("io_uring: could not commit a reply");
    return -1;
  }
  return static_cast<long>(sizeof out + total);
}

}  // namespace originfs

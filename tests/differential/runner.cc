#include "tests/differential/runner.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include "tests/differential/world.h"
#include "tests/support/temp_dir.h"
#include "tests/support/web_server.h"

namespace originfs::difffuzz {
namespace {

using namespace std::chrono_literals;

std::string W(int w) { return "w" + std::to_string(w); }

// How long after the faults end a failure the daemon remembers
// (failure_backoff=1) may still be answered.
constexpr std::int64_t kFailureMemoryMs = 1500;

struct WorkerRoots {
  std::string mnt, ref, bucket;  // the worker's root in each
};

// One worker: generated ops on its own subtree of the mount and the
// reference; returns false after a divergence (reported, sequence written).
class Worker {
 public:
  Worker(const Config& c, const World& world, Shared& s, int w, int workers)
      : c_(c), tree_(world.tree), s_(s), w_(w), workers_(workers), rng_(c.seed * 1000003 + w) {
    p_ = {world.mnt + "/" + W(w), world.ref + "/" + W(w), world.bucket + "/" + W(w)};
    shared_mnt_ = world.mnt + "/shared/v";
    shared_bucket_ = world.bucket + "/shared/v";
  }

  bool Run() {
    while (!s_.stop && !s_.failed) {
      if (c_.max_ops && s_.ops >= c_.max_ops) break;
      if (s_.pause) {
        ++s_.paused;
        while (s_.pause && !s_.stop) std::this_thread::sleep_for(5ms);
        --s_.paused;
        Op mark;
        mark.kind = Kind::kRemount;
        mark.flags = s_.reset ? 1 : 0;
        // After a reset nothing before it matters for a replay.
        if (mark.flags) done_.clear();
        done_.push_back(mark);
        continue;
      }
      if (rng_() % 12 == 0) {
        if (!SharedRead()) return false;
        continue;
      }
      Op op = Generate(rng_, Pool());
      if (KnownDefect(tree_, w_, op)) {
        ++s_.skipped;
        continue;
      }
      if (!Step(op)) return false;
    }
    return true;
  }

 private:
  // Within kFailureMemoryMs of the faults' end: a failure the daemon
  // remembers (failure_backoff=1) may still be answered.
  bool RecentlyFaulty() const {
    std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now().time_since_epoch())
                           .count();
    return now - s_.calm_since_ms.load() < kFailureMemoryMs;
  }

  bool Step(const Op& op) {
    bool origin = InvolvesOrigin(p_.bucket, op);
    std::uint64_t epoch = s_.chaos_epoch;
    bool chaos = s_.chaos_on;
    Begin(Serialize(op));
    Outcome m = Apply(p_.mnt, op, true);
    s_.started_ms[w_] = 0;
    chaos = chaos || s_.chaos_on || s_.chaos_epoch != epoch || RecentlyFaulty();
    done_.push_back(op);
    recent_.push_back(Serialize(op) + " -> " + Describe(m));
    if (recent_.size() > 12) recent_.erase(recent_.begin());
    ++s_.ops;
    // While the origin misbehaves, EIO is the honest answer for a name it
    // has to be asked about; the op then did nothing.
    if (m.err == EIO && chaos && origin) {
      ++s_.eio_allowed;
      // A copy may have created or written part of its destination before
      // the source failed: the reference takes the mount's destination.
      if (op.kind == Kind::kCopyRange || op.kind == Kind::kSendfile) return Resync(op.b);
      return true;
    }
    Outcome r = Apply(p_.ref, op, false);
    ++(r.err ? s_.err : s_.ok)[static_cast<int>(op.kind)];
    if (m == r) return true;
    return Fail(W(w_) + "/" + op.a + ": " + KindName(op.kind) + "\n  " + Difference(m, r));
  }

  bool Resync(const std::string& rel) {
    std::string m = p_.mnt + "/" + rel, r = p_.ref + "/" + rel;
    struct stat st {};
    if (lstat(m.c_str(), &st) != 0) return true;  // not created: nothing to take
    if (!S_ISREG(st.st_mode)) return true;        // the copy never opened it
    auto body = testing::ReadFile(m);
    if (!body) return Fail(W(w_) + "/" + rel + ": unreadable after a failed copy into it");
    int fd = open(r.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return Fail(W(w_) + "/" + rel + ": reference: " + strerror(errno));
    bool ok = write(fd, body->data(), body->size()) == static_cast<ssize_t>(body->size());
    close(fd);
    return ok ? true : Fail(W(w_) + "/" + rel + ": reference write failed");
  }

  // A file the origin replaces every 250 ms: every read sees one whole
  // version, and once a reader has seen a whole one, everyone sees that.
  bool SharedRead() {
    int k = static_cast<int>(rng_() % kSharedFiles);
    std::string path = shared_mnt_ + std::to_string(k);
    struct stat st {};
    bool landed = lstat((shared_bucket_ + std::to_string(k)).c_str(), &st) == 0;
    std::uint64_t epoch = s_.chaos_epoch;
    bool chaos = s_.chaos_on;
    Op op;
    op.kind = rng_() % 3 ? Kind::kRead : Kind::kPread;
    op.a = "v" + std::to_string(k);
    op.off = rng_() % (2u << 20);
    op.len = static_cast<std::uint32_t>(rng_() % 200000);
    Begin("shared " + Serialize(op));
    Outcome o = Apply(shared_mnt_.substr(0, shared_mnt_.size() - 2), op, true);
    s_.started_ms[w_] = 0;
    ++s_.shared_reads;
    chaos = chaos || s_.chaos_on || s_.chaos_epoch != epoch || RecentlyFaulty();
    if (o.err == EIO && chaos && !landed) return true;
    if (o.err) return Fail("shared/" + op.a + ": " + Describe(o));
    const auto& versions = tree_.versions[k];
    int pinned = s_.pinned[k];
    if (op.kind == Kind::kRead) {
      int found = -1;
      for (int i = 0; i < static_cast<int>(versions.size()); ++i)
        if (o.value == versions[i]) found = i;
      if (found < 0)
        return Fail("shared/" + op.a + ": a read matches no version (" + Describe(o) + ")");
      if (pinned < 0 && s_.pinned[k].compare_exchange_strong(pinned, found)) return true;
      if (pinned != found)
        return Fail("shared/" + op.a + ": version " + std::to_string(found) + " after version " +
                    std::to_string(pinned) + " was read whole");
      return true;
    }
    for (int i = 0; i < static_cast<int>(versions.size()); ++i) {
      if (pinned >= 0 && i != pinned) continue;
      std::string want = op.off < versions[i].size() ? versions[i].substr(op.off, op.len) : "";
      if (o.value == want) return true;
    }
    return Fail("shared/" + op.a + ": pread off=" + std::to_string(op.off) + " matches no version" +
                (pinned >= 0 ? " (pinned " + std::to_string(pinned) + ")" : "") + ": " +
                Describe(o));
  }

  void Begin(const std::string& what) {
    std::snprintf(s_.current[w_], sizeof s_.current[w_], "%s", what.c_str());
    s_.started_ms[w_] = NowMs();
  }

  bool Fail(const std::string& what) {
    if (s_.failed.exchange(1)) return false;  // someone else's failure comes first
    std::string file = c_.out_dir + "/difffuzz-" + std::to_string(c_.seed) + "-" + W(w_) + ".ops";
    WriteOps(file, c_.seed, workers_, w_, done_);
    std::snprintf(s_.failure_file, sizeof s_.failure_file, "%s", file.c_str());
    std::string recent;
    for (const auto& r : recent_) recent += "    " + r + "\n";
    std::cerr << "DIVERGENCE (seed " << c_.seed << ", worker " << w_ << ", op " << done_.size()
              << "): " << what << "\n  sequence: " << file
              << "\n  the worker's last ops on the mount:\n"
              << recent << std::flush;
    return false;
  }

  const Config& c_;
  const Tree& tree_;
  Shared& s_;
  int w_, workers_;
  std::mt19937_64 rng_;
  WorkerRoots p_;
  std::string shared_mnt_, shared_bucket_;
  std::vector<Op> done_;
  std::vector<std::string> recent_;  // the last ops with the mount's answers
};

// The coordinator's faults: half of the time the origin behaves; otherwise
// it is slow, flaky (5xx and bodies cut halfway), stalls mid-body, or is down.
void NextWeather(std::mt19937_64& rng, World& world, Shared& s) {
  testing::OriginFaults f;
  switch (rng() % 8) {
    case 4:
      f.delay_ms = 50 + static_cast<int>(rng() % 300);
      break;
    case 5:
      f.fail_rate = 0.3;
      break;
    case 6:
      f.stall_ms = 500 + static_cast<int>(rng() % 1500);
      break;
    case 7:
      f.down = true;
      break;
    default:
      break;
  }
  bool on = f.down || f.delay_ms || f.fail_rate > 0 || f.stall_ms;
  if (on) s.chaos_on = 1;  // before the faults start ...
  ++s.chaos_epoch;
  world.origin.SetFaults(f);
  ++s.chaos_epoch;
  if (!on && s.chaos_on) {
    s.calm_since_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  }
  if (!on) s.chaos_on = 0;  // ... and after they end
}

// Runs the workers of one process as threads; its exit code.
int WorkerProcess(const Config& c, const World& world, Shared& s, int first, int workers) {
  std::vector<std::thread> threads;
  std::atomic<bool> ok{true};
  for (int t = 0; t < c.threads; ++t)
    threads.emplace_back([&, w = first + t] {
      Worker worker(c, world, s, w, workers);
      if (!worker.Run()) ok = false;
      ++s.finished;
    });
  for (auto& t : threads) t.join();
  return ok ? 0 : 1;
}

// The kernel stacks of a process's threads (where a hang waits), and the
// operations still running.
std::string Stacks(pid_t pid, bool all = false) {
  std::string out;
  std::error_code ec;
  for (const auto& t :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    auto stack = testing::ReadFile(t.path().string() + "/stack");
    auto comm = testing::ReadFile(t.path().string() + "/comm");
    if (stack && (all || stack->find("fuse") != std::string::npos))
      out +=
          "  thread " + t.path().filename().string() + " (" + (comm ? *comm : "") + "):\n" + *stack;
  }
  return out;
}

// The daemon's threads where they wait (gdb, if installed): a deadlock
// shows as threads blocked on each other's locks.
std::string UserStacks(pid_t pid) {
  if (testing::FindInPath("gdb").empty()) return "";
  auto r =
      e2e::RunCommand({"gdb", "-p", std::to_string(pid), "-batch", "-ex", "thread apply all bt 25"},
                      std::chrono::seconds(90));
  return r.out;
}

std::string Running(const Shared& s, int workers) {
  std::string out;
  // Requests the kernel sent that no reply has answered yet.
  std::error_code ec;
  for (const auto& c : std::filesystem::directory_iterator("/sys/fs/fuse/connections", ec)) {
    auto waiting = testing::ReadFile(c.path().string() + "/waiting");
    if (waiting)
      out += "  fuse connection " + c.path().filename().string() + ": waiting " + *waiting;
  }
  for (int w = 0; w < workers; ++w)
    if (s.started_ms[w].load())
      out += "  worker " + std::to_string(w) + ": " + s.current[w] + " (for " +
             std::to_string(NowMs() - s.started_ms[w].load()) + " ms)\n";
  return out;
}

// Waits until every worker is paused (or done); false after seconds, or at
// once (with why set) when a worker process died: its threads never will.
bool WaitPaused(Shared& s, int workers, int seconds, const std::vector<pid_t>& children,
                std::string* why) {
  auto deadline = NowMs() + seconds * 1000LL;
  while (s.paused + s.finished < workers) {
    for (pid_t pid : children) {
      siginfo_t info{};
      // WNOWAIT: only a look; the main loop reaps it.
      if (pid > 0 &&
          waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          info.si_pid == pid && !(info.si_code == CLD_EXITED && info.si_status == 0)) {
        *why = info.si_code == CLD_EXITED
                   ? "worker process exited with " + std::to_string(info.si_status)
                   : "worker process killed by signal " + std::to_string(info.si_status);
        return false;
      }
    }
    if (NowMs() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

}  // namespace

int Run(const Config& c) {
  // --procs 0: the worker threads run in this process (no fork; sanitizer
  // runtimes are not all safe to fork with threads running).
  int workers = std::max(c.procs, 1) * c.threads;
  World world(c.seed, workers, std::chrono::seconds(c.seconds + 3600));
  if (!world.Mount()) return 1;
  Shared* s = NewShared();
  if (!s) return 1;
  std::vector<pid_t> children;
  for (int p = 0; p < c.procs; ++p) {
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      _exit(WorkerProcess(c, world, *s, p * c.threads, workers));
    }
    if (pid < 0) return 1;
    children.push_back(pid);
  }

  std::mt19937_64 rng(c.seed ^ 0xC0FFEE);
  auto start = NowMs();
  auto weather_at = start, remount_at = start + 1500 + static_cast<std::int64_t>(rng() % 4000);
  int weather_changes = 0, remounts = 0, resets = 0;
  bool failed = false;
  std::string why;
  std::atomic<int> in_process_rc{-1};
  std::thread in_process;
  if (c.procs == 0)
    in_process = std::thread([&] { in_process_rc = WorkerProcess(c, world, *s, 0, workers); });
  std::size_t running = children.size() + (c.procs == 0 ? 1 : 0);
  bool in_process_done = false;
  while (running > 0) {
    auto now = NowMs();
    if (now - start > c.seconds * 1000LL) s->stop = 1;
    if (s->failed) s->stop = 1;
    if (c.chaos && !s->stop && now >= weather_at) {
      NextWeather(rng, world, *s);
      ++weather_changes;
      weather_at = now + 300 + static_cast<std::int64_t>(rng() % 2500);
    }
    for (int w = 0; w < workers && !failed; ++w) {
      auto t = s->started_ms[w].load();
      if (t && now - t > c.hang_seconds * 1000LL) {
        failed = true;
        why = "HANG (seed " + std::to_string(c.seed) + ", worker " + std::to_string(w) +
              "): " + s->current[w] + " still running after " + std::to_string(c.hang_seconds) +
              " s\n" + Running(*s, workers) + "daemon:\n" + Stacks(world.mount->pid(), true) +
              UserStacks(world.mount->pid());
        for (pid_t child : children)
          why += "workers " + std::to_string(child) + ":\n" + Stacks(child, true);
        s->failed = 1;
        e2e::AbortConnection(world.mnt);
      }
    }
    if (c.remount && !s->stop && !failed && now >= remount_at) {
      s->pause = 1;
      std::string died;
      if (!WaitPaused(*s, workers, c.hang_seconds, children, &died) && !died.empty()) {
        failed = true;
        why = died + " (seed " + std::to_string(c.seed) + ")\n" + Running(*s, workers);
        s->failed = 1;
      } else if (!died.empty() || s->paused + s->finished < workers) {
        failed = true;
        why = "HANG: workers did not pause for a remount\n" + Running(*s, workers) + "daemon:\n" +
              Stacks(world.mount->pid(), true) + UserStacks(world.mount->pid());
        for (pid_t child : children)
          why += "workers " + std::to_string(child) + ":\n" + Stacks(child, true);
        s->failed = 1;
        e2e::AbortConnection(world.mnt);
      } else {
        // Half of them also empty the bucket: every name is the origin's again.
        bool reset = rng() % 2;
        s->reset = reset;
        bool ok = world.Unmount();
        if (ok && reset) {
          world.Reset();
          for (auto& v : s->pinned) v = -1;
          ++resets;
        }
        if (!ok || !world.Mount()) {
          failed = true;
          why = "remount failed";
          s->failed = 1;
        }
      }
      ++remounts;
      s->pause = 0;
      remount_at = NowMs() + 1500 + static_cast<std::int64_t>(rng() % 4000);
    }
    if (c.procs == 0 && !in_process_done && in_process_rc >= 0) {
      in_process_done = true;
      if (in_process_rc != 0) failed = true;
      --running;
    }
    for (auto& pid : children) {
      int status = 0;
      if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
          failed = true;
          s->failed = 1;  // the others stop too (and no remount waits for the dead)
        }
        if (WIFSIGNALED(status) && why.empty())
          why = "worker process killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
                strsignal(WTERMSIG(status)) + ")\n" + Running(*s, workers);
        pid = -1;
        --running;
      }
    }
    std::this_thread::sleep_for(20ms);
  }
  if (in_process.joinable()) in_process.join();
  double secs = static_cast<double>(NowMs() - start) / 1000.0;
  world.origin.SetFaults({});
  s->chaos_on = 0;
  // A failure the daemon still remembers may answer EIO for a while after
  // the faults end (the workers allow it as long): the final comparison
  // starts after that.
  std::this_thread::sleep_for(std::chrono::milliseconds(kFailureMemoryMs));

  // The end: nothing may have been lost, before and after a remount.
  if (!failed && world.mount && (kill(world.mount->pid(), 0) != 0 || !e2e::IsMounted(world.mnt))) {
    failed = true;
    why = "the daemon is gone";
  }
  for (int pass = 0; pass < 2 && !failed; ++pass) {
    if (pass == 1 && (!world.Unmount() || !world.Mount())) {
      failed = true;
      why = "final remount failed";
      break;
    }
    for (int w = 0; w < workers && !failed; ++w) {
      auto d = CompareTrees(world.mnt + "/" + W(w), world.ref + "/" + W(w));
      if (!d.empty()) {
        failed = true;
        why = std::string("final comparison") + (pass ? " after a remount" : "") + ": " + d;
      }
    }
  }
  std::uint64_t ops = s->ops + s->shared_reads;
  std::cout << "differential_fuzz: seed " << c.seed << ": " << ops << " operations in " << secs
            << " s (" << static_cast<std::uint64_t>(static_cast<double>(ops) / secs) << "/s; "
            << s->shared_reads << " reads of replaced files, " << s->eio_allowed
            << " EIO while the origin misbehaved, " << s->skipped
            << " skipped (renames of origin directories)), " << weather_changes
            << " origin changes, " << remounts << " remounts (" << resets
            << " with an emptied bucket)" << std::endl;
  std::cout << "  origin requests: " << world.origin.TotalCount() << "\n";
  std::cout << "  ops (succeeded/failed alike on both sides):";
  for (int k = 0; k < static_cast<int>(Kind::kRemount); ++k)
    std::cout << " " << KindName(static_cast<Kind>(k)) << " " << s->ok[k] << "/" << s->err[k];
  std::cout << std::endl;
  if (!why.empty()) std::cerr << why << std::endl;
  if (failed || s->failed) {
    std::string log = c.out_dir + "/difffuzz-" + std::to_string(c.seed) + ".log";
    std::filesystem::copy_file(world.root.Join("log"), log,
                               std::filesystem::copy_options::overwrite_existing);
    std::cerr << "daemon log (whole: " << log << "), last lines:\n" << world.LogTail(40);
  }
  std::string failure_file = s->failure_file;
  bool ok = !failed && !s->failed;
  if (!world.Unmount()) ok = false;
  if (!failure_file.empty()) {
    std::cerr << "minimizing " << failure_file << " (replay: differential_fuzz --replay "
              << failure_file << ")" << std::endl;
    Minimize(c, failure_file);
  }
  if (!ok) std::cerr << "FAILED: seed " << c.seed << std::endl;
  return ok ? 0 : 1;
}

}  // namespace originfs::difffuzz

#include "fs/daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/fmt/fmt.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include "core/common/counters.h"
#include "core/config/mount_options.h"
#include "core/config/rules.h"
#include "core/mirror/mirror.h"
#include "core/origin/http_client.h"
#include "core/store/bucket_store.h"
#include "core/store/index.h"
#include "core/vfs/vfs.h"
#include "fs/bucket_watch.h"
#include "fs/cli/commands.h"
#include "fs/fuse_ops.h"
#include "fs/kernel_channel.h"
#include "fs/log_sink.h"
#include "fs/notifier.h"
#include "fs/uring_channel.h"

namespace originfs {

namespace {

constexpr int kExitUsage = 1;
constexpr int kExitMountFailure = 32;

struct CommandLine {
  std::string bucket, mountpoint;
  MountOptions opts;
  bool foreground = false;
  bool debug = false;
};

Result<CommandLine> ParseCommandLine(int argc, char** argv) {
  CommandLine cl;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-f") {
      cl.foreground = true;
    } else if (a == "-d" || a == "--debug") {
      cl.foreground = cl.debug = true;
    } else if (a == "-o") {
      if (i + 1 >= argc) return Fail(EINVAL, "-o needs an argument");
      if (auto r = ParseOptionList(argv[++i], cl.opts); !r) return std::unexpected(r.error());
    } else if (a.starts_with("-o")) {
      if (auto r = ParseOptionList(a.substr(2), cl.opts); !r) return std::unexpected(r.error());
    } else if (a == "-s") {
      cl.opts.max_threads = 1;
    } else if (!a.empty() && a[0] == '-') {
      return Fail(EINVAL, "unknown argument " + a);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2)
    return Fail(EINVAL, "expected BUCKET_DIR and MOUNTPOINT (see originfs --help)");
  cl.bucket = positional[0];
  cl.mountpoint = positional[1];
  if (cl.debug) cl.opts.log_level = "debug";
  return cl;
}

Result<RuleSet> LoadRules(const MountOptions& o) {
  if (!o.rules_file.empty() && !o.origin.empty())
    return Fail(EINVAL, "give either rules=FILE or origin=URL, not both");
  if (!o.rules_file.empty()) return RuleSet::Load(o.rules_file);
  if (!o.origin.empty()) return RuleSet::SingleOrigin(o.origin);
  return Fail(EINVAL, "no rules: give -o rules=FILE or -o origin=URL");
}

Result<void> SetupLogging(const CommandLine& cl) {
  std::shared_ptr<spdlog::logger> logger;
  if (!cl.opts.log_file.empty()) {
    // spdlog would create missing parent directories: a typo must not.
    std::string parent = cl.opts.log_file.substr(0, cl.opts.log_file.find_last_of('/') + 1);
    struct stat pst;
    if (!parent.empty() && (stat(parent.c_str(), &pst) != 0 || !S_ISDIR(pst.st_mode)))
      return Fail(EINVAL, fmt::format("log_file {}: directory {} does not exist", cl.opts.log_file,
                                      parent));
    try {
      logger = spdlog::basic_logger_mt("originfs", cl.opts.log_file);
    } catch (const std::exception& e) {
      return Fail(EINVAL, fmt::format("log_file {}: {}", cl.opts.log_file, e.what()));
    }
  } else if (cl.foreground) {
    logger = spdlog::stderr_logger_mt("originfs");
  } else if (access("/dev/log", W_OK) == 0) {
    logger = spdlog::syslog_logger_mt("originfs", "originfs", LOG_PID, LOG_DAEMON);
  } else {
    // No syslog daemon here (containers): keep the log next to the state.
    char real[PATH_MAX];
    std::string bucket = realpath(cl.bucket.c_str(), real) ? std::string(real) : cl.bucket;
    std::string path =
        BucketStore::StateDir(bucket, cl.opts.state_dir) + "/" + std::string(BucketStore::kLogFile);
    try {
      std::string dir = path.substr(0, path.rfind('/'));
      mkdir(dir.c_str(), 0700);
      logger = spdlog::basic_logger_mt("originfs", path);
      std::fprintf(stderr, "originfs: no syslog socket (/dev/log); logging to %s\n", path.c_str());
    } catch (const std::exception& e) {
      logger = spdlog::null_logger_mt("originfs");
    }
  }
  EscapeLogLines(*logger);  // a key with a newline cannot forge a log line
  logger->set_level(spdlog::level::from_str(cl.opts.log_level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return {};
}

// Descriptors are bounded by the vfs's descriptor cache (a quarter of the
// limit), whatever the kernel remembers; the soft limit goes up to the hard
// one so that bound is as roomy as the administrator allows. The hard limit
// is left alone: `ulimit -n` (or systemd's LimitNOFILE) is respected.
void RaiseFdLimit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// systemd's readiness protocol (Type=notify), without libsystemd.
void SdNotify(const char* state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || (path[0] != '/' && path[0] != '@')) return;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::size_t len = std::min(std::strlen(path), sizeof(addr.sun_path) - 1);
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  (void)!sendto(fd, state, std::strlen(state), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr),
                static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
  close(fd);
}

// Tells the parent (waiting in the foreground) how the mount went.
class Readiness {
 public:
  void Fork() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
      std::perror("originfs: pipe");
      std::exit(kExitMountFailure);
    }
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("originfs: fork");
      std::exit(kExitMountFailure);
    }
    if (pid > 0) {  // parent: wait for the child's verdict
      close(fds[1]);
      char status = kExitMountFailure;
      ssize_t n;
      do n = read(fds[0], &status, 1);
      while (n < 0 && errno == EINTR);
      std::_Exit(n == 1 ? status : kExitMountFailure);
    }
    close(fds[0]);
    fd_ = fds[1];
    setsid();
  }
  void Report(int status) {
    if (fd_ < 0) return;
    char c = static_cast<char>(status);
    (void)!write(fd_, &c, 1);
    close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

void DetachStdio() {
  int null = open("/dev/null", O_RDWR);
  if (null < 0) return;
  dup2(null, 0);
  dup2(null, 1);
  dup2(null, 2);
  if (null > 2) close(null);
}

// SIGHUP -> a byte on this pipe -> the control thread reloads the rules.
int g_control_pipe[2] = {-1, -1};

void OnSighup(int) {
  char c = 'r';
  (void)!write(g_control_pipe[1], &c, 1);
}

// SIGTERM/SIGINT: libfuse's handler ends the loop; the loop then waits for
// its workers, some of which may be running downloads -> a byte on the pipe
// -> the control thread stops those.
struct sigaction g_fuse_term {
}, g_fuse_int{};

void OnStopSignal(int sig) {
  int saved = errno;
  const struct sigaction& prev = sig == SIGTERM ? g_fuse_term : g_fuse_int;
  if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) prev.sa_handler(sig);
  char c = 's';
  (void)!write(g_control_pipe[1], &c, 1);
  errno = saved;
}

std::atomic<bool> g_index_corrupt{false};  // the index turned out corrupt while running

// Background work of a running mount: reloads (SIGHUP) and the metrics file.
class Housekeeper {
 public:
  Housekeeper(const MountOptions& opts, BucketStore& store, Mirror& mirror, Vfs& vfs)
      : opts_(opts), store_(store), mirror_(mirror), vfs_(vfs) {}
  ~Housekeeper() { Stop(); }

  Result<void> Reload() {
    std::lock_guard lock(reload_mu_);
    if (opts_.rules_file.empty())
      return Fail(EINVAL, "mounted with origin=, there is no rules file to reload");
    auto rules = RuleSet::Load(opts_.rules_file);
    if (!rules) {
      spdlog::error("reload refused, keeping the old rules: {}", rules.error().message);
      return Fail(EINVAL, rules.error().message);
    }
    std::size_t n = rules->rules().size();
    mirror_.SetRules(std::move(*rules));
    spdlog::info("reloaded {} rule(s) from {}", n, opts_.rules_file);
    return {};
  }

  void Start() {
    if (pipe2(g_control_pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
      struct sigaction sa {};
      sa.sa_handler = OnSighup;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESTART;
      sigaction(SIGHUP, &sa, nullptr);  // replaces libfuse's "exit on SIGHUP"
      sa.sa_handler = OnStopSignal;
      sa.sa_flags = 0;                        // as libfuse's: the loop's waits must see EINTR
      sigaction(SIGTERM, &sa, &g_fuse_term);  // chained: libfuse's handler runs first
      sigaction(SIGINT, &sa, &g_fuse_int);
      control_ = std::thread([this] { ControlLoop(); });
    }
    if (!opts_.metrics_file.empty()) metrics_ = std::thread([this] { MetricsLoop(); });
    sweeper_ = std::thread([this] { SweepLoop(); });
  }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (g_control_pipe[1] >= 0) {
      char c = 'q';
      (void)!write(g_control_pipe[1], &c, 1);
    }
    if (control_.joinable()) control_.join();
    if (metrics_.joinable()) metrics_.join();
    if (sweeper_.joinable()) sweeper_.join();
    if (!opts_.metrics_file.empty()) WriteMetrics();
  }

 private:
  void ControlLoop() {
    for (;;) {
      pollfd p{g_control_pipe[0], POLLIN, 0};
      if (poll(&p, 1, -1) < 0 && errno != EINTR) return;
      char buf[16];
      ssize_t n = read(g_control_pipe[0], buf, sizeof buf);
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] == 'q') return;
        if (buf[i] == 's') mirror_.Shutdown();
        if (buf[i] == 'r') {
          spdlog::info("SIGHUP: reloading rules");
          vfs_.NoteReload(Reload());
        }
      }
    }
  }

  // A new file (never through a symlink), synced, renamed over: never torn.
  void WriteMetrics() {
    std::string text = FormatPrometheus(vfs_.Counters()) + FormatPrometheus(vfs_.RuleCounters());
    std::string tmp = opts_.metrics_file + ".tmp";
    unlink(tmp.c_str());
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
      spdlog::warn("metrics_file {}: {}", tmp, std::strerror(errno));
      return;
    }
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
              fdatasync(fd) == 0;
    ok = (close(fd) == 0) && ok;
    if (!ok || std::rename(tmp.c_str(), opts_.metrics_file.c_str()) != 0) {
      spdlog::warn("metrics_file {}: {}", opts_.metrics_file, std::strerror(errno));
      std::remove(tmp.c_str());
    }
  }

  // Staging files of instances that died (a host killed mid-download that
  // never comes back) are removed while we run, within kSweepInterval.
  static constexpr auto kSweepInterval = std::chrono::seconds(5);
  void SweepLoop() {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, kSweepInterval, [this] { return stopping_; })) {
      lock.unlock();
      store_.CleanDeadStaging();
      lock.lock();
    }
  }

  void MetricsLoop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      WriteMetrics();
      lock.lock();
      cv_.wait_for(lock, std::chrono::duration<double>(opts_.metrics_interval),
                   [this] { return stopping_; });
    }
  }

  const MountOptions& opts_;
  BucketStore& store_;
  Mirror& mirror_;
  Vfs& vfs_;
  std::mutex reload_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread control_, metrics_, sweeper_;
};

// The bucket and mount point, checked and made absolute (the daemon changes
// to "/" and must still find them to unmount); an exit code if unusable.
struct MountPaths {
  std::string bucket, mountpoint;
};

std::expected<MountPaths, int> CheckPaths(const CommandLine& cl) {
  struct stat st;
  if (stat(cl.bucket.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "originfs: bucket %s is not a directory\n", cl.bucket.c_str());
    return std::unexpected(kExitMountFailure);
  }
  if (stat(cl.mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "originfs: mount point %s is not a directory\n", cl.mountpoint.c_str());
    return std::unexpected(kExitMountFailure);
  }
  char bucket_real[PATH_MAX], mnt_real[PATH_MAX];
  if (!realpath(cl.bucket.c_str(), bucket_real) || !realpath(cl.mountpoint.c_str(), mnt_real)) {
    std::perror("originfs: realpath");
    return std::unexpected(kExitMountFailure);
  }
  // A second originfs on the same mount point would stack on the first and
  // hide it (both daemons live, one unreachable): refused.
  if (auto other = OriginfsMountSource(mnt_real)) {
    std::fprintf(stderr, "originfs: %s is already an originfs mount (of %s); unmount it first\n",
                 mnt_real, other->c_str());
    return std::unexpected(kExitMountFailure);
  }
  return MountPaths{bucket_real, mnt_real};
}

// libfuse's arguments: ours first, the user's may override.
std::vector<std::string> FuseArgs(const CommandLine& cl, const std::string& bucket) {
  std::string fsname = bucket;
  for (std::size_t i = 0; i < fsname.size(); ++i) {
    if (fsname[i] == ',' || fsname[i] == '\\') fsname.insert(i++, 1, '\\');
  }
  std::vector<std::string> fargs = {"originfs", "-o",
                                    "default_permissions,fsname=" + fsname + ",subtype=originfs"};
  for (const auto& o : cl.opts.fuse_options) {
    fargs.push_back("-o");
    fargs.push_back(o);
  }
  if (cl.debug) fargs.push_back("-d");
  return fargs;
}

// Everything below the FUSE adapter, built bottom up and torn down top down.
struct Layers {
  std::unique_ptr<BucketStore> store;
  std::unique_ptr<Index> index;
  std::unique_ptr<HttpClient> http;
  std::unique_ptr<Mirror> mirror;
  std::unique_ptr<Vfs> vfs;
  std::unique_ptr<Housekeeper> keeper;
  std::unique_ptr<BucketWatch> watch;  // calls into vfs: stopped first
};

// Long kernel caches for names in the bucket where the bucket is watched
// (changes of other programs become invalidations), short ones elsewhere.
// vfs: where the watcher's events go once it is made (Layers moves).
void ChooseCaches(const CommandLine& cl, const std::string& bucket, bool shared, FuseContext& ctx,
                  Layers& l, VfsOptions& vo, const std::shared_ptr<std::atomic<Vfs*>>& vfs) {
  vo.local_entry_timeout = cl.opts.entry_timeout;
  vo.local_attr_timeout = cl.opts.attr_timeout;
  if (shared || (cl.opts.entry_timeout_set && cl.opts.attr_timeout_set)) return;
  BucketWatch::Callbacks cb;
  // Events before the Vfs exists are of names the kernel cannot know yet.
  // The name in a directory the kernel knows; a file's attributes and
  // cached pages (a rewrite of the same size within one tick of the clock
  // leaves the times as they were: the pages go anyway).
  Notifier* n = ctx.notifier;
  cb.entry = [vfs, n](dev_t dev, ino_t dir, const std::string& name) {
    if (Vfs* v = vfs->load(); v && n)
      if (uint64_t node = v->NodeOfBucketFile(dev, dir)) n->InvalidateEntry(node, name);
  };
  cb.inode = [vfs, n](dev_t dev, ino_t ino) {
    if (Vfs* v = vfs->load(); v && n)
      if (uint64_t node = v->NodeOfBucketFile(dev, ino)) n->InvalidatePages(node, 0, 0);
  };
  cb.everything = [n] {
    spdlog::warn("changes in the bucket were lost: the kernel looks every name up again");
    if (n) n->InvalidateEverything();
  };
  auto w = BucketWatch::Start(bucket, std::move(cb));
  if (!w) {
    spdlog::info("bucket not watched ({}): the kernel keeps names for {} s, attributes for {} s",
                 w.error().message, vo.local_entry_timeout, vo.local_attr_timeout);
    return;
  }
  l.watch = std::move(*w);
  if (!cl.opts.entry_timeout_set) vo.local_entry_timeout = MountOptions::kLongCache;
  if (!cl.opts.attr_timeout_set) vo.local_attr_timeout = MountOptions::kLongCache;
}

Result<Layers> OpenLayers(const CommandLine& cl, const std::string& bucket, RuleSet rules,
                          FuseContext& ctx) {
  Layers l;
  StoreOptions so;
  so.fsync_objects = cl.opts.fsync;
  so.shared = cl.opts.shared == "on" || (cl.opts.shared == "auto" && IsNetworkFilesystem(bucket));
  // A local bucket that another instance serves too (a second mount of the
  // same directory): coordinate while that is so, checked per miss.
  so.shared_when_others = cl.opts.shared == "auto" && !so.shared;
  ctx.flush_on_close = so.shared;
  // Close-to-open across hosts: every open asks the daemon, which has the
  // kernel check the file's attributes again (see FuseContext).
  ctx.revalidate_on_open = so.shared;
  if (so.shared) ctx.zero_open = false;
  if (so.shared)
    spdlog::info("shared bucket: fetches are coordinated with other hosts through lock files");
  ORIGINFS_ASSIGN_OR_RETURN(l.store, BucketStore::Open(bucket, so));
  if (so.shared_when_others) (void)l.store->OthersLive();  // logs it when another is live
  std::string state_dir = BucketStore::StateDir(bucket, cl.opts.state_dir);
  if (mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST)
    return FailErrno("state_dir " + state_dir);
  IndexOptions io;
  // A corrupt index stops the mount as SIGTERM does, with a failed exit status.
  io.on_corrupt = [](const std::string&) {
    g_index_corrupt.store(true);
    kill(getpid(), SIGTERM);
  };
  ORIGINFS_ASSIGN_OR_RETURN(
      l.index, OpenLmdbIndex(state_dir + "/" + std::string(BucketStore::kIndexDir), io));

  HttpOptions ho;
  ho.connect_timeout_ms = cl.opts.connect_timeout_ms;
  ho.low_speed_time_s = cl.opts.low_speed_time;
  ho.retries = cl.opts.retries;
  ho.max_redirects = cl.opts.max_redirects;
  l.http = MakeCurlHttpClient(ho);
  MirrorOptions mo;
  mo.negative_ttl_s = cl.opts.negative_ttl, mo.failure_backoff_s = cl.opts.failure_backoff;
  mo.max_object_size = cl.opts.max_object_size;
  mo.download_threads = static_cast<std::size_t>(cl.opts.download_threads);
  mo.retries = cl.opts.retries;
  mo.parallel_min = cl.opts.parallel_min;
  // A lookup's download runs in the FUSE worker that asked, while that leaves
  // workers to spare (not over io_uring: a ring's thread serves a whole queue).
  mo.run_in_caller = cl.opts.max_threads > cl.opts.download_threads && !cl.opts.io_uring;
  l.mirror = std::make_unique<Mirror>(std::move(rules), *l.http, *l.store, *l.index, mo);
  VfsOptions vo;
  vo.entry_timeout = cl.opts.entry_timeout;
  vo.attr_timeout = cl.opts.attr_timeout;
  vo.negative_timeout = ctx.negative_timeout;
  auto watched = std::make_shared<std::atomic<Vfs*>>(nullptr);
  ChooseCaches(cl, bucket, so.shared, ctx, l, vo, watched);
  l.vfs = std::make_unique<Vfs>(*l.store, *l.mirror, vo);
  watched->store(l.vfs.get());
  ctx.vfs = l.vfs.get();
  l.keeper = std::make_unique<Housekeeper>(cl.opts, *l.store, *l.mirror, *l.vfs);
  l.vfs->SetControlHandler(
      [keeper = l.keeper.get()](std::string_view name, std::string_view) -> Result<void> {
        if (name == control::kReload) return keeper->Reload();
        return Fail(EINVAL, "unknown control attribute");
      });
  return l;
}

// Serves requests until unmounted or stopped by a signal; the loop's result.
int Serve(fuse_session* se, const CommandLine& cl) {
  fuse_loop_config* loop = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(loop, static_cast<unsigned>(cl.opts.max_threads));
  fuse_loop_cfg_set_idle_threads(
      loop, static_cast<unsigned>(std::min(cl.opts.max_threads, cl.opts.idle_threads)));
  int rc = cl.opts.max_threads == 1 ? fuse_session_loop(se) : fuse_session_loop_mt(se, loop);
  fuse_loop_cfg_destroy(loop);
  return rc;
}

// The adapter's settings from the command line.
FuseContext ContextFor(const CommandLine& cl) {
  FuseContext ctx;
  // The kernel keeps no negative entries: a file another writer puts in the
  // bucket directory (an uploader, rsync into the new storage) is visible at
  // the next lookup. Repeated misses stay cheap: the daemon answers them from
  // the bucket and its own negative cache (negative_ttl), without a request.
  ctx.negative_timeout = 0.0;
  ctx.uid = cl.opts.uid;
  ctx.gid = cl.opts.gid;
  ctx.umask = cl.opts.umask;
  ctx.zero_open = cl.opts.zero_open;
  ctx.passthrough = cl.opts.passthrough;
  ctx.io_uring = cl.opts.io_uring;
  return ctx;
}

// After the loop: unmounts, then stops the layers top down (downloads still
// running are abandoned and leave nothing behind).
void Unmount(fuse_session* se, const std::string& mountpoint, Layers& layers) {
  SdNotify("STOPPING=1");
  spdlog::info("unmounting {}", mountpoint);
  fuse_session_unmount(se);
  StopUring();  // its threads call into the layers below
  fuse_remove_signal_handlers(se);
  signal(SIGHUP, SIG_IGN);
  layers.watch.reset();
  layers.keeper->Stop();
  layers.mirror->Shutdown();
  layers.mirror.reset();  // joins downloads
  layers.keeper.reset();
  layers.vfs.reset();
  fuse_session_destroy(se);
}

}  // namespace

int RunMount(int argc, char** argv) {
  auto cl = ParseCommandLine(argc, argv);
  if (!cl) {
    std::fprintf(stderr, "originfs: %s\n", cl.error().message.c_str());
    return kExitUsage;
  }
  auto rules = LoadRules(cl->opts);
  if (!rules) {
    std::fprintf(stderr, "originfs: %s\n", rules.error().message.c_str());
    return kExitUsage;
  }
  auto paths = CheckPaths(*cl);
  if (!paths) return paths.error();
  cl->mountpoint = paths->mountpoint;

  std::vector<std::string> fargs = FuseArgs(*cl, paths->bucket);
  std::vector<char*> fargv;
  for (auto& a : fargs) fargv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(fargv.size()), fargv.data());
  FuseContext ctx = ContextFor(*cl);
  fuse_session* se = fuse_session_new(&args, &FuseOperations(), sizeof(fuse_lowlevel_ops), &ctx);
  if (!se) {
    std::fprintf(stderr, "originfs: invalid FUSE options (see originfs --help)\n");
    return kExitUsage;
  }

  // Before forking: a bad log_file is a configuration error on the terminal.
  if (auto l = SetupLogging(*cl); !l) {
    std::fprintf(stderr, "originfs: %s\n", l.error().message.c_str());
    fuse_session_destroy(se);
    return kExitUsage;
  }
  Readiness ready;
  if (!cl->foreground) ready.Fork();
  auto fail = [&](const std::string& msg) {
    std::fprintf(stderr, "originfs: %s\n", msg.c_str());
    ready.Report(kExitMountFailure);
    fuse_session_destroy(se);
    return kExitMountFailure;
  };

  RaiseFdLimit();
  Notifier notifier;
  ctx.notifier = &notifier;
  auto layers = OpenLayers(*cl, paths->bucket, std::move(*rules), ctx);
  if (!layers) return fail(layers.error().message);
  ctx.session = se;
  layers->vfs->SetExtraCounters([] {
    return std::vector<Counter>{{"uring_requests",
                                 "Requests served through FUSE-over-io_uring rings.",
                                 UringRequests(), false}};
  });
  layers->vfs->SetEntryInvalidator([&notifier](uint64_t parent, const std::string& name) {
    notifier.InvalidateEntry(parent, name);
  });
  layers->vfs->SetAttrInvalidator([se](uint64_t ino) { Notifier::InvalidateAttributes(se, ino); });
  if (fuse_set_signal_handlers(se) != 0) return fail("cannot install signal handlers");
  if (fuse_session_mount(se, cl->mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    return fail("cannot mount " + cl->mountpoint);
  }
  KernelChannelOptions channel;
  channel.io_uring = ctx.io_uring;
  // Unmounted: downloads still running in workers stop now, so that the
  // loop, which waits for its workers, ends.
  channel.on_disconnect = [m = layers->mirror.get()] { m->Shutdown(); };
  if (int err = InstallKernelChannel(se, channel); err != 0) {
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    return fail("cannot set up the FUSE channel: " + std::string(std::strerror(-err)));
  }
  layers->keeper->Start();
  notifier.Start(se);
  spdlog::info("originfs {} mounted {} at {} with {} rule(s)", kVersion, paths->bucket,
               cl->mountpoint, layers->mirror->rules()->rules().size());
  SdNotify("READY=1");
  ready.Report(0);
  if (!cl->foreground) {
    DetachStdio();
    (void)!chdir("/");
  }

  int rc = Serve(se, *cl);

  notifier.Stop();
  Unmount(se, cl->mountpoint, *layers);
  fuse_opt_free_args(&args);
  spdlog::info("originfs stopped");
  spdlog::shutdown();
  // The loop returns the signal number after SIGTERM/SIGINT: a clean stop.
  if (g_index_corrupt.load()) return 1;
  return rc >= 0 ? 0 : 1;
}

}  // namespace originfs

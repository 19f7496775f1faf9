// originfs: mount a bucket directory with back-source rules.
//
//   originfs BUCKET_DIR MOUNTPOINT [-o OPTIONS] [-f] [-d]
//   originfs check RULES_FILE
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include "core/bucket_store.h"
#include "core/http_client.h"
#include "core/index.h"
#include "core/mirror.h"
#include "core/mount_options.h"
#include "core/rules.h"
#include "core/vfs.h"
#include "fs/fuse_ops.h"

namespace originfs {
namespace {

constexpr const char* kVersion = "0.1.0";

constexpr const char* kUsage = R"(usage: originfs BUCKET_DIR MOUNTPOINT [-o OPTION[,OPTION...]] [-f] [-d]
       originfs check RULES_FILE
       originfs --help | --version

Mounts BUCKET_DIR at MOUNTPOINT. A name missing from the bucket is looked up
at the origin of the first matching rule (falling through on 404), downloaded
into the bucket atomically, and served; later reads are local.

Options (-o, comma-separated):
  rules=FILE            TOML rules file ([[rule]] prefix, origin, writeback, dirs)
  origin=URL            shortcut for one rule with an empty prefix
  state_dir=DIR         LMDB index location (default BUCKET_DIR/.originfs)
  log_level=LEVEL       trace, debug, info (default), warn, error, critical, off
  log_file=FILE         log here (default: stderr with -f, syslog otherwise)
  negative_ttl=SECONDS  how long a 404 is remembered (default 10)
  entry_timeout=SECONDS kernel name cache (default 1)
  attr_timeout=SECONDS  kernel attribute cache (default 1)
  max_object_size=SIZE  refuse larger objects with EIO (e.g. 10G; default none)
  download_threads=N    parallel downloads (default 32)
  max_threads=N         FUSE worker threads (default 64)
  connect_timeout=SECONDS  (default 10)
  low_speed_time=SECONDS   abort a transfer stalled this long (default 30)
  retries=N             retries for 5xx and connection errors (default 2)
  max_redirects=N       (default 5; 0 disables redirects)
  fsync[=BOOL]          fdatasync each fetched object before linking it (default off)
  Mount-only words (defaults, _netdev, nofail, noauto, x-systemd.*, ...) are
  ignored; anything else is passed to FUSE (allow_other, ro, ...).
  -f                    stay in the foreground
  -d                    foreground with FUSE debug output and log_level=debug
)";

struct CommandLine {
  std::string bucket, mountpoint;
  MountOptions opts;
  bool foreground = false;
  bool debug = false;
};

int Usage(const char* msg) {
  std::fprintf(stderr, "originfs: %s\n%s", msg, kUsage);
  return 1;
}

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
  if (positional.size() != 2) return Fail(EINVAL, "expected BUCKET_DIR and MOUNTPOINT");
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

void SetupLogging(const CommandLine& cl) {
  std::shared_ptr<spdlog::logger> logger;
  if (!cl.opts.log_file.empty()) {
    logger = spdlog::basic_logger_mt("originfs", cl.opts.log_file);
  } else if (cl.foreground) {
    logger = spdlog::stderr_logger_mt("originfs");
  } else {
    logger = spdlog::syslog_logger_mt("originfs", "originfs", LOG_PID, LOG_DAEMON);
  }
  logger->set_level(spdlog::level::from_str(cl.opts.log_level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

void RaiseFdLimit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int CheckCommand(int argc, char** argv) {
  if (argc != 3) return Usage("check needs exactly one RULES_FILE");
  auto rules = RuleSet::Load(argv[2]);
  if (!rules) {
    std::fprintf(stderr, "originfs: %s\n", rules.error().message.c_str());
    return 1;
  }
  std::fputs(rules->Format().c_str(), stdout);
  return 0;
}

// Tells the parent (waiting in the foreground) how the mount went.
class Readiness {
 public:
  void Fork() {
    int fds[2];
    if (pipe(fds) != 0) {
      std::perror("originfs: pipe");
      std::exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("originfs: fork");
      std::exit(1);
    }
    if (pid > 0) {  // parent: wait for the child's verdict
      close(fds[1]);
      char status = 1;
      ssize_t n;
      do n = read(fds[0], &status, 1);
      while (n < 0 && errno == EINTR);
      std::_Exit(n == 1 ? status : 1);
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

int Run(int argc, char** argv) {
  auto cl = ParseCommandLine(argc, argv);
  if (!cl) return Usage(cl.error().message.c_str());
  auto rules = LoadRules(cl->opts);
  if (!rules) {
    std::fprintf(stderr, "originfs: %s\n", rules.error().message.c_str());
    return 1;
  }
  struct stat st;
  if (stat(cl->bucket.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "originfs: bucket %s is not a directory\n", cl->bucket.c_str());
    return 1;
  }
  if (stat(cl->mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "originfs: mount point %s is not a directory\n", cl->mountpoint.c_str());
    return 1;
  }
  char bucket_real[PATH_MAX];
  if (!realpath(cl->bucket.c_str(), bucket_real)) {
    std::perror("originfs: bucket");
    return 1;
  }

  // FUSE options: ours first, the user's may override.
  std::vector<std::string> fargs = {"originfs", "-o",
                                    std::string("default_permissions,fsname=") + bucket_real + ",subtype=originfs"};
  for (const auto& o : cl->opts.fuse_options) {
    fargs.push_back("-o");
    fargs.push_back(o);
  }
  if (cl->debug) fargs.push_back("-d");
  std::vector<char*> fargv;
  for (auto& a : fargs) fargv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(fargv.size()), fargv.data());

  FuseContext ctx;
  ctx.negative_timeout = cl->opts.negative_ttl > 0 ? std::min<double>(cl->opts.negative_ttl, 1.0) : 0.0;
  ctx.attr_timeout = cl->opts.attr_timeout;
  fuse_session* se = fuse_session_new(&args, &FuseOperations(), sizeof(fuse_lowlevel_ops), &ctx);
  if (!se) {
    std::fprintf(stderr, "originfs: invalid FUSE options\n");
    return 1;
  }

  Readiness ready;
  if (!cl->foreground) ready.Fork();
  auto fail = [&](const std::string& msg) {
    std::fprintf(stderr, "originfs: %s\n", msg.c_str());
    ready.Report(1);
    fuse_session_destroy(se);
    return 1;
  };

  SetupLogging(*cl);
  RaiseFdLimit();
  StoreOptions so;
  so.fsync_objects = cl->opts.fsync;
  auto store = BucketStore::Open(bucket_real, so);
  if (!store) return fail(store.error().message);
  std::string state_dir = cl->opts.state_dir.empty() ? std::string(bucket_real) + "/.originfs" : cl->opts.state_dir;
  mkdir(state_dir.c_str(), 0700);
  auto index = OpenLmdbIndex(state_dir + "/index", IndexOptions{});
  if (!index) return fail(index.error().message);

  HttpOptions ho;
  ho.connect_timeout_ms = cl->opts.connect_timeout_ms;
  ho.low_speed_time_s = cl->opts.low_speed_time;
  ho.retries = cl->opts.retries;
  ho.max_redirects = cl->opts.max_redirects;
  auto http = MakeCurlHttpClient(ho);
  MirrorOptions mo;
  mo.negative_ttl_s = cl->opts.negative_ttl;
  mo.max_object_size = cl->opts.max_object_size;
  mo.download_threads = static_cast<std::size_t>(cl->opts.download_threads);
  auto mirror = std::make_unique<Mirror>(std::move(*rules), *http, **store, **index, mo);
  VfsOptions vo;
  vo.entry_timeout = cl->opts.entry_timeout;
  vo.attr_timeout = cl->opts.attr_timeout;
  vo.negative_timeout = ctx.negative_timeout;
  auto vfs = std::make_unique<Vfs>(**store, *mirror, vo);
  ctx.vfs = vfs.get();

  if (fuse_set_signal_handlers(se) != 0) return fail("cannot install signal handlers");
  if (fuse_session_mount(se, cl->mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    return fail("cannot mount " + cl->mountpoint);
  }
  spdlog::info("originfs {} mounted {} at {} with {} rule(s)", kVersion, bucket_real, cl->mountpoint,
               mirror->rules()->rules().size());
  ready.Report(0);
  if (!cl->foreground) {
    DetachStdio();
    (void)!chdir("/");
  }

  fuse_loop_config* loop = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(loop, static_cast<unsigned>(cl->opts.max_threads));
  fuse_loop_cfg_set_idle_threads(loop, static_cast<unsigned>(std::min(cl->opts.max_threads, 16)));
  int rc = cl->opts.max_threads == 1 ? fuse_session_loop(se) : fuse_session_loop_mt(se, loop);
  fuse_loop_cfg_destroy(loop);

  spdlog::info("unmounting {}", cl->mountpoint);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  mirror->Shutdown();
  mirror.reset();  // joins downloads; abandoned ones leave nothing behind
  vfs.reset();
  fuse_session_destroy(se);
  fuse_opt_free_args(&args);
  spdlog::shutdown();
  return rc == 0 ? 0 : 1;
}

}  // namespace
}  // namespace originfs

int main(int argc, char** argv) {
  if (argc >= 2) {
    std::string a = argv[1];
    if (a == "--help" || a == "-h") {
      std::fputs(originfs::kUsage, stdout);
      return 0;
    }
    if (a == "--version" || a == "-V") {
      std::printf("originfs %s\n", originfs::kVersion);
      return 0;
    }
    if (a == "check") return originfs::CheckCommand(argc, argv);
  }
  try {
    return originfs::Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "originfs: fatal: %s\n", e.what());
    return 1;
  }
}

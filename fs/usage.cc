// originfs --help.
#include "fs/daemon.h"

namespace originfs {

const char* const kUsage =
    R"(usage: originfs BUCKET_DIR MOUNTPOINT [-o OPTION[,OPTION...]] [-f] [-d]
       originfs check RULES_FILE          validate a rules file and print it as understood
       originfs reload MOUNTPOINT         re-read the rules file of a running mount (or send SIGHUP)
       originfs stats MOUNTPOINT          show the mount's counters
       originfs stats MOUNTPOINT DIR...   how much of each tree is in the bucket, rate, ETA
       originfs verify [--list] [--strict] [--checksum] MOUNTPOINT [DIR...]
                                          compare the bucket with the origin's listings;
                                          exit 0: complete and equal, 1: not, 2: unknown
       originfs warm MOUNTPOINT [-j N] [KEYS_FILE]
                                          pull every listed key (one per line; stdin by default)
                                          through the mount, N in parallel (default 8);
                                          exit 2: some not found, 4: some failed, 6: both
       originfs warm MOUNTPOINT [-j N] --recursive DIR...
                                          every file below DIR, from the mount's listings
       originfs refresh [--force] MOUNTPOINT KEY...
                                          re-fetch keys whose origin copy changed
                                          (conditional GET; replaced atomically); a file
                                          changed since it landed is kept unless --force;
                                          DIR/ reads a directory's listing again;
                                          exit 1: some failed, 2: some kept (none failed)
       originfs refresh --recursive [-j N] MOUNTPOINT DIR...
                                          the same for every landed file below DIR (walks
                                          the bucket: root or the bucket's owner)
       originfs restore MOUNTPOINT KEY...
                                          bring back origin names removed through the mount
       originfs --help | --version        this text | the version and the libraries built with

Mounts BUCKET_DIR at MOUNTPOINT. A name missing from the bucket is looked up
at the origin of the first matching rule (falling through on 404), downloaded
into the bucket atomically, and served; later reads are local. Backgrounds
once the mount is usable; exit codes follow mount(8) (1: usage or
configuration error, 32: mount failure).

Options (-o, comma-separated):
  rules=FILE            TOML rules file ([[rule]] prefix, origin, writeback, dirs)
  origin=URL            shortcut for one rule with an empty prefix
  state_dir=DIR         LMDB index location (default BUCKET_DIR/.originfs)
  log_level=LEVEL       trace, debug, info (default), warn, error, critical, off
  log_file=FILE         log here (default: stderr with -f, syslog otherwise)
  metrics_file=FILE     write the counters to FILE in Prometheus text format
  metrics_interval=S    rewrite metrics_file every S seconds (default 5)
  negative_ttl=SECONDS  how long a 404 is remembered (default 10)
  failure_backoff=S     a key failing 3 times running waits 1, 2, 4.. up to S s (default 10)
  entry_timeout=SECONDS  kernel name cache (default 1 for origin-only names, 3600
                        for names in the bucket while it is watched for changes)
  attr_timeout=SECONDS  kernel attribute cache (defaults as entry_timeout)
  max_object_size=SIZE  refuse larger objects with EIO (e.g. 10G; default none)
  download_threads=N    parallel downloads (default 32; below max_threads, a
                        lookup's download runs in the FUSE worker that got it)
  max_threads=N         FUSE worker threads (default 64)
  idle_threads=N        FUSE worker threads kept waiting for requests (default 16)
  parallel_min=SIZE     fetch objects at least this big as two ranged GETs at once
                        (default 64M; 0: one GET always)
  connect_timeout=SECONDS  (default 10)
  low_speed_time=SECONDS   abort a transfer stalled this long (default 30)
  retries=N             retries for 5xx and connection errors (default 2)
  max_redirects=N       (default 5; 0 disables redirects)
  fsync=BOOL            landings durable before visible: each fetched object is
                        fdatasynced before it is linked, its directory fsynced before
                        the index records it (default on; off is not power-loss safe:
                        a file landed just before a power cut can come back empty)
  zero_open=BOOL        let the kernel open files without asking the daemon (default on;
                        saves two requests per open; errors of a fetch then surface on read)
  passthrough=BOOL      FUSE passthrough (default on where the kernel offers it, 6.9+, and
                        the daemon has CAP_SYS_ADMIN): the kernel reads, writes and maps
                        complete files in the bucket itself. Needs OPEN: zero_open is then off
  io_uring[=BOOL]       FUSE over io_uring (default off): requests arrive through
                        per-CPU rings, where the kernel offers it (6.14+ with
                        /sys/module/fuse/parameters/enable_uring set to 1)
  shared=auto|on|off    coordinate fetches with other hosts mounting the same bucket
                        through lock files in it (default auto: on for network
                        filesystems, and while another instance serves the bucket)
  uid=N, gid=N, umask=OOO  present every file with this owner / group / mode mask
  allow_other, ro, rw, nosuid, nodev, noexec, ... are passed to FUSE; originfs
  always adds default_permissions. Mount-only words (defaults, _netdev,
  nofail, noauto, auto, user, x-systemd.*, comment=...) are ignored.
  -f                    stay in the foreground
  -d                    foreground with FUSE debug output and log_level=debug

Signals: SIGHUP reloads the rules file; SIGTERM/SIGINT unmount cleanly.
Statistics: getfattr -d -m '^user\.originfs\.' MOUNTPOINT
)";

}  // namespace originfs

#!/usr/bin/env bash
# POSIX conformance of an originfs mount: pjdfstest and libfuse's test_syscalls,
# through shared/posix-suites/run.sh, over a bucket whose origin has nothing
# (every new name is first asked at the origin and found missing).
#
# usage: run_suites.sh ORIGINFS_BINARY [--compare] [--log] [PJDFSTEST_SUBDIR]
#   --compare   also run the same suites over bindfs (if installed) or else a
#               bind mount of a plain directory, and print both summaries
#   --log       mount with log_level=debug; the log is kept in $POSIX_RESULTS_DIR
#   SUBDIR      only that pjdfstest directory (e.g. chmod); test_syscalls is
#               then skipped, as run.sh does
# env: POSIX_SUITES_DIR (default /work/shared/posix-suites, else
#      ../shared/posix-suites beside the repo), POSIX_SUITES_BUILD (run.sh's
#      build dir, default /var/tmp/posix-suites), POSIX_RESULTS_DIR (where the
#      outputs are kept, default the build dir).
# Exit: 0 all passed, 1 some test failed, 2 setup error, 77 suites or root unavailable.
set -uo pipefail

usage() { echo "usage: $0 ORIGINFS_BINARY [--compare] [--log] [PJDFSTEST_SUBDIR]" >&2; exit 2; }
[ $# -ge 1 ] || usage
bin=$1; shift
compare=0; debuglog=0; subdir=""
for a in "$@"; do
  case $a in
    --compare) compare=1 ;;
    --log) debuglog=1 ;;
    -*) usage ;;
    *) subdir=$a ;;
  esac
done
[ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

repo=$(cd "$(dirname "$0")/../.." && pwd)
suites=${POSIX_SUITES_DIR:-}
if [ -z "$suites" ]; then
  for d in /work/shared/posix-suites "$repo/../shared/posix-suites"; do
    [ -f "$d/run.sh" ] && { suites=$(cd "$d" && pwd); break; }
  done
fi
if [ -z "$suites" ] || [ ! -f "$suites/run.sh" ]; then
  echo "SKIP: POSIX suites not found (/work/shared/posix-suites or $repo/../shared/posix-suites)"
  exit 77
fi
[ "$(id -u)" -eq 0 ] || { echo "SKIP: pjdfstest needs root"; exit 77; }
[ -e /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
for t in python3 fusermount3 mountpoint; do
  command -v "$t" >/dev/null || { echo "SKIP: needs $t"; exit 77; }
done
build=${POSIX_SUITES_BUILD:-/var/tmp/posix-suites}
export POSIX_SUITES_BUILD=$build
results=${POSIX_RESULTS_DIR:-$build}
mkdir -p "$build" "$results"
# run.sh keeps its outputs in the build directory: one run at a time.
exec 9>"$build/.run.lock"
flock 9

t=$(mktemp -d /tmp/originfs-posix.XXXXXX)
chmod 755 "$t"   # pjdfstest switches to other users: they must reach the mount
origin_pid=""
mounts=()
# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
  set +e
  local m
  for m in "${mounts[@]}"; do
    if mountpoint -q "$m"; then
      fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m"
    fi
  done
  if [ -n "$origin_pid" ]; then kill "$origin_pid" 2>/dev/null; wait "$origin_pid" 2>/dev/null; fi
  if grep -q " $t/" /proc/mounts; then echo "WARN: mounts left under $t"; else rm -rf "$t"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# An origin that has nothing: 404 to every request.
cat >"$t/origin.py" <<'EOF'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _404(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_HEAD = _404
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
python3 -u "$t/origin.py" >"$t/origin.port" 2>"$t/origin.err" &
origin_pid=$!
port=""
for _ in $(seq 100); do
  port=$(head -1 "$t/origin.port" 2>/dev/null)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "origin did not start: $(cat "$t/origin.err")" >&2; exit 2; }

# run_one NAME MOUNTPOINT BACKING_DIR: runs the suites, keeps the outputs, sets
# the globals pj_failed pj_total ts_failed rc.
run_one() {
  local name=$1 mnt=$2 back=$3 out
  out="$results/$name-run.out"
  echo "== $name: $suites/run.sh $mnt $back${subdir:+ $subdir}"
  (cd "$t" && bash "$suites/run.sh" "$mnt" "$back" ${subdir:+"$subdir"}) 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  cp "$build/pjdfstest.out" "$results/$name-pjdfstest.out" 2>/dev/null
  [ -z "$subdir" ] && cp "$build/test_syscalls.out" "$results/$name-test_syscalls.out" 2>/dev/null
  pj_failed=$(sed -n 's/^pjdfstest: \([0-9]*\) failed of \([0-9?]*\).*/\1/p' "$out" | tail -1)
  pj_total=$(sed -n 's/^pjdfstest: \([0-9]*\) failed of \([0-9?]*\).*/\2/p' "$out" | tail -1)
  ts_failed=$(sed -n 's/^test_syscalls: \([0-9]*\) tests failed$/\1/p' "$out" | tail -1)
  ts_failed=${ts_failed:-0}
  [ -n "$subdir" ] && ts_failed="(not run)"
}

start=$(date +%s)
mkdir -p "$t/bucket" "$t/mnt"
opts="origin=http://127.0.0.1:$port,default_permissions,allow_other"
[ "$debuglog" = 1 ] && opts="$opts,log_file=$results/originfs-debug.log,log_level=debug"
mounts+=("$t/mnt")
"$bin" "$t/bucket" "$t/mnt" -o "$opts" || { echo "mount failed: $bin $t/bucket $t/mnt -o $opts" >&2; exit 2; }
run_one originfs "$t/mnt" "$t/bucket"
o_rc=$rc; o_pj=${pj_failed:-?}; o_tot=${pj_total:-?}; o_ts=$ts_failed
fusermount3 -u "$t/mnt" || umount -l "$t/mnt"
o_secs=$(( $(date +%s) - start ))

c_line=""
if [ "$compare" = 1 ]; then
  mkdir -p "$t/plain" "$t/cmnt"
  mounts+=("$t/cmnt")
  if command -v bindfs >/dev/null; then
    cname=bindfs; bindfs -o allow_other "$t/plain" "$t/cmnt"
  else
    cname=plain-dir; echo "(bindfs not installed: comparing with a bind mount of a plain directory)"
    mount --bind "$t/plain" "$t/cmnt"
  fi
  if mountpoint -q "$t/cmnt"; then
    cstart=$(date +%s)
    run_one "$cname" "$t/cmnt" "$t/plain"
    c_line="$cname: pjdfstest ${pj_failed:-?} failed of ${pj_total:-?}, test_syscalls $ts_failed failed ($(( $(date +%s) - cstart )) s)"
    fusermount3 -u "$t/cmnt" 2>/dev/null || umount "$t/cmnt" || umount -l "$t/cmnt"
  else
    c_line="$cname: comparison mount failed"
  fi
fi

echo "== summary"
echo "originfs: pjdfstest $o_pj failed of $o_tot, test_syscalls $o_ts failed (${o_secs} s; outputs in $results/originfs-*.out)"
[ -n "$c_line" ] && echo "$c_line"
if [ -z "$subdir" ] && ! [[ "$o_tot" =~ ^[0-9]+$ && "$o_tot" -gt 0 ]]; then
  echo "pjdfstest did not run (no test count): see $results/originfs-run.out" >&2
  exit 1
fi
[ "$o_rc" -eq 0 ] && exit 0
[ "$o_rc" -eq 2 ] && exit 2   # run.sh could not build or run the suites
exit 1

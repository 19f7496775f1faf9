#!/usr/bin/env bash
# Two originfs instances, each over its own GlusterFS client mount of one
# volume (each client mount stands for one host): concurrent misses through
# both must make one GET per key, give identical bytes and leave no debris;
# a write through one host is what the other's next open reads
# (close-to-open); a host killed mid-download leaves no staging file behind
# for long while the other runs.
# Usage: shared_bucket_glusterfs.sh ORIGINFS_BINARY
set -euo pipefail
bin=$1
if ! command -v glusterd >/dev/null || ! command -v gluster >/dev/null; then
  echo "SKIP: glusterfs-server is not installed"; exit 77
fi
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }

# One run at a time on a machine: runs share glusterd.
exec 9>/tmp/originfs-gluster.lock
flock -w 200 9 || { echo "FAIL: another GlusterFS test run holds the lock"; exit 1; }
t=$(mktemp -d /tmp/originfs-gluster.XXXXXX)
vol=ofs$$
started_glusterd=""
origin_pid=""
pidA=""
pidB=""
cleanup() {
  set +e
  for m in "$t/oA" "$t/oB" "$t/oC"; do grep -q " $m " /proc/mounts && { fusermount3 -u "$m" || umount -l "$m"; }; done
  for m in "$t/m1" "$t/m2"; do grep -q " $m " /proc/mounts && { umount "$m" || umount -l "$m"; }; done
  gluster --mode=script volume stop "$vol" force >/dev/null 2>&1
  gluster --mode=script volume delete "$vol" >/dev/null 2>&1
  [ -n "$started_glusterd" ] && kill "$started_glusterd" 2>/dev/null
  [ -n "$origin_pid" ] && kill "$origin_pid" 2>/dev/null
  for p in $pidA $pidB; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  # Never delete through a mount that is still there.
  if grep -q " $t/" /proc/mounts; then echo "WARN: mounts left under $t, not removing it"; else rm -rf "$t"; fi
}
trap cleanup EXIT
mkdir -p "$t"/{brick,m1,m2,oA,oB,sA,sB,origin/d}

# The origin: an http.server that sends at most 8 MB/s per request (so a
# download can be caught mid-way), on a port the OS picks.
head -c 30M /dev/urandom >"$t/origin/big.bin"
head -c 40M /dev/urandom >"$t/origin/slow40.bin"
head -c 40M /dev/urandom >"$t/origin/stream40.bin"
head -c 40M /dev/urandom >"$t/origin/take40.bin"
touch -d '2020-01-01' "$t/origin/take40.bin"  # an old Last-Modified pins its version
for i in $(seq 1 20); do echo "small file $i" >"$t/origin/d/f$i.txt"; done
python3 -u "$(dirname "$0")/slow_origin.py" "$t/origin" 8388608 >"$t/origin.log" 2>&1 &
origin_pid=$!
for _ in $(seq 50); do grep -q "port" "$t/origin.log" && break; sleep 0.1; done
port=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$t/origin.log" | head -1)
origin="http://127.0.0.1:$port"

# GlusterFS on loopback (glusterd refuses 127.0.0.1 as a brick host; 127.0.0.2 is loopback too).
if ! pgrep -x glusterd >/dev/null; then
  glusterd --log-file="$t/glusterd.log" -p "$t/glusterd.pid"
  for _ in $(seq 50); do [ -s "$t/glusterd.pid" ] && break; sleep 0.1; done
  started_glusterd=$(cat "$t/glusterd.pid")
fi
# Wait until glusterd answers, then retry the volume steps (a busy machine is slow to start it).
for _ in $(seq 60); do timeout 10 gluster --mode=script pool list >/dev/null 2>&1 && break; sleep 0.5; done
retry() { for i in 1 2 3 4 5; do timeout 60 "$@" && return 0; sleep 1; done; return 1; }
retry gluster --mode=script volume create "$vol" 127.0.0.2:"$t/brick" force
# GlusterFS's own client caches (quick-read, io-cache, md-cache, open-behind)
# would serve one client stale bytes after another's write: off, so that the
# volume itself gives close-to-open consistency across clients, which the
# originfs mounts above it must then keep.
for opt in quick-read io-cache stat-prefetch open-behind read-ahead; do
  retry gluster --mode=script volume set "$vol" "performance.$opt" off >/dev/null
done
retry gluster --mode=script volume start "$vol"
retry mount -t glusterfs -o attribute-timeout=0,entry-timeout=0,direct-io-mode=enable 127.0.0.2:/"$vol" "$t/m1"
retry mount -t glusterfs -o attribute-timeout=0,entry-timeout=0,direct-io-mode=enable 127.0.0.2:/"$vol" "$t/m2"

# In the foreground (-f) in the background, so the test knows their pids.
mounted() { for _ in $(seq 100); do grep -q " $1 " /proc/mounts && return 0; sleep 0.1; done; return 1; }
"$bin" "$t/m1" "$t/oA" -f -o origin="$origin",state_dir="$t/sA",log_file="$t/a.log",log_level=debug &
pidA=$!
"$bin" "$t/m2" "$t/oB" -f -o origin="$origin",state_dir="$t/sB",log_file="$t/b.log",log_level=debug &
pidB=$!
mounted "$t/oA" && mounted "$t/oB" || { echo "FAIL: the mounts did not come up"; exit 1; }
grep -q "shared bucket" "$t/a.log" || { echo "FAIL: shared mode not detected on GlusterFS"; exit 1; }

# The index must refuse to live on the network filesystem.
mkdir -p "$t/oC"
if "$bin" "$t/m1" "$t/oC" -o origin="$origin" 2>"$t/c.err"; then
  echo "FAIL: LMDB state on GlusterFS was accepted"; fusermount3 -u "$t/oC"; exit 1
fi
grep -q "network filesystem" "$t/c.err" || { echo "FAIL: unclear refusal: $(cat "$t/c.err")"; exit 1; }

# Concurrent misses through both "hosts".
pids=()
for side in oA oB; do
  for r in 1 2 3 4; do
    (cmp "$t/$side/big.bin" "$t/origin/big.bin" || { echo "big.bin via $side differs or failed" >&2; exit 1; }) & pids+=($!)
    (for i in $(seq 1 20); do cmp -s "$t/$side/d/f$i.txt" "$t/origin/d/f$i.txt" || { echo "d/f$i.txt via $side: $(cmp "$t/$side/d/f$i.txt" "$t/origin/d/f$i.txt" 2>&1)" >&2; exit 1; }; done) & pids+=($!)
  done
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ "$fail" = 0 ] || { echo "FAIL: a reader saw wrong bytes or an error"; tail -n 20 "$t/a.log" "$t/b.log"; exit 1; }

gets_big=$(grep -c '"GET /big.bin ' "$t/origin.log" || true)
[ "$gets_big" = 1 ] || { echo "FAIL: big.bin fetched $gets_big times"; exit 1; }
for i in $(seq 1 20); do
  n=$(grep -c "\"GET /d/f$i.txt " "$t/origin.log" || true)
  [ "$n" = 1 ] || { echo "FAIL: d/f$i.txt fetched $n times"; exit 1; }
done
cmp "$t/m1/big.bin" "$t/origin/big.bin"
cmp "$t/m2/big.bin" "$t/origin/big.bin"
debris=$(find "$t/m1/.originfs/staging" "$t/m1/.originfs/locks" -type f | wc -l)
[ "$debris" = 0 ] || { echo "FAIL: debris left: $(find "$t/m1/.originfs" -type f)"; exit 1; }
echo "ok: one GET per key across two GlusterFS client mounts, identical bytes, no debris"

# Close-to-open: A has read (and its kernel cached) files that B now
# rewrites; A's next open, right after B's close, must read B's bytes. One
# rewrite changes the size, one keeps it (only mtime tells).
cat "$t/oA/d/f1.txt" "$t/oA/d/f2.txt" >/dev/null
printf 'rewritten by host B, longer than before\n' >"$t/oB/d/f1.txt"
printf 'SMALL FILE 2\n' >"$t/oB/d/f2.txt"
got1=$(cat "$t/oA/d/f1.txt")
got2=$(cat "$t/oA/d/f2.txt")
[ "$got1" = "rewritten by host B, longer than before" ] || {
  echo "FAIL: A's open after B's close read '$got1' (B's GlusterFS mount: '$(cat "$t/m2/d/f1.txt")'; A's GlusterFS mount: '$(cat "$t/m1/d/f1.txt")', stat $(stat -c '%s %Y' "$t/m1/d/f1.txt"); through A: stat $(stat -c '%s %Y' "$t/oA/d/f1.txt"), now '$(cat "$t/oA/d/f1.txt")')"
  exit 1
}
[ "$got2" = "SMALL FILE 2" ] || {
  echo "FAIL: A's open after B's same-size rewrite read '$got2' (A's GlusterFS mount: '$(cat "$t/m1/d/f2.txt")' $(stat -c '%s %y %z' "$t/m1/d/f2.txt"); through A: $(stat -c '%s %y %z' "$t/oA/d/f2.txt"), now '$(cat "$t/oA/d/f2.txt")')"
  grep -i "revalidate\|f2.txt" "$t/a.log" | tail -5
  exit 1
}
echo "ok: an open on host A after host B's close reads B's bytes"

# Streaming across hosts: while A downloads a 40 MiB key (8 MB/s: 5 s), a
# reader on B gets its first byte within 2 s of its open, reads the whole
# object right, and the origin sees one GET.
cat "$t/oA/stream40.bin" >/dev/null &
readerA=$!
for _ in $(seq 100); do
  [ -n "$(find "$t/m1/.originfs/staging" -name '*.part' -size +1M 2>/dev/null | head -1)" ] && break
  sleep 0.1
done
ttfb=$(python3 -c 'import sys, time
t = time.monotonic()
with open(sys.argv[1], "rb") as f:
    f.read(1)
    print("%.3f" % (time.monotonic() - t))
    rest = f.read()' "$t/oB/stream40.bin")
cmp "$t/oB/stream40.bin" "$t/origin/stream40.bin" || { echo "FAIL: B read wrong bytes of a key A was downloading"; exit 1; }
wait "$readerA" || { echo "FAIL: A's reader failed"; exit 1; }
gets=$(grep -c '"GET /stream40.bin ' "$t/origin.log" || true)
[ "$gets" = 1 ] || { echo "FAIL: stream40.bin fetched $gets times"; exit 1; }
awk -v t="$ttfb" 'BEGIN { exit !(t <= 2.0) }' || { echo "FAIL: B's first byte came $ttfb s after its open (A was downloading)"; exit 1; }
echo "ok: B's first byte of a key A was downloading after $ttfb s, one GET"

# Takeover: host A dies (kill -9) mid-download while a reader on B reads
# along: B finishes that same version with a ranged GET for the rest, and
# its reader gets every byte right, without an error.
cat "$t/oA/take40.bin" >/dev/null 2>&1 &
readerA=$!
for _ in $(seq 100); do
  [ -n "$(find "$t/m1/.originfs/staging" -name '*.part' -size +1M 2>/dev/null | head -1)" ] && break
  sleep 0.1
done
cat "$t/oB/take40.bin" >"$t/take40.copy" &
readerB=$!
sleep 1
kill -9 "$pidA"
wait "$pidA" 2>/dev/null || true
pidA=""
wait "$readerA" 2>/dev/null || true
wait "$readerB" || { echo "FAIL: B's reader failed after A died"; tail -n 30 "$t/b.log"; exit 1; }
cmp "$t/take40.copy" "$t/origin/take40.bin" || { echo "FAIL: B's reader got wrong bytes after A died"; exit 1; }
cmp "$t/oB/take40.bin" "$t/origin/take40.bin" || { echo "FAIL: B landed wrong bytes"; exit 1; }
ranged=$(grep -c '"GET /take40.bin HTTP/1.1" 206' "$t/origin.log" || true)
[ "$ranged" = 1 ] || { echo "FAIL: $ranged ranged GETs of take40.bin (want 1)"; grep take40 "$t/origin.log"; exit 1; }
grep -q "taken over from a host" "$t/b.log" || { echo "FAIL: B does not say it took over"; exit 1; }
echo "ok: B finished the download A died in, with one ranged GET; its reader saw no error"
# Host A again, for what follows.
umount -l "$t/oA" 2>/dev/null || true
"$bin" "$t/m1" "$t/oA" -f -o origin="$origin",state_dir="$t/sA",log_file="$t/a2.log",log_level=debug &
pidA=$!
mounted "$t/oA" || { echo "FAIL: host A did not come back"; exit 1; }

# A host killed mid-download (kill -9) that never comes back: its named
# staging file must be gone within 30 s while host B runs.
cat "$t/oA/slow40.bin" >/dev/null 2>&1 &
reader=$!
for _ in $(seq 100); do
  part=$(find "$t/m1/.originfs/staging" -name '*.part' -size +1M 2>/dev/null | head -1)
  [ -n "$part" ] && break
  sleep 0.1
done
[ -n "$part" ] || { echo "FAIL: no named staging file for A's download"; exit 1; }
kill -9 "$pidA"
wait "$pidA" 2>/dev/null || true
pidA=""
wait "$reader" 2>/dev/null || true
umount -l "$t/oA" 2>/dev/null || true
killed=$SECONDS
while [ -e "$part" ] && ((SECONDS - killed < 30)); do sleep 0.5; done
[ ! -e "$part" ] || { echo "FAIL: the dead host's staging file $(basename "$part") is still there after 30 s"; exit 1; }
echo "ok: the dead host's staging file was removed $((SECONDS - killed)) s after its death, by host B"
kill -0 "$pidB" || { echo "FAIL: host B died"; exit 1; }
echo "PASS: shared bucket on GlusterFS"

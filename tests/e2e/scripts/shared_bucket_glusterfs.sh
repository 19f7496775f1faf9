#!/usr/bin/env bash
# Two originfs instances, each over its own GlusterFS client mount of one
# volume (each client mount stands for one host): concurrent misses through
# both must make one GET per key, give identical bytes and leave no debris.
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
cleanup() {
  set +e
  for m in "$t/oA" "$t/oB" "$t/oC"; do grep -q " $m " /proc/mounts && { fusermount3 -u "$m" || umount -l "$m"; }; done
  for m in "$t/m1" "$t/m2"; do grep -q " $m " /proc/mounts && { umount "$m" || umount -l "$m"; }; done
  gluster --mode=script volume stop "$vol" force >/dev/null 2>&1
  gluster --mode=script volume delete "$vol" >/dev/null 2>&1
  [ -n "$started_glusterd" ] && kill "$started_glusterd" 2>/dev/null
  [ -n "$origin_pid" ] && kill "$origin_pid" 2>/dev/null
  wait 2>/dev/null
  # Never delete through a mount that is still there.
  if grep -q " $t/" /proc/mounts; then echo "WARN: mounts left under $t, not removing it"; else rm -rf "$t"; fi
}
trap cleanup EXIT
mkdir -p "$t"/{brick,m1,m2,oA,oB,sA,sB,origin/d}

# The origin: python's http.server on a port the OS picks.
head -c 30M /dev/urandom >"$t/origin/big.bin"
for i in $(seq 1 20); do echo "small file $i" >"$t/origin/d/f$i.txt"; done
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$t/origin" >"$t/origin.log" 2>&1 &
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
retry gluster --mode=script volume start "$vol"
retry mount -t glusterfs 127.0.0.2:/"$vol" "$t/m1"
retry mount -t glusterfs 127.0.0.2:/"$vol" "$t/m2"

"$bin" "$t/m1" "$t/oA" -o origin="$origin",state_dir="$t/sA",log_file="$t/a.log",log_level=debug
"$bin" "$t/m2" "$t/oB" -o origin="$origin",state_dir="$t/sB",log_file="$t/b.log",log_level=debug
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
echo "PASS: one GET per key across two GlusterFS client mounts, identical bytes, no debris"

#!/usr/bin/env bash
# Two originfs mounts of ONE bucket directory with -o shared=on (each stands
# for a host; the bucket is local here): concurrent misses through both must
# make one GET per key, give identical bytes and leave no debris.
# Usage: shared_bucket_two_mounts.sh ORIGINFS_BINARY
set -euo pipefail
bin=$1
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
t=$(mktemp -d /tmp/originfs-shared.XXXXXX)
origin_pid=""
cleanup() {
  set +e
  for m in "$t/oA" "$t/oB"; do grep -q " $m " /proc/mounts && { fusermount3 -u "$m" || umount -l "$m"; }; done
  [ -n "$origin_pid" ] && kill "$origin_pid" 2>/dev/null
  wait 2>/dev/null
  if grep -q " $t/" /proc/mounts; then echo "WARN: mounts left under $t"; else rm -rf "$t"; fi
}
trap cleanup EXIT
mkdir -p "$t"/{bucket,oA,oB,sA,sB,origin/d}
head -c 20M /dev/urandom >"$t/origin/big.bin"
for i in $(seq 1 30); do echo "small file $i" >"$t/origin/d/f$i.txt"; done
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$t/origin" >"$t/origin.log" 2>&1 &
origin_pid=$!
for _ in $(seq 50); do grep -q "port" "$t/origin.log" && break; sleep 0.1; done
port=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$t/origin.log" | head -1)
origin="http://127.0.0.1:$port"

"$bin" "$t/bucket" "$t/oA" -o origin="$origin",shared=on,state_dir="$t/sA",log_file="$t/a.log"
"$bin" "$t/bucket" "$t/oB" -o origin="$origin",shared=on,state_dir="$t/sB",log_file="$t/b.log"

pids=()
for side in oA oB; do
  for r in 1 2 3 4; do
    (cmp "$t/$side/big.bin" "$t/origin/big.bin") & pids+=($!)
    (for i in $(seq 1 30); do cmp -s "$t/$side/d/f$i.txt" "$t/origin/d/f$i.txt" || exit 1; done) & pids+=($!)
  done
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ "$fail" = 0 ] || { echo "FAIL: a reader saw wrong bytes or an error"; tail -n 20 "$t/a.log" "$t/b.log"; exit 1; }
n=$(grep -c '"GET /big.bin ' "$t/origin.log" || true)
[ "$n" = 1 ] || { echo "FAIL: big.bin fetched $n times"; exit 1; }
for i in $(seq 1 30); do
  n=$(grep -c "\"GET /d/f$i.txt " "$t/origin.log" || true)
  [ "$n" = 1 ] || { echo "FAIL: d/f$i.txt fetched $n times"; exit 1; }
done
cmp "$t/bucket/big.bin" "$t/origin/big.bin"
debris=$(find "$t/bucket/.originfs/staging" "$t/bucket/.originfs/locks" -type f | wc -l)
[ "$debris" = 0 ] || { echo "FAIL: debris: $(find "$t/bucket/.originfs" -type f)"; exit 1; }
echo "PASS: one GET per key across two mounts of one bucket directory, identical bytes, no debris"

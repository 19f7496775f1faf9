#!/usr/bin/env bash
# The Debian package, built and installed as an admin would, without changing
# the host:
#   1. cpack builds originfs_VERSION_amd64.deb from the build tree;
#   2. dpkg-deb -I / -c: name, version, Depends (every library the binary
#      loads, by its package, plus fuse3), no conffiles, nothing under /etc, no
#      maintainer scripts, and the files where Debian 12 wants them;
#   3. apt-get install --simulate ./originfs_*.deb resolves on this system and
#      on an empty one (a fresh Debian 12: the dependencies come from the mirror);
#   4. dpkg --root=ROOT -i into a temporary merged-/usr root (dpkg rather than
#      dpkg-deb -x: its database then lets step 8 remove the package as dpkg
#      does; --force-depends as ROOT holds no other package);
#   5. man -l renders both installed man pages without a warning;
#   6. the installed completion passes bash -n and completes commands and options;
#   7. in a private mount namespace with ROOT/usr laid over /usr (so
#      /sbin/mount.originfs and /usr/bin/originfs are the package's):
#      systemd-analyze verify of the units; `mount -t originfs BUCKET MNT -o
#      origin=...` against a python3 http.server on 127.0.0.1 reads a file
#      equal to the origin's, which landed in the bucket; the completion offers
#      the mount point; umount; then an fstab line with `mount -T FSTAB MNT`;
#   8. dpkg --root -P originfs removes the package's files and leaves the
#      buckets and their .originfs state dirs as they were.
#   tests/package/package_test.sh BUILD_DIR
# Skips (77) when not root or a tool is missing; every step is bounded by timeout.
set -euo pipefail
build=$(readlink -f "$1")
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }
[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg --root, a mount namespace, FUSE mounts)"
for tool in cpack dpkg dpkg-deb apt-get man unshare mount umount findmnt python3 timeout cmp ldd readelf; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done
[ -c /dev/fuse ] || skip "no /dev/fuse"
[ -x "$build/fs/originfs" ] || fail "$build/fs/originfs is not built"

t=$(mktemp -d /tmp/originfs-package.XXXXXX)
origin_pid=""
cleanup() {
  [ -z "$origin_pid" ] || kill "$origin_pid" 2>/dev/null || true
  [ -z "$origin_pid" ] || wait "$origin_pid" 2>/dev/null || true
  rm -rf "$t"
}
trap cleanup EXIT

version=$("$build/fs/originfs" --version | head -1 | sed 's/^originfs //')
step "1. cpack"
(cd "$build" && timeout 600 cpack -G DEB -B "$t/out" >"$t/cpack.log" 2>&1) ||
  { cat "$t/cpack.log"; tail -30 "$t"/out/_CPack_Packages/*/DEB/PreinstallOutput.log 2>/dev/null; fail "cpack failed"; }
deb=$t/out/originfs_${version}_amd64.deb
[ -f "$deb" ] || { ls "$t/out"; fail "cpack did not write originfs_${version}_amd64.deb"; }

step "2. dpkg-deb -I / -c"
info=$(dpkg-deb -I "$deb")
printf '%s\n' "$info" | grep -E '^ (Package|Version|Architecture|Depends):'
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = originfs ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$version" ] || fail "Version: $(field Version), binary says $version"
[ "$(field Architecture)" = amd64 ] || fail "Architecture: $(field Architecture)"
depends=$(field Depends)
has_dep() { [[ ", $depends," == *", $1"[\ ,]* ]]; }
for p in fuse3 libfuse3-3 libcurl4 liblmdb0 liburing2 libc6 libstdc++6; do
  has_dep "$p" || fail "Depends lacks $p: $depends"
done
# Every shared library the binary links directly (NEEDED), by the package that
# ships the file the loader picks for it.
readelf -d "$build/fs/originfs" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' >"$t/needed"
[ "$(wc -l <"$t/needed")" -ge 5 ] || fail "readelf found only $(wc -l <"$t/needed") NEEDED libraries"
ldd "$build/fs/originfs" | awk 'NR == FNR { needed[$1] = 1; next } ($1 in needed) && /=> \// { print $3 }' \
  "$t/needed" - | while read -r lib; do
  real=$(readlink -f "$lib") pkg=""
  for path in "$real" "${real#/usr}" "$lib" "/usr$lib"; do  # dpkg knows /lib or /usr/lib
    pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1) && [ -n "$pkg" ] && break
  done
  [ -n "$pkg" ] || { echo "no package ships $lib: the .deb would not run elsewhere" >&2; exit 1; }
  # The package, or a name it Provides (libspdlog1.10 provides libspdlog1.10-fmt9).
  names="$pkg $(dpkg-query -W -f='${Provides}' "$pkg" | sed -E 's/ *\([^)]*\)//g; s/,/ /g')"
  found=0
  for n in $names; do has_dep "$n" && found=1; done
  [ "$found" = 1 ] || { echo "Depends lacks $pkg (for $lib): $depends" >&2; exit 1; }
done || fail "a library's package is missing from Depends"
dpkg-deb -e "$deb" "$t/control"
for f in conffiles preinst postinst prerm postrm; do
  [ ! -e "$t/control/$f" ] || fail "the package has a $f (it must not touch admins' files or buckets)"
done
contents=$(dpkg-deb -c "$deb" | awk '{ print $NF }')
for f in ./usr/bin/originfs ./sbin/mount.originfs ./lib/systemd/system/originfs@.service \
  ./usr/share/doc/originfs/examples/srv-data.mount ./usr/share/man/man8/originfs.8.gz \
  ./usr/share/man/man5/originfs-rules.5.gz ./usr/share/bash-completion/completions/originfs; do
  grep -qx -- "$f" <<<"$contents" || fail "the package lacks $f"
done
if grep -q '^\./etc/' <<<"$contents"; then fail "the package ships files under /etc"; fi
dpkg-deb -c "$deb" | grep -E ' \./(sbin/mount\.originfs|usr/bin/originfs)$' | grep -q '^-rwxr-xr-x' ||
  fail "originfs or mount.originfs is not mode 0755"

step "3. apt-get install --simulate"
timeout 120 apt-get install --simulate "$deb" >"$t/apt.log" 2>&1 || { cat "$t/apt.log"; fail "apt-get --simulate failed"; }
grep -q '^Inst originfs ' "$t/apt.log" || { cat "$t/apt.log"; fail "apt-get --simulate would not install originfs"; }
if ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
  # As on a fresh Debian 12: nothing installed, everything from the mirror's lists.
  : >"$t/empty-status"
  timeout 120 apt-get install --simulate -o Dir::State::status="$t/empty-status" "$deb" >"$t/apt-fresh.log" 2>&1 ||
    { tail -20 "$t/apt-fresh.log"; fail "apt-get --simulate on an empty system failed"; }
  for p in originfs fuse3 libfuse3-3 libcurl4 liblmdb0 liburing2; do
    grep -q "^Inst $p " "$t/apt-fresh.log" || { tail -20 "$t/apt-fresh.log"; fail "a fresh install would not pull $p"; }
  done
  echo "  a fresh system would install $(grep -c '^Inst ' "$t/apt-fresh.log") packages"
else
  echo "  (no apt lists: the fresh-system resolution is not checked; run apt-get update)"
fi

step "4. dpkg --root"
root=$t/root
mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib" "$root/var/lib/dpkg/info" \
  "$root/var/lib/dpkg/updates" "$root/srv"
for d in bin sbin lib; do ln -s "usr/$d" "$root/$d"; done  # Debian 12's merged /usr
: >"$root/var/lib/dpkg/status"
: >"$root/var/lib/dpkg/available"
dpkg_root() { timeout 120 dpkg --root="$root" --log="$t/dpkg.log" --force-not-root "$@"; }
dpkg_root --force-depends -i "$deb" >"$t/dpkg-i.log" 2>&1 || { cat "$t/dpkg-i.log"; fail "dpkg --root -i failed"; }
[ "$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status}' originfs)" = "install ok installed" ] ||
  fail "originfs is not installed in $root"
for f in usr/bin/originfs usr/sbin/mount.originfs usr/lib/systemd/system/originfs@.service \
  usr/share/man/man8/originfs.8.gz usr/share/man/man5/originfs-rules.5.gz \
  usr/share/bash-completion/completions/originfs; do
  [ -f "$root/$f" ] || fail "not installed: /$f"
done
"$root/usr/bin/originfs" --version >"$t/installed-version" || fail "the installed originfs --version failed"
[ "$(head -1 "$t/installed-version")" = "originfs $version" ] || fail "the installed binary is not $version"

step "5. man -l"
for page in man8/originfs.8.gz man5/originfs-rules.5.gz; do
  LC_ALL=C MANWIDTH=80 timeout 60 man --warnings -l "$root/usr/share/man/$page" >"$t/page.txt" 2>"$t/page.err" ||
    fail "man -l $page failed"
  [ ! -s "$t/page.err" ] || { cat "$t/page.err"; fail "man -l $page warned"; }
  cp "$t/page.txt" "$t/$(basename "$page" .gz).txt"
done
grep -q 'originfs warm MOUNTPOINT \[-j N\] --recursive DIR\.\.\.' "$t/originfs.8.txt" || fail "originfs(8) lacks warm --recursive"
grep -q 'rules=FILE' "$t/originfs.8.txt" || fail "originfs(8) lacks rules=FILE"
grep -q '^ *revalidate' "$t/originfs-rules.5.txt" || fail "originfs-rules(5) lacks the key revalidate"

step "6. bash completion"
comp=$root/usr/share/bash-completion/completions/originfs
bash -n "$comp" || fail "bash -n $comp"
complete_words() {
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _originfs; printf "%s\n" "${COMPREPLY[@]}"' \
    _ "$comp" "$@"
}
[ "$(complete_words originfs wa)" = warm ] || fail "completion of 'originfs wa': $(complete_words originfs wa)"
[ "$(complete_words originfs warm /m --rec)" = --recursive ] || fail "completion of warm --rec"
[ "$(complete_words originfs /b /m -o "rules=/x,neg")" = "rules=/x,negative_ttl=" ] || fail "completion of -o neg"
mkdir -p "$t/rules.d" && : >"$t/rules.d/rules.toml"
[ "$(complete_words originfs check "$t/rules.d/ru")" = "$t/rules.d/rules.toml" ] || fail "completion of a rules file"

step "7. mount -t originfs from the installed files"
mkdir -p "$t/origin/dir" "$t/mnt" "$root/srv/bucket" "$root/srv/bucket2"
head -c 300000 /dev/urandom >"$t/origin/dir/data.bin"
head -c 5000 /dev/urandom >"$t/origin/dir/fstab.bin"
timeout 600 python3 -c '
import functools, http.server, os, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(srv.server_port))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
srv.serve_forever()
' "$t/origin" "$t/port" >"$t/origin.log" 2>&1 &
origin_pid=$!
for _ in $(seq 300); do [ -s "$t/port" ] && break; kill -0 "$origin_pid" 2>/dev/null || break; sleep 0.1; done
[ -s "$t/port" ] || { cat "$t/origin.log"; fail "the origin did not start"; }
port=$(cat "$t/port")
have_analyze=0
command -v systemd-analyze >/dev/null && have_analyze=1
cat >"$t/ns.sh" <<'NS'
set -euo pipefail
t=$1 root=$2 port=$3 have_analyze=$4 comp=$5
fail() { echo "FAIL: $*" >&2; exit 1; }
mnt=$t/mnt
# A landing is linked into the bucket just after the last byte is served (as
# the e2e tests' EventuallyExists): wait for it, bounded.
eventually_exists() {
  local i
  for i in $(seq 600); do [ -e "$1" ] && return 0; sleep 0.1; done
  return 1
}
# The daemons of this namespace's mounts: processes in it holding /dev/fuse.
myns=$(readlink /proc/self/ns/mnt)
daemons_here() {
  local p fd
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$myns" ] || continue
    for fd in "$p"/fd/*; do
      [ "$(readlink "$fd" 2>/dev/null)" = /dev/fuse ] && { echo "${p#/proc/}"; break; }
    done
  done
}
# umount, then wait (bounded) until the daemon has exited: it has let go of
# the bucket's state then.
unmount() {
  local pids pid
  pids=$(daemons_here)
  [ -n "$pids" ] || fail "no originfs daemon holds /dev/fuse in this namespace"
  timeout 60 umount "$mnt" || fail "umount $mnt failed"
  for pid in $pids; do timeout 60 tail --pid="$pid" -f /dev/null || fail "daemon $pid did not exit after umount"; done
}
trap 'umount -l "$mnt" 2>/dev/null || true' EXIT
mount -t overlay overlay -o "lowerdir=$root/usr:/usr" /usr
cmp /usr/bin/originfs "$root/usr/bin/originfs" || fail "/usr/bin/originfs is not the package's"
cmp /sbin/mount.originfs "$root/usr/sbin/mount.originfs" || fail "/sbin/mount.originfs is not the package's"
if [ "$have_analyze" = 1 ]; then
  mkdir "$t/units"
  cp "$root/lib/systemd/system/originfs@.service" "$t/units/originfs@data.service"
  cp "$root/usr/share/doc/originfs/examples/srv-data.mount" "$t/units/"
  for u in originfs@data.service srv-data.mount; do
    timeout 60 systemd-analyze verify --man=no "$t/units/$u" >"$t/analyze.log" 2>&1 ||
      { cat "$t/analyze.log"; fail "systemd-analyze verify $u"; }
    if grep -v 'network-online.target' "$t/analyze.log" | grep -q .; then
      cat "$t/analyze.log"; fail "systemd-analyze verify $u complained"
    fi
  done
  echo "  systemd-analyze verify: both units clean"
else
  echo "  (systemd-analyze is not installed: units not verified)"
fi
bucket=$root/srv/bucket
timeout 60 mount -t originfs "$bucket" "$mnt" -o "origin=http://127.0.0.1:$port/,log_file=$t/mount.log" ||
  { cat "$t/mount.log" 2>/dev/null; fail "mount -t originfs failed"; }
[ "$(findmnt -n -o FSTYPE --mountpoint "$mnt")" = fuse.originfs ] || fail "no fuse.originfs mount at $mnt"
timeout 60 cmp "$mnt/dir/data.bin" "$t/origin/dir/data.bin" || fail "read through the mount differs from the origin"
eventually_exists "$bucket/dir/data.bin" && cmp "$bucket/dir/data.bin" "$t/origin/dir/data.bin" ||
  fail "the file did not land in the bucket"
[ -d "$bucket/.originfs" ] || fail "no state dir in the bucket"
# The completion offers this mount point, and names below it.
got=$(bash -c 'source "$1"; COMP_WORDS=(originfs stats ""); COMP_CWORD=2; _originfs; printf "%s\n" "${COMPREPLY[@]}"' _ "$comp")
grep -qx "$mnt" <<<"$got" || fail "completion of 'originfs stats ' does not offer $mnt: $got"
got=$(bash -c 'source "$1"; COMP_WORDS=(originfs refresh "$2" di); COMP_CWORD=3; _originfs; printf "%s\n" "${COMPREPLY[@]}"' _ "$comp" "$mnt")
grep -qx "dir/" <<<"$got" || fail "completion of 'originfs refresh MNT di' does not offer dir/: $got"
unmount
! findmnt --mountpoint "$mnt" >/dev/null || fail "still mounted after umount"
echo "  mount -t originfs: read $(stat -c %s "$bucket/dir/data.bin") bytes, equal to the origin's, landed in the bucket"
printf '%s %s originfs origin=http://127.0.0.1:%s/,log_file=%s,nofail,_netdev 0 0\n' \
  "$root/srv/bucket2" "$mnt" "$port" "$t/fstab-mount.log" >"$t/fstab"
timeout 60 mount -T "$t/fstab" "$mnt" || { cat "$t/fstab-mount.log" 2>/dev/null; fail "mount -T FSTAB MNT failed"; }
timeout 60 cmp "$mnt/dir/fstab.bin" "$t/origin/dir/fstab.bin" || fail "fstab mount: read differs from the origin"
eventually_exists "$root/srv/bucket2/dir/fstab.bin" && cmp "$root/srv/bucket2/dir/fstab.bin" "$t/origin/dir/fstab.bin" ||
  { findmnt --mountpoint "$mnt"; ls -laR "$root/srv/bucket2"; cat "$t/fstab-mount.log"; fail "fstab mount: the file did not land"; }
unmount
echo "  mount -T fstab: read, landed, unmounted"
NS
timeout 300 unshare -m --propagation private bash "$t/ns.sh" "$t" "$root" "$port" "$have_analyze" "$comp" ||
  fail "the mount checks failed"
findmnt --mountpoint "$t/mnt" >/dev/null && fail "the namespace's mount is visible on the host"
findmnt -n -o SOURCE,FSTYPE /usr | grep -q overlay && fail "the overlay over /usr leaked to the host"

step "8. dpkg --root -P leaves the buckets"
(cd "$root/srv" && find . -printf '%p %s %m\n' | sort) >"$t/srv.before"
grep -q '/bucket/.originfs ' "$t/srv.before" || fail "no .originfs state dir to keep"
dpkg_root -P originfs >"$t/dpkg-P.log" 2>&1 || { cat "$t/dpkg-P.log"; fail "dpkg --root -P failed"; }
[ -z "$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status}' originfs 2>/dev/null | grep ' installed')" ] ||
  fail "originfs is still installed"
for f in usr/bin/originfs usr/sbin/mount.originfs usr/lib/systemd/system/originfs@.service \
  usr/share/man/man8/originfs.8.gz usr/share/bash-completion/completions/originfs; do
  [ ! -e "$root/$f" ] || fail "left after purge: /$f"
done
(cd "$root/srv" && find . -printf '%p %s %m\n' | sort) >"$t/srv.after"
cmp "$t/srv.before" "$t/srv.after" || { diff "$t/srv.before" "$t/srv.after"; fail "purge changed the buckets"; }
echo "OK: package $(basename "$deb") built, checked, installed, mounted with, and removed"

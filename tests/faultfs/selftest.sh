#!/usr/bin/env bash
# Self-test for faultfs.py: mounts a scratch fs, exercises passthrough and every
# fault action, unmounts.  Needs root (or FUSE access), fusermount3, /usr/bin/python3
# with python3-fusepy.  Exit status 0 only if every check passed.
set -u

HERE="$(cd "$(dirname "$0")" && pwd)"
PY=/usr/bin/python3
FAULTFS="$HERE/faultfs.py"
T="$(mktemp -d /tmp/faultfs-selftest.XXXXXX)"
B="$T/backing" M="$T/mnt" C="$T/control"
mkdir -p "$B" "$M" "$C"
PASS=0 FAIL=0 FS_PID=

ok()   { PASS=$((PASS + 1)); echo "ok   - $1"; }
bad()  { FAIL=$((FAIL + 1)); echo "FAIL - $1"; }
check() { local name="$1"; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

# Poll (bounded, 10 s) until a command succeeds: waits on an event, never a fixed sleep.
wait_for() { local i; for i in $(seq 500); do "$@" && return 0; sleep 0.02; done; return 1; }
alive() { kill -0 "$1" 2>/dev/null; }
dead() { ! alive "$1"; }

# Replace rules.json atomically so faultfs never reads a half-written file.
rules() { printf '%s\n' "$1" > "$C/rules.tmp" && mv "$C/rules.tmp" "$C/rules.json"; }

cleanup() {
    [ -n "$FS_PID" ] && alive "$FS_PID" && kill -TERM "$FS_PID" 2>/dev/null && wait_for dead "$FS_PID"
    mountpoint -q "$M" 2>/dev/null && fusermount3 -u -z "$M"
    rm -rf "$T"
}
trap cleanup EXIT

"$PY" "$FAULTFS" "$B" "$M" --control "$C" > "$T/stdout" 2> "$T/stderr" &
FS_PID=$!
if ! wait_for grep -q "^mounted $M\$" "$T/stdout"; then
    echo "faultfs did not mount"; cat "$T/stderr"; exit 1
fi
ok "mounted (stdout says 'mounted $M')"

# ---------------------------------------------------------------- passthrough
head -c 3000000 /dev/urandom > "$T/src"
mkdir -p "$M/job/1.partial/rank-0"
cp "$T/src" "$M/job/1.partial/rank-0/shard.bin"
check "write reaches backing file" cmp -s "$T/src" "$B/job/1.partial/rank-0/shard.bin"
check "read through mount" cmp -s "$T/src" "$M/job/1.partial/rank-0/shard.bin"
check "fsync file + fsync dir" "$PY" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR); os.fsync(fd); os.fdatasync(fd); os.close(fd)
fd = os.open(sys.argv[2], os.O_RDONLY | os.O_DIRECTORY); os.fsync(fd); os.close(fd)
' "$M/job/1.partial/rank-0/shard.bin" "$M/job/1.partial"
mv "$M/job/1.partial" "$M/job/1"
check "directory rename" test -f "$B/job/1/rank-0/shard.bin" -a ! -e "$B/job/1.partial"
echo 1 > "$M/job/LATEST"; echo 2 > "$M/job/LATEST.tmp"; mv -f "$M/job/LATEST.tmp" "$M/job/LATEST"
check "rename replaces file" test "$(cat "$B/job/LATEST")" = 2 -a ! -e "$B/job/LATEST.tmp"
truncate -s 10 "$M/job/LATEST"; chmod 600 "$M/job/LATEST"; ln -s LATEST "$M/job/link"
check "truncate/chmod/symlink/stat" test "$(stat -c '%s %a' "$M/job/LATEST")" = "10 600" -a "$(readlink "$M/job/link")" = LATEST
rm "$M/job/link"; rm -r "$M/job/1"
check "unlink/rmdir/readdir" test "$(ls "$M/job")" = LATEST

# ---------------------------------------------------------------- eio on write
rules '[{"name":"w-eio","op":"write","path_glob":"*/eio/*","action":"eio","once":true}]'
mkdir -p "$M/job/eio"
check "write fails with EIO" "$PY" -c '
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
try:
    os.write(fd, b"x" * 4096); sys.exit(1)
except OSError as e:
    sys.exit(0 if e.errno == errno.EIO else 1)
' "$M/job/eio/f"
check "eio: marker + event line" test -f "$C/triggered/w-eio" -a "$(tail -n1 "$C/events.log")" = "w-eio write job/eio/f"
check "eio once: next write succeeds" "$PY" -c 'import os,sys; open(sys.argv[1],"ab").write(b"ok")' "$M/job/eio/f"

# ---------------------------------------------------------------- stall, then release
rules '[{"name":"fsync-stall","op":"fsync","path_glob":"*/manifest.json","action":"stall","once":true}]'
mkdir -p "$M/job/2.partial"
"$PY" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644); os.write(fd, b"{}"); os.fsync(fd); os.close(fd)
' "$M/job/2.partial/manifest.json" &
W=$!
check "stall: marker appears" wait_for test -f "$C/triggered/fsync-stall"
check "stall: writer is blocked" alive "$W"
check "stall: other ops still work" test "$(ls "$M/job/2.partial")" = manifest.json
touch "$C/release/fsync-stall"
wait "$W"; RC=$?
check "stall: released writer completes (rc 0)" test "$RC" = 0
check "stall: done marker says released" test "$(cat "$C/done/fsync-stall")" = released
rm -f "$C/release/fsync-stall"

# ---------------------------------------------------------------- stall, then SIGKILL the writer
rules '[{"name":"rename-stall","op":"rename","path_glob":"*.partial","action":"stall"}]'
"$PY" -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$M/job/2.partial" "$M/job/2" &
W=$!
check "kill: rename stalled" wait_for test -f "$C/triggered/rename-stall"
# Braces + 2>/dev/null keep bash's "Killed" job notice out of the output.
{ kill -KILL "$W"; wait_for dead "$W"; R=$?; wait "$W"; } 2>/dev/null
check "kill: SIGKILLed writer dies while op is stalled" test "$R" = 0
check "kill: done marker says killed" test "$(cat "$C/done/rename-stall")" = killed
check "kill: stalled rename was not performed" test -d "$B/job/2.partial" -a ! -e "$B/job/2"
grep -q "^rename-stall rename job/2.partial job/2\$" "$C/events.log"
check "kill: rename event names both paths" test $? = 0

# ---------------------------------------------------------------- write stall at after_bytes, released by removing the rule
rules '[{"name":"w-stall","op":"write","path_glob":"*/rank-0/*","action":"stall","after_bytes":1000000,"once":true}]'
mkdir -p "$M/job/3.partial/rank-0"
cp "$T/src" "$M/job/3.partial/rank-0/shard.bin" &
W=$!
check "after_bytes: stalled" wait_for test -f "$C/triggered/w-stall"
check "after_bytes: backing holds exactly 1000000 bytes" test "$(stat -c %s "$B/job/3.partial/rank-0/shard.bin")" = 1000000
rules '[]'
wait "$W"; RC=$?
check "after_bytes: removing the rule releases, copy completes" test "$RC" = 0 -a "$(cat "$C/done/w-stall")" = released
check "after_bytes: file intact after release" cmp -s "$T/src" "$B/job/3.partial/rank-0/shard.bin"

# ---------------------------------------------------------------- flip_bit on read
rules '[{"name":"r-flip","op":"read","path_glob":"*/rank-0/shard.bin","action":"flip_bit","offset":1234,"bit":3,"once":true}]'
check "flip_bit read: cmp sees a difference at byte 1235" \
    test "$(cmp "$T/src" "$M/job/3.partial/rank-0/shard.bin" 2>&1 | sed -n 's/.* byte \([0-9]*\),.*/\1/p')" = 1235
check "flip_bit read: backing file untouched" cmp -s "$T/src" "$B/job/3.partial/rank-0/shard.bin"
check "flip_bit read: marker" test -f "$C/triggered/r-flip"

# ---------------------------------------------------------------- flip_bit on write; visible after fadvise(DONTNEED)
rules '[{"name":"w-flip","op":"write","path_glob":"*/corrupt.bin","action":"flip_bit","offset":70000,"once":true}]'
check "flip_bit write: write reports success, read-back after DONTNEED differs" "$PY" -c '
import os, sys
data = open(sys.argv[2], "rb").read()
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
assert os.write(fd, data) == len(data)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # what the sidecar does before verifying
back = os.pread(fd, len(data), 0)
os.close(fd)
diff = [i for i in range(len(data)) if data[i] != back[i]]
sys.exit(0 if diff == [70000] else 1)
' "$M/job/3.partial/corrupt.bin" "$T/src"
check "flip_bit write: backing file is corrupted at byte 70001" \
    test "$(cmp "$T/src" "$B/job/3.partial/corrupt.bin" 2>&1 | sed -n 's/.* byte \([0-9]*\),.*/\1/p')" = 70001

# ---------------------------------------------------------------- errno + delay
rules '[{"name":"mk-nospc","op":"mkdir","path_glob":"job/full","action":"errno","errno":"ENOSPC"},
        {"name":"c-delay","op":"create","path_glob":"*/slow","action":"delay","delay_ms":200}]'
OUT="$(mkdir "$M/job/full" 2>&1)"
check "errno ENOSPC on mkdir" test "${OUT##*: }" = "No space left on device"
S0=$(date +%s%N); touch "$M/job/slow"; S1=$(date +%s%N)
check "delay_ms on create (>=200 ms)" test $(( (S1 - S0) / 1000000 )) -ge 200

# ---------------------------------------------------------------- SIGTERM releases stalls and unmounts
rules '[{"name":"last-stall","op":"fsync","path_glob":"*","action":"stall"}]'
"$PY" -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$M/job/LATEST" &
W=$!
check "sigterm: stalled" wait_for test -f "$C/triggered/last-stall"
kill -TERM "$FS_PID"
wait "$W"; RC=$?
check "sigterm: stalled op released (rc 0)" test "$RC" = 0 -a "$(cat "$C/done/last-stall")" = shutdown
check "sigterm: faultfs exits" wait_for dead "$FS_PID"
wait "$FS_PID"; RC=$?
check "sigterm: exit status 0 and unmounted" test "$RC" = 0 -a -z "$(grep " $M " /proc/mounts)"

# ---------------------------------------------------------------- remount, unmount with fusermount3 -u
"$PY" "$FAULTFS" "$B" "$M" --control "$C" --direct-io > "$T/stdout2" 2>> "$T/stderr" &
FS_PID=$!
check "remount with --direct-io" wait_for grep -q "^mounted $M\$" "$T/stdout2"
check "direct-io: data still there" test "$(cat "$M/job/LATEST" | head -c 1)" = 2
fusermount3 -u "$M"
check "fusermount3 -u: faultfs exits" wait_for dead "$FS_PID"
wait "$FS_PID"; RC=$?
check "fusermount3 -u: exit status 0" test "$RC" = 0

echo "$PASS passed, $FAIL failed"
if [ "$FAIL" -ne 0 ]; then echo "--- faultfs stderr:"; cat "$T/stderr"; exit 1; fi
exit 0

#!/usr/bin/python3
"""faultfs: a passthrough FUSE filesystem that injects faults on demand.

Used by the checkpoint sidecar integration tests to
  * stall an operation at a precise point so the test can SIGKILL the writer,
  * corrupt data (flip a bit on read or on write) to prove hash verification,
  * fail operations with EIO (or any errno).

Usage:
    /usr/bin/python3 tests/faultfs/faultfs.py BACKING MOUNTPOINT --control CONTROL
        [--direct-io] [--keep-cache] [--attr-timeout SECONDS] [--negative-timeout SECONDS] [--debug]

Prints "mounted MOUNTPOINT" on stdout (flushed) once the mount answers.
Stop it with SIGTERM/SIGINT (releases every stall, unmounts, exits 0), or
unmount with `fusermount3 -u MOUNTPOINT`.  See README.md for the rule format.

Must run with /usr/bin/python3: it needs Debian's python3-fusepy (module
`fusepy`, some distributions name it `fuse`) and libfuse2.
"""

import argparse
import ctypes
import errno
import fnmatch
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

try:  # Debian's python3-fusepy installs the module as "fusepy"; pip's fusepy as "fuse".
    import fusepy as fusemod
except ImportError:  # pragma: no cover - depends on the distribution
    import fuse as fusemod

FUSE = fusemod.FUSE
FuseOSError = fusemod.FuseOSError
fuse_get_context = fusemod.fuse_get_context

# Ops a rule may name.  "close" is an alias for "flush" (the op close(2) waits for).
RULE_OPS = {
    "write", "read", "fsync", "fsyncdir", "rename", "create", "mkdir", "release",
    "flush", "open", "unlink", "rmdir", "truncate", "symlink", "link", "chmod",
    "utimens", "getattr",
}
OP_ALIASES = {"close": "flush"}
ACTIONS = {"stall", "eio", "errno", "flip_bit", "delay"}
ACTION_ALIASES = {"delay_ms": "delay"}
RANGE_OPS = {"read", "write"}  # ops where after_bytes / offset mean something
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

STALL_POLL_S = 0.02  # how often a stalled op re-checks release / caller death / shutdown
SIGKILL_MASK = 1 << (signal.SIGKILL - 1)


def log(msg):
    print("faultfs: " + msg, file=sys.stderr, flush=True)


class RuleError(ValueError):
    pass


class Rule:
    """One validated entry of rules.json.  `spec` (the raw dict) is its identity:
    a rule whose definition changes in rules.json is a new rule (fresh `once`)."""

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise RuleError("rule must be an object: %r" % (spec,))
        self.spec = spec
        self.key = json.dumps(spec, sort_keys=True)
        self.name = spec.get("name")
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise RuleError("rule name must match %s: %r" % (NAME_RE.pattern, self.name))
        op = spec.get("op")
        self.op = OP_ALIASES.get(op, op)
        if self.op not in RULE_OPS:
            raise RuleError("%s: unknown op %r" % (self.name, op))
        self.path_glob = spec.get("path_glob", "*")
        if not isinstance(self.path_glob, str):
            raise RuleError("%s: path_glob must be a string" % self.name)
        action = spec.get("action")
        self.action = ACTION_ALIASES.get(action, action)
        if self.action not in ACTIONS:
            raise RuleError("%s: unknown action %r" % (self.name, action))
        self.once = bool(spec.get("once", False))
        self.after_bytes = int(spec.get("after_bytes", 0) or 0)
        off = spec.get("offset")
        self.offset = None if off is None else int(off)
        self.bit = int(spec.get("bit", 0))
        if not 0 <= self.bit <= 7:
            raise RuleError("%s: bit must be 0..7" % self.name)
        self.delay_ms = int(spec.get("delay_ms", 0) or 0)
        if self.action == "delay" and self.delay_ms <= 0:
            raise RuleError("%s: action delay needs delay_ms > 0" % self.name)
        if self.action == "eio":
            self.errno = errno.EIO
        elif self.action == "errno":
            e = spec.get("errno")
            if isinstance(e, str):
                if not hasattr(errno, e):
                    raise RuleError("%s: unknown errno %r" % (self.name, e))
                e = getattr(errno, e)
            if not isinstance(e, int) or e <= 0:
                raise RuleError("%s: action errno needs errno (name or number)" % self.name)
            self.errno = e
        if self.action == "flip_bit" and self.op not in RANGE_OPS:
            raise RuleError("%s: flip_bit only applies to read/write" % self.name)
        if (self.after_bytes or self.offset is not None) and self.op not in RANGE_OPS:
            raise RuleError("%s: after_bytes/offset only apply to read/write" % self.name)

    def matches_path(self, *paths):
        return any(p is not None and fnmatch.fnmatchcase(p, self.path_glob) for p in paths)

    def range_start(self, offset, size):
        """For read/write: file offset from which the rule applies within
        [offset, offset+size), or None if the range is not covered."""
        end = offset + size
        if end <= self.after_bytes:
            return None
        start = max(offset, self.after_bytes)
        if self.offset is not None:
            if not (start <= self.offset < end):
                return None
            if self.action == "flip_bit":
                return self.offset
        return start


class Engine:
    """Rules, their state, and the control directory (events, markers, releases)."""

    def __init__(self, control, mountpoint):
        self.control = control
        self.mountpoint = mountpoint
        self.rules_path = os.path.join(control, "rules.json")
        self.events_path = os.path.join(control, "events.log")
        self.triggered_dir = os.path.join(control, "triggered")
        self.done_dir = os.path.join(control, "done")
        self.release_dir = os.path.join(control, "release")
        self.lock = threading.RLock()
        self.rules = []
        self.sig = None  # (ino, size, mtime_ns) of the rules.json we parsed last
        self.bad_sig = None  # signature of an unparseable rules.json (logged once)
        self.fired = {}  # rule.key -> number of triggers; survives reloads
        self.shutdown = threading.Event()
        self.stalled = 0
        self.in_flight = 0  # ops inside a handler: a released stall still has its op to do and answer
        self._prepare_control()

    def _prepare_control(self):
        # Start from a clean slate so markers/events of a previous run can't fool a test.
        os.makedirs(self.control, exist_ok=True)
        for d in (self.triggered_dir, self.done_dir, self.release_dir):
            os.makedirs(d, exist_ok=True)
            for n in os.listdir(d):
                try:
                    os.unlink(os.path.join(d, n))
                except OSError:
                    pass
        for n in ("events.log", "mounted"):
            try:
                os.unlink(os.path.join(self.control, n))
            except FileNotFoundError:
                pass
        open(self.events_path, "w").close()

    # ---- rules -----------------------------------------------------------
    def _reload(self):
        """Re-read rules.json if it changed.  A stat per op is cheap and lets a test
        change rules at any time; write rules.json atomically (tmp + rename)."""
        try:
            st = os.stat(self.rules_path)
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            sig = None
        if sig == self.sig:
            return
        if sig is None:
            self.rules, self.sig = [], None
            return
        if sig == self.bad_sig:
            return
        try:
            with open(self.rules_path) as f:
                data = json.load(f)
            if isinstance(data, dict):
                data = data.get("rules", [])
            if not isinstance(data, list):
                raise RuleError("rules.json must be a list or {\"rules\": [...]}")
            rules = [Rule(r) for r in data]
            names = [r.name for r in rules]
            if len(set(names)) != len(names):
                raise RuleError("duplicate rule names")
        except (OSError, ValueError) as e:
            # Keep the previous rules; a half-written file must not drop a stall.
            self.bad_sig = sig
            log("ignoring rules.json: %s" % e)
            return
        self.rules, self.sig = rules, sig
        log("loaded %d rule(s): %s" % (len(rules), ", ".join(names) or "-"))

    def _released(self, rule):
        return (os.path.exists(os.path.join(self.release_dir, rule.name))
                or os.path.exists(os.path.join(self.release_dir, "all")))

    def is_armed(self, rule):
        """True while `rule` is still in rules.json unchanged and not released."""
        with self.lock:
            self._reload()
            return any(r.key == rule.key for r in self.rules) and not self._released(rule)

    def match(self, op, path, path2=None, rng=None):
        """First armed rule for this op/path (and range); marks `once` rules used.
        Returns (rule, start) where start is the range start for read/write."""
        with self.lock:
            self._reload()
            for rule in self.rules:
                if rule.op != op or not rule.matches_path(path, path2):
                    continue
                start = None
                if rng is not None:
                    start = rule.range_start(*rng)
                    if start is None:
                        continue
                if rule.once and self.fired.get(rule.key, 0) > 0:
                    continue
                if self._released(rule):
                    continue
                self.fired[rule.key] = self.fired.get(rule.key, 0) + 1
                return rule, start
        return None, None

    # ---- events ----------------------------------------------------------
    def _write_marker(self, d, name, text):
        p = os.path.join(d, name)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def event(self, rule, what, path, path2=None, marker_dir=None, marker_text=None):
        """Append "<rule> <what> <path>[ <path2>]" to events.log (one write with
        O_APPEND, so lines never interleave), then create the marker file: a test
        that sees the marker can rely on the log line being there already."""
        line = "%s %s %s%s\n" % (rule.name, what, path, "" if path2 is None else " " + path2)
        with self.lock:
            fd = os.open(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            if marker_dir is not None:
                self._write_marker(marker_dir, rule.name, marker_text or line)
        log("event: " + line.rstrip())

    # ---- stalls ----------------------------------------------------------
    def mounted(self):
        """Is our mountpoint still in the mount table?  Read from /proc so a
        stalled worker never touches the FUSE mount itself."""
        try:
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    mp = line.split()[4]
                    mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), mp)
                    if mp == self.mountpoint:
                        return True
        except OSError:
            return True
        return False

    def stall(self, rule, op, path, pid):
        """Block this FUSE worker until the rule is released/removed, the caller
        got SIGKILL, or faultfs shuts down.  Other workers keep serving ops.

        Why watch the caller: a process killed while its request is inside the
        FUSE daemon stays in D state until the daemon answers (the kernel must
        wait for the reply).  Answering EINTR as soon as SIGKILL is pending lets
        the killed sidecar die at once, with the stalled op NOT performed."""
        with self.lock:
            self.stalled += 1
        try:
            n = 0
            while True:
                if self.shutdown.is_set():
                    return "shutdown"
                if not self.is_armed(rule):
                    return "released"
                if pid and caller_killed(pid):
                    return "killed"
                n += 1
                if n % 5 == 0 and not self.mounted():
                    return "shutdown"
                time.sleep(STALL_POLL_S)
        finally:
            with self.lock:
                self.stalled -= 1

    def apply(self, rule, op, path, path2=None):
        """Run a triggered rule's non-data action.  Raises FuseOSError to fail
        the op.  flip_bit is done by the caller (read/write) after this."""
        pid = fuse_get_context()[2]
        self.event(rule, op, path, path2, self.triggered_dir)
        if rule.action in ("eio", "errno"):
            raise FuseOSError(rule.errno)
        if rule.action == "delay":
            time.sleep(rule.delay_ms / 1000.0)
        elif rule.action == "stall":
            outcome = self.stall(rule, op, path, pid)
            self.event(rule, op + ":" + outcome, path, path2, self.done_dir, outcome + "\n")
            if outcome == "killed":
                raise FuseOSError(errno.EINTR)


def caller_killed(pid):
    """True if thread `pid` (the TID FUSE reports) is gone or has SIGKILL pending."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("SigPnd:", "ShdPnd:")):
                    if int(line.split()[1], 16) & SIGKILL_MASK:
                        return True
                elif line.startswith("State:") and line.split()[1] in ("Z", "X"):
                    return True
    except (FileNotFoundError, ProcessLookupError):
        return True
    except OSError:
        return False
    return False


def _fd(fh):
    """fusepy (raw_fi=True) hands us the fuse_file_info struct, or None/NULL."""
    if not fh:
        return None
    return getattr(fh, "fh", fh)


def _flip(data, index, bit):
    b = bytearray(data)
    b[index] ^= 1 << bit
    return bytes(b)


def _pwrite_all(fd, data, offset):
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


class FaultFS:
    """Passthrough operations.  Every op that a rule can name calls _hook first,
    so a fault happens before the op touches the backing directory (a stalled
    rename that is then killed never renames)."""

    use_ns = True            # fusepy: timestamps as integer nanoseconds
    flag_nullpath_ok = 1     # with hard_remove, ops on unlinked-open files get path=None

    def __init__(self, root, engine, direct_io, keep_cache=False):
        self.root = root
        self.engine = engine
        self.direct_io = direct_io
        self.keep_cache = 1 if keep_cache else 0
        self.on_init = None

    def __call__(self, op, *args):
        # fusepy dispatches every op through here; ops we don't define -> ENOSYS.
        method = getattr(self, op, None)
        if method is None:
            raise FuseOSError(errno.ENOSYS)
        with self.engine.lock:
            self.engine.in_flight += 1
        try:
            return method(*args)
        except FuseOSError:
            raise
        except OSError as e:
            raise FuseOSError(e.errno or errno.EIO)
        finally:
            with self.engine.lock:
                self.engine.in_flight -= 1

    # ---- helpers ---------------------------------------------------------
    def _full(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    @staticmethod
    def _rel(path):
        return "" if path is None else path.lstrip("/")

    def _hook(self, op, path, path2=None):
        rule, _ = self.engine.match(op, self._rel(path), None if path2 is None else self._rel(path2))
        if rule is not None:
            self.engine.apply(rule, op, self._rel(path), None if path2 is None else self._rel(path2))

    # ---- lifecycle -------------------------------------------------------
    def init(self, path):
        if self.on_init:
            self.on_init()

    def destroy(self, path):
        self.engine.shutdown.set()

    # ---- metadata --------------------------------------------------------
    def getattr(self, path, fh=None):
        # Also the kernel's lookup of a name not in its cache: a stall here holds a path walk.
        self._hook("getattr", path)
        fd = _fd(fh)
        st = os.fstat(fd) if fd is not None else os.lstat(self._full(path))
        d = {k: getattr(st, k) for k in (
            "st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino",
            "st_blocks", "st_blksize", "st_rdev")}
        d["st_atime"], d["st_mtime"], d["st_ctime"] = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        return d

    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        self._hook("chmod", path)
        os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._full(path), uid, gid, follow_symlinks=False)

    def utimens(self, path, times=None):
        self._hook("utimens", path)
        # times are (atime_ns, mtime_ns); None means "now".
        if times is None:
            os.utime(self._full(path), follow_symlinks=False)
        else:
            os.utime(self._full(path), ns=(int(times[0]), int(times[1])), follow_symlinks=False)

    def statfs(self, path):
        sv = os.statvfs(self._full(path))
        return {k: getattr(sv, k) for k in (
            "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
            "f_ffree", "f_favail", "f_flag", "f_namemax")}

    def readlink(self, path):
        return os.readlink(self._full(path))

    # ---- namespace -------------------------------------------------------
    def mkdir(self, path, mode):
        self._hook("mkdir", path)
        os.mkdir(self._full(path), mode)

    def rmdir(self, path):
        self._hook("rmdir", path)
        os.rmdir(self._full(path))

    def unlink(self, path):
        self._hook("unlink", path)
        os.unlink(self._full(path))

    def symlink(self, target, source):
        # fusepy: create symlink `target` (path in this fs) pointing to `source`.
        self._hook("symlink", target)
        os.symlink(source, self._full(target))

    def link(self, target, source):
        # .NET's File.Move(overwrite: false) uses link()+unlink().
        self._hook("link", source, target)
        os.link(self._full(source), self._full(target))

    def rename(self, old, new):
        self._hook("rename", old, new)
        os.rename(self._full(old), self._full(new))

    def mknod(self, path, mode, dev):
        os.mknod(self._full(path), mode, dev)

    def opendir(self, path):
        return 0

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._full(path))

    def releasedir(self, path, fh):
        return 0

    def fsyncdir(self, path, datasync, fh):
        self._hook("fsyncdir", path)
        fd = os.open(self._full(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # ---- files -----------------------------------------------------------
    def _open_flags(self, flags):
        # The kernel already turned O_APPEND into explicit offsets; on Linux a
        # pwrite() on an O_APPEND fd would ignore the offset, so drop it.
        return flags & ~os.O_APPEND

    def open(self, path, fi):
        self._hook("open", path)
        fi.fh = os.open(self._full(path), self._open_flags(fi.flags))
        fi.direct_io = 1 if self.direct_io else 0
        # Default: drop the kernel's cached pages of this file on every open. --keep-cache keeps
        # them, as an NFS client does while a file's attributes are unchanged: then only an explicit
        # cache drop (posix_fadvise DONTNEED) makes a read reach the filesystem.
        fi.keep_cache = self.keep_cache
        return 0

    def create(self, path, mode, fi):
        self._hook("create", path)
        fi.fh = os.open(self._full(path), self._open_flags(fi.flags) | os.O_CREAT, mode)
        fi.direct_io = 1 if self.direct_io else 0
        fi.keep_cache = self.keep_cache
        return 0

    def read(self, path, size, offset, fh):
        fd = _fd(fh)
        data = os.pread(fd, size, offset)
        rule, start = self.engine.match("read", self._rel(path), rng=(offset, len(data)))
        if rule is not None:
            self.engine.apply(rule, "read", self._rel(path))
            if rule.action == "flip_bit":
                data = _flip(data, start - offset, rule.bit)
        return data

    def write(self, path, data, offset, fh):
        fd = _fd(fh)
        rule, start = self.engine.match("write", self._rel(path), rng=(offset, len(data)))
        if rule is None:
            _pwrite_all(fd, data, offset)
            return len(data)
        # Bytes before `after_bytes` are written first, so that at the moment of
        # the fault the backing file holds exactly `after_bytes` bytes (for
        # sequential writers) -- a precise kill point.
        split = start - offset if rule.action != "flip_bit" else 0
        if split:
            _pwrite_all(fd, data[:split], offset)
        self.engine.apply(rule, "write", self._rel(path))
        rest = data[split:]
        if rule.action == "flip_bit":
            rest = _flip(rest, start - offset, rule.bit)
        _pwrite_all(fd, rest, offset + split)
        return len(data)  # report success even for a corrupted write

    def truncate(self, path, length, fh=None):
        self._hook("truncate", path)
        fd = _fd(fh)
        if fd is not None:
            os.ftruncate(fd, length)
        else:
            os.truncate(self._full(path), length)

    def flush(self, path, fh):
        # flush runs synchronously inside close(2): stalling it blocks close().
        self._hook("flush", path)
        return 0

    def release(self, path, fh):
        # release is sent asynchronously after the last close; the closing
        # process does not wait for it.  Close the backing fd even on a fault.
        try:
            self._hook("release", path)
        finally:
            os.close(_fd(fh))

    def fsync(self, path, datasync, fh):
        self._hook("fsync", path)
        fd = _fd(fh)
        if datasync:
            os.fdatasync(fd)
        else:
            os.fsync(fd)


def parse_args(argv):
    p = argparse.ArgumentParser(description="passthrough FUSE fs with fault injection")
    p.add_argument("backing")
    p.add_argument("mountpoint")
    p.add_argument("--control", required=True, help="control dir (rules.json, events.log, markers)")
    p.add_argument("--direct-io", action="store_true",
                   help="open every file with FOPEN_DIRECT_IO: no page cache, every read/write reaches faultfs")
    p.add_argument("--keep-cache", action="store_true",
                   help="keep cached pages across opens (like an NFS client): reads reach faultfs only after a cache drop")
    p.add_argument("--attr-timeout", type=float, default=0.0,
                   help="kernel attr/entry cache timeout in seconds (default 0: always ask faultfs)")
    p.add_argument("--negative-timeout", type=float, default=None,
                   help="kernel cache timeout for lookups that found nothing (default: --attr-timeout)")
    p.add_argument("--debug", action="store_true", help="libfuse debug output on stderr")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    backing = os.path.realpath(args.backing)
    mountpoint = os.path.realpath(args.mountpoint)
    control = os.path.realpath(args.control)
    if not os.path.isdir(backing) or not os.path.isdir(mountpoint):
        log("backing dir and mountpoint must exist")
        return 2
    if control == mountpoint or control.startswith(mountpoint + "/"):
        log("control dir must not be inside the mountpoint")
        return 2

    engine = Engine(control, mountpoint)
    ops = FaultFS(backing, engine, args.direct_io, args.keep_cache)
    ready = threading.Event()

    def announce():
        # init() runs before the kernel gets the INIT reply; stat the mount from
        # another thread so "mounted" is printed only once ops really work.
        for _ in range(1000):
            try:
                if os.path.ismount(mountpoint):
                    os.stat(mountpoint)
                    break
            except OSError:
                pass
            time.sleep(0.01)
        with open(os.path.join(control, "mounted"), "w") as f:
            f.write(mountpoint + "\n")
        print("mounted " + mountpoint, flush=True)
        ready.set()

    ops.on_init = lambda: threading.Thread(target=announce, daemon=True).start()

    result = {}

    def run_fuse():
        try:
            FUSE(ops, mountpoint, raw_fi=True, foreground=True, nothreads=False,
                 debug=args.debug, fsname="faultfs", subtype="faultfs",
                 big_writes=True, hard_remove=True,
                 attr_timeout=args.attr_timeout, entry_timeout=args.attr_timeout,
                 negative_timeout=args.attr_timeout if args.negative_timeout is None else args.negative_timeout)
        except BaseException as e:  # noqa: B902 - report any failure of the loop
            result["error"] = e
        finally:
            engine.shutdown.set()
            ready.set()

    # FUSE runs in a worker thread so the main thread stays in Python and can
    # handle SIGTERM/SIGINT itself (libfuse's own handlers would end the loop
    # while stalled ops still sleep).
    t = threading.Thread(target=run_fuse, name="fuse-loop", daemon=True)
    t.start()
    ready.wait()

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    # Install after libfuse installed its handlers (during fuse_main), so ours win.
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    while t.is_alive() and not stop.is_set():
        stop.wait(0.2)

    if t.is_alive():
        if not shutdown(engine, mountpoint):
            sys.stdout.flush()
            os._exit(0)  # process exit closes /dev/fuse and aborts the connection
        t.join(15)
        if t.is_alive():
            log("fuse loop did not stop; exiting anyway")
            sys.stdout.flush()
            os._exit(1)
    if "error" in result:
        log("fuse loop failed: %r" % (result["error"],))
        return 1
    return 0


def shutdown(engine, mountpoint):
    """Release stalls, then unmount.  Returns False if the mount was busy (some
    process still has files open): then it is detached lazily and the caller
    exits the process, which aborts the FUSE connection (pending and future
    ops on the old mount get ENOTCONN) so faultfs never hangs a teardown."""
    engine.shutdown.set()
    # A released stall still performs its op and answers it: exiting before that answer reaches
    # the caller fails its op (ECONNABORTED) instead of completing it.
    deadline = time.monotonic() + 5
    while (engine.stalled or engine.in_flight) and time.monotonic() < deadline:
        time.sleep(0.02)
    # The caller may still hold the file open for a moment after its answer (a busy mount):
    # retry the unmount for a while before detaching lazily.
    while True:
        r = subprocess.run(["fusermount3", "-u", mountpoint], capture_output=True, text=True)
        if r.returncode == 0:
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    log("fusermount3 -u failed (%s); detaching lazily and exiting" % r.stderr.strip())
    subprocess.run(["fusermount3", "-u", "-z", mountpoint], capture_output=True)
    return False


if __name__ == "__main__":
    sys.exit(main())

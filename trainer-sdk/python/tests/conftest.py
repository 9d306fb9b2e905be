"""Real processes for the SDK's tests: the published sidecar binary and the example trainer.

Every wait is on an event (a line appearing, a process exiting) bounded by a timeout that fails the test with the
output seen so far; nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

PYTHON_DIR = Path(__file__).resolve().parent.parent
REPO = PYTHON_DIR.parent.parent
EXAMPLE = PYTHON_DIR / "examples" / "train_mnist_like.py"
JOB = "py-job"
DEFAULT_TIMEOUT = 60.0

sys.path.insert(0, str(PYTHON_DIR))


def sidecar_binary() -> Path:
    path = Path(os.environ.get("CHECKPOINT_SIDECAR_BIN") or REPO / "artifacts" / "sidecar" / "checkpoint-sidecar")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"the checkpoint sidecar binary {path} does not exist or is not executable: publish it first "
            f"(dotnet publish sidecar -o artifacts/sidecar) or point CHECKPOINT_SIDECAR_BIN at it", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ObservedProcess:
    """A child process whose stdout and stderr lines a test can wait for."""

    def __init__(self, name: str, argv: List[str], env: Dict[str, str], cwd: Optional[Path] = None):
        self.name = name
        self.argv = argv
        self._lines: List[str] = []
        self._cond = threading.Condition()
        self._open_streams = 2
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, text=True, bufsize=1)
        for stream in (self.process.stdout, self.process.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._open_streams -= 1
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self._lines)

    def lines(self) -> List[str]:
        with self._cond:
            return list(self._lines)

    def _find(self, regex: "re.Pattern[str]") -> Optional["re.Match[str]"]:
        for line in self._lines:
            match = regex.search(line)
            if match:
                return match
        return None

    def wait_for_line(self, pattern: str, timeout: float = DEFAULT_TIMEOUT) -> "re.Match[str]":
        regex = re.compile(pattern)
        limit = time.monotonic() + timeout
        with self._cond:
            while True:
                match = self._find(regex)
                if match:
                    return match
                if self._open_streams == 0:
                    raise AssertionError(f"{self.name} exited (code {self.process.poll()}) without a line matching "
                                         f"/{pattern}/. Output:\n{self.output_unlocked()}")
                left = limit - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name} printed no line matching /{pattern}/ within {timeout} s. "
                                         f"Output:\n{self.output_unlocked()}")
                self._cond.wait(left)

    def output_unlocked(self) -> str:
        return "\n".join(self._lines)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout} s. Output:\n{self.output}") from None
        with self._cond:
            self._cond.wait_for(lambda: self._open_streams == 0, timeout=5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class TestDirs:
    """A private staging volume, "NFS share" and socket directory (short path: sockets allow 107 bytes)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ckpy-", dir="/tmp"))
        self.staging = self.root / "staging"
        self.storage = self.root / "storage"
        self.socket_dir = self.root / "sock"
        for d in (self.staging, self.storage, self.socket_dir):
            d.mkdir()
        self.socket_path = str(self.socket_dir / "sidecar.sock")

    @property
    def job(self) -> Path:
        return self.storage / "default" / JOB

    def latest(self) -> Optional[str]:
        path = self.job / "LATEST"
        return path.read_text().strip() if path.exists() else None

    def partials(self) -> List[Path]:
        return [p for p in self.job.iterdir() if p.name.endswith(".partial")] if self.job.exists() else []


class Processes:
    """Starts sidecars and trainers for one test and kills whatever still runs at its end."""

    def __init__(self, dirs: TestDirs) -> None:
        self.dirs = dirs
        self.started: List[ObservedProcess] = []

    def sidecar(self, grace: int = 30, margin: int = 1, name: str = "sidecar", socket_path: Optional[str] = None,
                staging: Optional[Path] = None, storage: Optional[Path] = None, **overrides: str) -> ObservedProcess:
        """A sidecar on the test's socket, staging and storage, or (a "pod" of a multi-pod job) on its own."""
        env = dict(os.environ)
        env.update({
            "CHECKPOINT_SOCKET_PATH": socket_path or self.dirs.socket_path,
            "CHECKPOINT_STAGING_DIR": str(staging or self.dirs.staging),
            "CHECKPOINT_STORAGE_DIR": str(storage or self.dirs.storage),
            "CHECKPOINT_METRICS_PORT": "0",  # any free port: none picked ahead for another process to take
            "CHECKPOINT_GRACE_PERIOD_SECONDS": str(grace),
            "CHECKPOINT_SAFETY_MARGIN_SECONDS": str(margin),
            "CHECKPOINT_JOB_NAME": JOB,
            "CHECKPOINT_KEEP": "3",
            "CHECKPOINT_KUBERNETES_ENABLED": "false",
        })
        env.pop("POD_NAMESPACE", None)
        env.update(overrides)
        process = ObservedProcess(name, [str(sidecar_binary())], env)
        self.started.append(process)
        process.wait_for_line(r"Checkpoint sidecar ready")
        return process

    def python(self, name: str, argv: List[str], **env_overrides: str) -> ObservedProcess:
        env = dict(os.environ)
        env.update({"CHECKPOINT_SOCKET_PATH": self.dirs.socket_path, "CHECKPOINT_SDK_SIGNAL_WARNING": "0",
                    "PYTHONUNBUFFERED": "1"})
        env.update(env_overrides)
        process = ObservedProcess(name, ["/usr/bin/python3", *argv], env)
        self.started.append(process)
        return process

    def trainer(self, *args: str, name: str = "trainer", **env_overrides: str) -> ObservedProcess:
        return self.python(name, [str(EXAMPLE), *args], **env_overrides)

    def cleanup(self) -> None:
        for process in self.started:
            process.kill()


@pytest.fixture
def dirs():
    d = TestDirs()
    yield d
    shutil.rmtree(d.root, ignore_errors=True)


@pytest.fixture
def procs(dirs):
    p = Processes(dirs)
    yield p
    p.cleanup()


def manifest(checkpoint_dir: Path) -> dict:
    return json.loads((checkpoint_dir / "manifest.json").read_text())


def step_id(step: int) -> str:
    """A job-committed checkpoint's id and directory name (<job>/step-000000123/), what latest() and LATEST name.
    While it is being taken each pod's sidecar names its part with an id of its own (DumpRequest, outcome, logs)."""
    return f"step-{step:09d}"


def xxh128(path: Path) -> str:
    tool = shutil.which("xxhsum")
    if tool is None:
        pytest.fail("xxhsum (Debian package xxhash) is needed to check checkpoint hashes independently", pytrace=False)
    out = subprocess.run([tool, "-H2", str(path)], check=True, capture_output=True, text=True).stdout
    return out.split()[0]


def assert_verifies(step_dir: Path) -> dict:
    """A job-committed checkpoint (<job>/step-N/): every file its job manifest lists, in every pod's shard directory,
    exists with its size and the XXH128 that xxhsum computes.

    Returns the manifest with the shards' files and ranks gathered (``files``, ``ranks``) beside ``step``, ``reason``
    and ``worldSize``; ``shards`` as written.
    """
    m = manifest(step_dir)
    files, ranks = [], []
    for shard in m["shards"]:
        assert shard["files"], f"{step_dir}: shard {shard['shard']} lists no files"
        for entry in shard["files"]:
            path = step_dir / shard["directory"] / entry["path"]
            assert path.is_file(), f"{path} listed in the manifest is missing"
            assert path.stat().st_size == entry["size"], f"{path}: size differs from the manifest"
            assert xxh128(path) == entry["xxh128"], f"{path}: xxh128 differs from the manifest"
        files += shard["files"]
        ranks += shard["ranks"]
    return dict(m, files=files, ranks=ranks)


def elapsed_since(start: float) -> float:
    return time.monotonic() - start


SIGTERM = signal.SIGTERM
SIGKILL = signal.SIGKILL

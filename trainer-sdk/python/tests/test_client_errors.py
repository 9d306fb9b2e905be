"""The SDK when the sidecar is absent, goes away, restarts or refuses: clear CheckpointErrors, no hang."""

import os
import socket
import threading
import time

import pytest

from checkpoint_sdk import CheckpointClient, CheckpointError, CheckpointReason, CheckpointStatus, ErrorCode
from conftest import SIGKILL, SIGTERM, assert_verifies, elapsed_since, step_id


def client_for(dirs, **options):
    """An in-process client; it never owns SIGTERM or exits the test process."""
    options.setdefault("handle_termination", False)
    options.setdefault("exit_process", lambda code: pytest.fail(f"the SDK tried to exit the test process ({code})"))
    return CheckpointClient(dirs.socket_path, **options)


def test_absent_sidecar_fails_fast_naming_the_socket(dirs):
    start = time.monotonic()
    with pytest.raises(CheckpointError) as raised:
        client_for(dirs, connect_timeout=10, socket_wait_timeout=0)
    assert raised.value.code == ErrorCode.UNAVAILABLE
    assert dirs.socket_path in str(raised.value)
    assert "no checkpoint sidecar socket" in str(raised.value)
    assert "CHECKPOINT_SOCKET_PATH" in str(raised.value)
    assert elapsed_since(start) < 5, "connecting to an absent sidecar must fail at once, not wait for the timeout"


def test_socket_without_listener_says_nothing_answers(dirs):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(dirs.socket_path)  # the file exists; nobody listens (a crashed sidecar leaves this)
    stale.close()
    start = time.monotonic()
    with pytest.raises(CheckpointError) as raised:
        client_for(dirs, socket_wait_timeout=0)
    assert raised.value.code == ErrorCode.UNAVAILABLE
    assert f"socket {dirs.socket_path} exists but nothing answers" in str(raised.value)
    assert elapsed_since(start) < 5


def test_default_socket_path_comes_from_the_environment(dirs, monkeypatch):
    monkeypatch.setenv("CHECKPOINT_SOCKET_PATH", dirs.socket_path)
    with pytest.raises(CheckpointError) as raised:
        CheckpointClient(handle_termination=False, socket_wait_timeout=0)
    assert dirs.socket_path in str(raised.value)
    monkeypatch.delenv("CHECKPOINT_SOCKET_PATH")
    with pytest.raises(CheckpointError) as raised:
        CheckpointClient(handle_termination=False, connect_timeout=5, socket_wait_timeout=0)
    assert "/var/run/checkpoint/sidecar.sock" in str(raised.value)


class SlowHandshakeProxy:
    """A Unix-socket proxy in front of the sidecar that holds each new connection for a while before
    passing bytes on: what a sidecar on a busy node looks like to a connecting trainer."""

    def __init__(self, target: str, path: str, hold_s: float):
        self.target, self.path, self.hold_s = target, path, hold_s
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(downstream,), daemon=True).start()

    def _serve(self, downstream: socket.socket) -> None:
        time.sleep(self.hold_s)  # the fault being injected: a slow first answer, not synchronisation
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.target)
        for source, sink in ((downstream, upstream), (upstream, downstream)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def test_attach_waits_for_a_slow_handshake(procs, dirs, tmp_path):
    """gRPC takes grpc.min_reconnect_backoff_ms as its connect timeout too: a short one made attaching
    fail on a busy node, where the sidecar's HTTP/2 SETTINGS frame can take a second to come."""
    procs.sidecar()
    proxy = SlowHandshakeProxy(dirs.socket_path, str(tmp_path / "slow.sock"), hold_s=1.5)
    try:
        options = {"handle_termination": False,
                   "exit_process": lambda code: pytest.fail(f"the SDK tried to exit the test process ({code})")}
        with CheckpointClient(proxy.path, connect_timeout=20, **options) as client:
            assert [t.rank for t in client.status().trainers] == [0]
        assert proxy.connections >= 1
    finally:
        proxy.close()


def test_sidecar_refuses_a_missing_file_with_invalid_argument(procs, dirs):
    procs.sidecar()
    with client_for(dirs) as client:
        dump = client.begin_checkpoint(5)
        (dump.rank_dir(0)).mkdir(parents=True)
        (dump.rank_dir(0) / "model.pt").write_bytes(b"weights")
        with pytest.raises(CheckpointError) as raised:
            client.report_dump(dump, 5, ["rank-0/model.pt", "rank-0/missing.pt"])
        assert raised.value.code == ErrorCode.INVALID_ARGUMENT
        assert "rank-0/missing.pt" in str(raised.value)
        assert "rank-0/missing.pt" in raised.value.detail


def test_context_manager_surfaces_a_refused_report(procs, dirs):
    procs.sidecar()
    with client_for(dirs) as client:
        writer = client.checkpoint(7)
        with pytest.raises(CheckpointError) as raised:
            with writer as directory:
                (directory / "model.pt").write_bytes(b"weights")
                os.symlink("/etc/hostname", directory / "escape.pt")  # leads out of staging: the sidecar refuses
        assert raised.value.code == ErrorCode.INVALID_ARGUMENT
        assert "rank-0/escape.pt" in str(raised.value)
        assert dirs.latest() is None


def test_unknown_checkpoint_is_not_found(procs, dirs):
    procs.sidecar()
    with client_for(dirs) as client:
        with pytest.raises(CheckpointError) as raised:
            client.wait_for_checkpoint("20990101T000000000Z-periodic", timeout=5)
        assert raised.value.code == ErrorCode.NOT_FOUND


def test_periodic_checkpoint_commits_and_is_returned_for_resume(procs, dirs):
    sidecar = procs.sidecar()
    with client_for(dirs, checkpoint_every=10) as client:
        assert client.latest() is None
        assert not client.should_checkpoint(0) and not client.should_checkpoint(5)
        assert client.should_checkpoint(10)
        writer = client.checkpoint(10, metadata={"epoch": "3"})
        with writer as directory:
            assert directory == writer.dump.staging_dir / "rank-0"
            (directory / "sub").mkdir()
            (directory / "sub" / "model.pt").write_bytes(os.urandom(4096))
        assert writer.files == ["rank-0/sub/model.pt"]
        assert writer.dump.reason == CheckpointReason.PERIODIC
        assert not client.should_checkpoint(10), "a step is checkpointed once"
        outcome = client.wait_for_checkpoint(writer.checkpoint_id, timeout=30)
        assert outcome.status == CheckpointStatus.COMMITTED and outcome.step == 10
        latest = client.latest()
        assert latest.checkpoint_id == step_id(10) and latest.step == 10 and latest.world_size == 1
        assert latest.metadata == {"epoch": "3"}
        assert (latest.rank_dir(0) / "sub" / "model.pt").is_file()
        assert latest.directory.parent == dirs.job / step_id(10), "this pod's shard of the step's directory"
        assert [f["path"] for f in assert_verifies(dirs.job / step_id(10))["files"]] == ["rank-0/sub/model.pt"]
    # Rank 0 attaches again: only once the sidecar has seen the first client leave.
    sidecar.wait_for_line(r"Trainer \S+ \(rank 0\) detached")
    with client_for(dirs, checkpoint_every=10) as resumed:
        assert resumed.latest().step == 10
        assert not resumed.should_checkpoint(10), "the step resumed from is not checkpointed again"
        assert resumed.should_checkpoint(20)


def test_begin_while_terminating_is_failed_precondition(procs, dirs):
    sidecar = procs.sidecar()
    with client_for(dirs) as client:
        requested = threading.Event()
        client.on_dump_requested(lambda dump: requested.set())
        sidecar.signal(SIGTERM)
        assert requested.wait(30) or client.pending_dump is not None
        assert client.pending_dump.reason == CheckpointReason.PREEMPTION
        assert client.termination_requested
        with pytest.raises(CheckpointError) as raised:
            client.begin_checkpoint(3)
        assert raised.value.code == ErrorCode.FAILED_PRECONDITION


def test_sidecar_going_away_and_restarting(procs, dirs):
    sidecar = procs.sidecar()
    with client_for(dirs) as client:
        first_id = client.trainer_id
        sidecar.signal(SIGKILL)
        sidecar.wait_exit(10)
        assert client.wait_detached(10), "the client must notice the broken attachment"

        start = time.monotonic()
        with pytest.raises(CheckpointError) as raised:
            with client.checkpoint(20):
                pytest.fail("no directory without a sidecar")
        assert raised.value.code == ErrorCode.UNAVAILABLE and dirs.socket_path in str(raised.value)
        assert elapsed_since(start) < 5, "a call to a dead sidecar must fail fast"

        procs.sidecar()  # the pod's sidecar container restarted, same socket and volumes
        assert client.wait_attached(30), "the client must attach again to the restarted sidecar"
        assert [t.rank for t in client.status().trainers] == [0]
        writer = client.checkpoint(20)
        with writer as directory:
            (directory / "model.pt").write_bytes(b"after restart")
        outcome = client.wait_for_checkpoint(writer.checkpoint_id, timeout=30)
        assert outcome.status == CheckpointStatus.COMMITTED, outcome
        assert assert_verifies(dirs.job / step_id(20))["step"] == 20

"""A trainer that starts before its sidecar (a regular sidecar container starts beside it, not before it) waits for the
socket, bounded by socket_wait_timeout / CHECKPOINT_CONNECT_TIMEOUT_SECONDS, and then attaches."""

import socket
import threading
import time

import pytest

import checkpoint_sdk.client as client_module
from checkpoint_sdk import CheckpointClient, CheckpointError, ErrorCode
from conftest import DEFAULT_TIMEOUT, elapsed_since
from fake_sidecar import FakeSidecar


class ProbeWatch:
    """Wraps the SDK's socket probe: a test waits until the client has found the socket missing or refusing."""

    def __init__(self, monkeypatch):
        self.refused = threading.Event()
        self.failures = 0
        real = client_module._probe_socket

        def probe(path):
            try:
                real(path)
            except OSError:
                self.failures += 1
                self.refused.set()
                raise

        monkeypatch.setattr(client_module, "_probe_socket", probe)


class ClientInThread:
    """Constructs a client on another thread; the test waits for the outcome."""

    def __init__(self, dirs, **options):
        self.client = None
        self.error = None
        self.done = threading.Event()
        options.setdefault("handle_termination", False)
        options.setdefault("exit_process", lambda code: pytest.fail(f"the SDK tried to exit the test process ({code})"))

        def run():
            try:
                self.client = CheckpointClient(dirs.socket_path, **options)
            except BaseException as e:  # noqa: BLE001 - handed to the test thread
                self.error = e
            finally:
                self.done.set()

        threading.Thread(target=run, daemon=True).start()

    def result(self):
        assert self.done.wait(DEFAULT_TIMEOUT), "the client neither attached nor failed"
        if self.error is not None:
            raise self.error
        return self.client


def test_client_started_before_sidecar_attaches_once_socket_appears(dirs, monkeypatch):
    watch = ProbeWatch(monkeypatch)
    pending = ClientInThread(dirs, rank=3)
    assert watch.refused.wait(DEFAULT_TIMEOUT), "the client never looked for the socket"
    assert not pending.done.is_set(), "the client gave up at once instead of waiting for the socket"

    sidecar = FakeSidecar(dirs.socket_path, dirs.staging)
    try:
        with pending.result() as client:
            assert client.attached
            assert client.trainer_id == "fake-3"
            assert [r.rank for r in sidecar.attach_requests] == [3]
    finally:
        sidecar.stop()


def test_stale_socket_file_without_listener_is_waited_on(dirs, monkeypatch):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(dirs.socket_path)  # what a killed sidecar leaves: the file, nobody listening
    stale.close()
    watch = ProbeWatch(monkeypatch)
    pending = ClientInThread(dirs)
    assert watch.refused.wait(DEFAULT_TIMEOUT)
    assert not pending.done.is_set(), "a stale socket file must be waited on, not fail at once"

    sidecar = FakeSidecar(dirs.socket_path, dirs.staging)  # replaces the stale file, as the real sidecar does
    try:
        with pending.result() as client:
            assert client.attached
    finally:
        sidecar.stop()


def test_no_socket_within_timeout_fails_naming_path_and_setting(dirs, monkeypatch):
    watch = ProbeWatch(monkeypatch)
    start = time.monotonic()
    with pytest.raises(CheckpointError) as raised:
        CheckpointClient(dirs.socket_path, handle_termination=False, socket_wait_timeout=0.3)
    assert elapsed_since(start) >= 0.3
    assert watch.failures >= 2, "the client must retry within its timeout"
    assert raised.value.code == ErrorCode.UNAVAILABLE
    message = str(raised.value)
    assert dirs.socket_path in message
    assert "waited 0.3 s" in message
    assert "CHECKPOINT_CONNECT_TIMEOUT_SECONDS" in message


def test_timeout_from_environment_zero_fails_at_once(dirs, monkeypatch):
    watch = ProbeWatch(monkeypatch)
    monkeypatch.setenv("CHECKPOINT_CONNECT_TIMEOUT_SECONDS", "0")
    with pytest.raises(CheckpointError) as raised:
        CheckpointClient(dirs.socket_path, handle_termination=False)
    assert watch.failures == 1
    assert "waited 0 s" in str(raised.value)


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
def test_timeout_from_environment_malformed_is_refused(dirs, monkeypatch, value):
    monkeypatch.setenv("CHECKPOINT_CONNECT_TIMEOUT_SECONDS", value)
    with pytest.raises(CheckpointError) as raised:
        CheckpointClient(dirs.socket_path, handle_termination=False)
    assert raised.value.code == ErrorCode.INVALID_ARGUMENT
    assert "CHECKPOINT_CONNECT_TIMEOUT_SECONDS" in str(raised.value)


def test_trainer_process_started_before_real_sidecar_checkpoints(dirs, procs):
    """The example trainer and the published sidecar, in the order a regular sidecar container may start them."""
    trainer = procs.trainer("--steps", "30", "--checkpoint-every", "10", CHECKPOINT_CONNECT_TIMEOUT_SECONDS="60")
    trainer.wait_for_line(r"waiting up to 60 s for the checkpoint sidecar socket")
    sidecar = procs.sidecar()
    sidecar.wait_for_line(r"Trainer \S+ \(rank 0, .*\) attached")
    assert trainer.wait_exit() == 0
    assert dirs.latest() is not None

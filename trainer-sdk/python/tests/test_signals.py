"""The diagnosis of a shell between the container runtime and the trainer."""

import warnings

import pytest

from checkpoint_sdk import diagnose_signal_delivery


def fake_proc(tmp_path, comms):
    for pid, comm in comms.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_text(comm + "\n")
    return str(tmp_path)


@pytest.mark.parametrize("shell", ["sh", "bash", "dash"])
def test_shell_as_pid1_is_diagnosed_with_the_recipe(tmp_path, shell):
    proc = fake_proc(tmp_path, {1: shell, 7: "python3"})
    problem = diagnose_signal_delivery(pid=8, ppid=7, proc=proc)
    assert problem is not None and f"PID 1 is the shell '{shell}'" in problem
    assert "exec python" in problem and "tini" in problem


def test_shell_parent_is_diagnosed(tmp_path):
    proc = fake_proc(tmp_path, {1: "tini", 7: "bash"})
    problem = diagnose_signal_delivery(pid=8, ppid=7, proc=proc)
    assert problem is not None and "started by the shell 'bash'" in problem


@pytest.mark.parametrize("pid,comms", [(1, {1: "sh"}), (8, {1: "python3", 7: "tini"}), (8, {1: "tini", 7: "dumb-init"})])
def test_no_warning_when_the_trainer_gets_the_signal(tmp_path, pid, comms):
    assert diagnose_signal_delivery(pid=pid, ppid=7, proc=fake_proc(tmp_path, comms)) is None


def test_client_warns_when_signals_may_not_arrive(procs, dirs, monkeypatch):
    import checkpoint_sdk._signals as signals
    from checkpoint_sdk import CheckpointClient

    procs.sidecar()
    monkeypatch.delenv("CHECKPOINT_SDK_SIGNAL_WARNING", raising=False)
    monkeypatch.setattr(signals, "diagnose_signal_delivery", lambda: "PID 1 is the shell 'sh'")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = CheckpointClient(dirs.socket_path, exit_process=lambda code: None)
        client.close()
    assert any("PID 1 is the shell" in str(w.message) and w.category is RuntimeWarning for w in caught)

"""`checkpoint-sidecar drill` against a real sidecar and the example trainer: the SDK writes the pushed drill dump at
the next step boundary, as it would a preemption's, and training goes on (no exit, no deadline watchdog).

The trainers run without periodic checkpoints, so the only way a checkpoint can appear is the SDK serving the push.
"""

import json
import os
import re

from conftest import ObservedProcess, assert_verifies, free_port, sidecar_binary, step_id

DRILL_WRITTEN = r"^checkpoint (\S+) written at step (\d+) \(drill\)$"


def run_drill(procs, dirs, name: str = "drill") -> dict:
    """Runs `checkpoint-sidecar drill --json` on the test's socket; asserts exit 0 (it fits) and returns the report."""
    env = dict(os.environ, CHECKPOINT_SOCKET_PATH=dirs.socket_path)
    drill = ObservedProcess(name, [str(sidecar_binary()), "drill", "--json"], env)
    procs.started.append(drill)
    code = drill.wait_exit()
    assert code == 0, f"the drill should commit within the budget (exit 0), got {code}:\n{drill.output}"
    out = drill.output
    return json.loads(out[out.index("{"):])


def assert_drill_committed(dirs, report: dict, written: "list[re.Match[str]]") -> int:
    """Every rank wrote the drill's checkpoint at one step; it is the one the drill committed. Returns the step."""
    ids_steps = {(w.group(1), int(w.group(2))) for w in written}
    assert len(ids_steps) == 1, f"the ranks wrote different drill checkpoints or steps: {ids_steps}"
    checkpoint_id, step = ids_steps.pop()
    assert report["outcome"] == "committed" and report["fits"] is True, report
    assert report["checkpointId"] == checkpoint_id, "the trainer wrote the drill's dump, not a checkpoint of its own"
    assert report["step"] == step, "committed at the step the trainer was at when it wrote the dump"
    m = assert_verifies(dirs.job / step_id(step))
    assert m["step"] == step
    return step


def test_drill_is_written_at_the_next_step_boundary_and_training_goes_on(procs, dirs):
    sidecar = procs.sidecar(grace=30, margin=1)
    trainer = procs.trainer("--steps", "100000", "--checkpoint-every", "0", "--step-delay-ms", "20")
    trainer.wait_for_line("^starting fresh$")
    trainer.wait_for_line("^step 20 ")

    report = run_drill(procs, dirs)
    written = trainer.wait_for_line(DRILL_WRITTEN)
    step = assert_drill_committed(dirs, report, [written])
    assert step >= 20
    assert dirs.latest() == step_id(step)
    sidecar.wait_for_line(rf"Checkpoint {re.escape(written.group(1))} \(drill, step {step}\) committed")

    # Training goes on past the drill, in the same process, still attached: a second drill is served again, later.
    later = (step // 10 + 3) * 10
    trainer.wait_for_line(rf"^step {later} ")
    second = run_drill(procs, dirs, name="drill-2")
    again = trainer.wait_for_line(rf"^checkpoint (?!{re.escape(written.group(1))}\b)(\S+) written at step (\d+) "
                                  rf"\(drill\)$")
    second_step = assert_drill_committed(dirs, second, [again])
    assert second_step >= later
    trainer.wait_for_line(rf"^step {(second_step // 10 + 2) * 10} ")

    assert trainer.process.poll() is None, "a drill must not end the trainer"
    assert sidecar.process.poll() is None, "a drill must not end the sidecar"
    assert "exiting with code" not in trainer.output, trainer.output
    assert "preemption drill, training goes on" in trainer.output, "the SDK says what the push was"


def test_two_ranks_write_the_drill_at_the_same_step(procs, dirs):
    """torch.distributed (gloo, two processes, one sidecar): the push reaches the ranks at different moments; the
    step-boundary collective makes both write the drill at one step, so the sidecar commits it."""
    procs.sidecar(grace=30, margin=1)
    port = free_port()
    env = lambda r: {"RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r), "MASTER_ADDR": "127.0.0.1",  # noqa: E731
                     "MASTER_PORT": str(port)}
    ranks = [procs.trainer("--steps", "100000", "--checkpoint-every", "0", "--step-delay-ms", "10",
                           name=f"rank{r}", **env(r)) for r in (0, 1)]
    for r in ranks:
        r.wait_for_line("^step 20 ")

    report = run_drill(procs, dirs)
    written = [r.wait_for_line(DRILL_WRITTEN) for r in ranks]
    step = assert_drill_committed(dirs, report, written)
    m = assert_verifies(dirs.job / step_id(step))
    assert sorted(f["path"] for f in m["files"]) == [
        "rank-0/model.pt", "rank-0/optimizer.pt", "rank-0/trainer_state.pt", "rank-1/trainer_state.pt"]

    later = (step // 10 + 2) * 10
    for r in ranks:
        r.wait_for_line(rf"^step {later} ")
        assert r.process.poll() is None and "exiting with code" not in r.output, r.output

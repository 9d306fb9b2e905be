"""Two trainer ranks (torch.distributed, gloo, two processes) attached to one sidecar: a preemption dumps the same
step on both ranks and commits once both shards are verified."""

import re

from conftest import PYTHON_DIR, SIGTERM, assert_verifies, free_port, step_id


def rank_env(rank: int, port: int) -> dict:
    return {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port)}


def test_ddp_example_preempted_dumps_the_same_step_on_both_ranks(procs, dirs):
    sidecar = procs.sidecar()
    port = free_port()
    ranks = [procs.trainer("--steps", "100000", "--checkpoint-every", "40", "--step-delay-ms", "10",
                           name=f"rank{r}", **rank_env(r, port)) for r in (0, 1)]
    periodic = [r.wait_for_line(r"^checkpoint (\S+) written at step 40 \(periodic\)$").group(1) for r in ranks]
    assert periodic[0] == periodic[1], "ranks asking at the same step share one checkpoint"
    for r in ranks:
        r.wait_for_line("^step 60 ")

    sidecar.signal(SIGTERM)
    for r in ranks:
        r.signal(SIGTERM)
    written = [r.wait_for_line(r"^checkpoint (\S+) written at step (\d+) \(preemption\)$") for r in ranks]
    checkpoint_id, step = written[0].group(1), int(written[0].group(2))
    assert [(w.group(1), int(w.group(2))) for w in written] == [(checkpoint_id, step)] * 2
    assert [r.wait_exit() for r in ranks] == [1, 1]
    assert sidecar.wait_exit() == 0, sidecar.output
    sidecar.wait_for_line(r"2 of 2 rank\(s\) reported")
    sidecar.wait_for_line(rf"Checkpoint {re.escape(checkpoint_id)} \(preemption, step {step}\) committed")

    assert dirs.latest() == step_id(step)
    m = assert_verifies(dirs.job / step_id(step))
    assert m["step"] == step and m["reason"] == "preemption"
    # DDP-replicated model and optimizer: rank 0 writes them once; each rank writes its own RNG state.
    assert sorted(f["path"] for f in m["files"]) == [
        "rank-0/model.pt", "rank-0/optimizer.pt", "rank-0/trainer_state.pt", "rank-1/trainer_state.pt"]
    assert sorted(r["rank"] for r in m["ranks"]) == [0, 1]


def test_rank_that_learns_late_still_dumps_the_agreed_step(procs, dirs):
    sidecar = procs.sidecar()
    port = free_port()
    script = str(PYTHON_DIR / "tests" / "rank_agreement_trainer.py")
    ranks = [procs.python(f"rank{r}", [script], LATE_RANK1_SECONDS="1.0", **rank_env(r, port)) for r in (0, 1)]
    for r in ranks:
        r.wait_for_line("^ready$")
    sidecar.wait_for_line(r"Trainer \S+ \(rank 1,")
    sidecar.wait_for_line(r"Trainer \S+ \(rank 0,")

    sidecar.signal(SIGTERM)  # only the sidecar: it pushes the dump request on both ranks' streams
    written = [r.wait_for_line(r"^checkpoint (\S+) written at step (\d+) \(preemption\)$") for r in ranks]
    assert written[0].groups() == written[1].groups(), "both ranks must dump the same step"
    for r in ranks:
        r.wait_for_line("^outcome committed$")
        assert r.wait_exit() == 0
    assert sidecar.wait_exit() == 0, sidecar.output
    step = int(written[0].group(2))
    m = assert_verifies(dirs.job / step_id(step))
    assert m["step"] == step
    assert sorted(f["path"] for f in m["files"]) == ["rank-0/shard.bin", "rank-1/shard.bin"]

"""The ranks' collective decisions: the arithmetic in-process, then real gloo worlds of several processes (the SDK's
collectives called directly, and CheckpointClients on fake sidecars, one "pod" per rank). No real sidecar needed."""

from __future__ import annotations

import json
import os
from typing import Dict, List

import pytest

from checkpoint_sdk import CheckpointError, ErrorCode
from checkpoint_sdk import _collectives as c
from conftest import ObservedProcess, PYTHON_DIR

WORKER = PYTHON_DIR / "tests" / "collective_worker.py"


# ---------------------------------------------------------------------------------------------- arithmetic


def test_urgency_reduction_gives_any_urgent_and_the_earliest_deadline():
    ranks = [c.encode_urgency(False, None), c.encode_urgency(True, 1_900_000_100.25),
             c.encode_urgency(True, 1_900_000_050.5), c.encode_urgency(False, None)]
    assert c.decode_urgency(c.combine_urgency(ranks)) == (True, 1_900_000_050.5)


def test_urgency_without_any_deadline_stays_without_one():
    assert c.decode_urgency(c.combine_urgency([c.encode_urgency(False, None)] * 3)) == (False, None)
    # A rank that must dump but does not know its deadline yet leaves the deadline to the others.
    ranks = [c.encode_urgency(True, None), c.encode_urgency(False, None)]
    assert c.decode_urgency(c.combine_urgency(ranks)) == (True, None)


def test_deadline_is_rounded_down_to_the_millisecond():
    # Never later than announced: the earliest deadline is the preempted pod's, to the millisecond below.
    assert c.decode_urgency(c.encode_urgency(True, 1_900_000_000.1239)) == (True, 1_900_000_000.123)


def test_ranks_are_named_as_ranges():
    assert c.describe_ranks([5, 0, 1, 2]) == "ranks 0-2, 5"
    assert c.describe_ranks([7]) == "rank 7"
    assert c.describe_ranks(range(4096)) == "ranks 0-4095"


def test_resume_disagreement_names_each_group_largest_first():
    assert c.resume_disagreement([120, 120, 120]) is None
    assert c.resume_disagreement([c.NO_CHECKPOINT] * 2) is None
    assert c.resume_disagreement([120, 120, 100, c.NO_CHECKPOINT]) == (
        "ranks 0-1 got step 120; rank 2 got step 100; rank 3 found no checkpoint")
    assert "rank 1 could not ask its sidecar" in c.resume_disagreement([120, c.LOOKUP_FAILED])
    many = c.resume_disagreement(list(range(40)))
    assert many.endswith("and 24 more groups")


def test_world_id_is_rank_0s_draw_unless_the_ranks_were_given_one():
    drawn = c.new_world_id()
    assert len(drawn) == 16 and c.valid_world_id(drawn)
    proposals = [c.encode_world_id_proposal("", drawn), c.encode_world_id_proposal("", "")]
    assert c.decide_world_id(proposals, "test") == drawn
    proposals = [c.encode_world_id_proposal("", drawn), c.encode_world_id_proposal("run7", "")]
    assert c.decide_world_id(proposals, "test") == "run7"


@pytest.mark.parametrize("given", [["run7", "run8"], ["Run7", ""], ["x" * 33, ""]])
def test_world_ids_that_differ_or_are_invalid_fail_everywhere(given):
    proposals = [c.encode_world_id_proposal(g, "abc" if r == 0 else "") for r, g in enumerate(given)]
    with pytest.raises(CheckpointError) as raised:
        c.decide_world_id(proposals, "CHECKPOINT_WORLD_ID")
    assert raised.value.code == ErrorCode.INVALID_ARGUMENT
    assert "CHECKPOINT_WORLD_ID" in str(raised.value)


# ---------------------------------------------------------------------------------------------- gloo worlds


def run_world(tmp_path, scenario: str, world: int, config=None, expect_exit: int = 0) -> List[List[Dict]]:
    """Starts ``world`` worker processes (one gloo world) and returns each rank's JSON lines."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", GLOO_SOCKET_IFNAME="lo", CHECKPOINT_SDK_SIGNAL_WARNING="0")
    for name in ("RANK", "WORLD_SIZE", "CHECKPOINT_WORLD_ID", "CHECKPOINT_SOCKET_PATH"):
        env.pop(name, None)
    store = tmp_path / f"store-{scenario}"
    args = [json.dumps(config)] if config is not None else []
    workers = [ObservedProcess(f"rank{r}", ["/usr/bin/python3", str(WORKER), scenario, str(r), str(world), str(store),
                                            str(tmp_path), *args], env) for r in range(world)]
    try:
        codes = [w.wait_exit(timeout=120) for w in workers]
        for w, code in zip(workers, codes):
            assert code == expect_exit, f"{w.name} exited with {code}, expected {expect_exit}. Output:\n{w.output}"
        return [[json.loads(line) for line in w.lines() if line.startswith("{")] for w in workers]
    finally:
        for w in workers:
            w.kill()


def by_what(lines: List[Dict]) -> Dict[str, Dict]:
    return {line["what"]: line for line in lines}


def test_collectives_agree_across_a_gloo_world(tmp_path):
    world = 3
    results = [by_what(lines) for lines in run_world(tmp_path, "primitives", world)]
    for rank, r in enumerate(results):
        assert (r["urgency"]["urgent"], r["urgency"]["deadline"]) == (True, 1_900_000_050.5), f"rank {rank}"
        assert (r["calm"]["urgent"], r["calm"]["deadline"]) == (False, None), f"rank {rank}"
        assert r["world-id-given"]["value"] == "run42", "a given id reaches the ranks that were given none"
        assert r["resume-same"]["value"] == "agreed"
        assert r["world-id-conflict"]["error"] == "INVALID_ARGUMENT"
        assert "rank 0: run42" in r["world-id-conflict"]["message"] and "rank 1: run43" in r["world-id-conflict"]["message"]
        split = r["resume-split"]
        assert split["error"] == "FAILED_PRECONDITION", f"rank {rank} must refuse to start split too"
        assert "ranks 0-1 got step 120; rank 2 got step 100" in split["message"]
    drawn = {r["world-id"]["value"] for r in results}
    assert len(drawn) == 1 and c.valid_world_id(drawn.pop()), "every rank takes rank 0's random world id"


def test_client_attaches_with_the_world_and_refuses_a_split_resume(tmp_path):
    # Each rank's fake sidecar answers three lookups: all agree; rank 2's pod sees an older step; rank 1's fails.
    latest = {"latest": [[120, 120, 120], [120, 120, "error"], [120, 100, 120]]}
    results = run_world(tmp_path, "client-resume", 3, latest)
    attaches = [next(line for line in lines if line["what"] == "attach") for lines in results]
    assert [a["rank"] for a in attaches] == [0, 1, 2]
    assert {a["world_size"] for a in attaches} == {3}
    assert len({a["world_id"] for a in attaches}) == 1 and c.valid_world_id(attaches[0]["world_id"])
    lookups = [[line for line in lines if line["what"] == "latest"] for lines in results]
    for rank in range(3):
        first, second, third = lookups[rank]
        assert (first.get("step"), first.get("world_size")) == (120, 3), f"rank {rank}: {first}"
        assert second["error"] == "FAILED_PRECONDITION", f"rank {rank}: {second}"
        assert "ranks 0-1 got step 120; rank 2 got step 100" in second["message"]
        if rank == 1:
            assert third["error"] == "INTERNAL" and "fake storage cannot be read" in third["message"]
        else:
            assert third["error"] == "FAILED_PRECONDITION" and "rank 1 could not ask its sidecar" in third["message"]


def test_one_preempted_pod_makes_every_rank_dump_the_same_step_with_its_deadline(tmp_path):
    results = [by_what(lines) for lines in run_world(tmp_path, "client-preemption", 3, expect_exit=1)]
    dumps = [r["dump"] for r in results]
    assert all("not-exited" not in r for r in results), "handle_termination exits every rank after the checkpoint"
    step = dumps[0]["step"]
    assert step >= 5 and all(d["step"] == step for d in dumps), f"ranks dumped different steps: {dumps}"
    assert all(d["reason"] == "preemption" for d in dumps)
    assert dumps[0]["begin"] == [], "the preempted rank takes its own sidecar's dump"
    announced = dumps[0]["announced_deadline"]  # by rank 0's sidecar, the only one being preempted
    for d in dumps[1:]:
        [begin] = d["begin"]
        assert begin["step"] == step and begin["reason"] == 1  # CHECKPOINT_REASON_PREEMPTION
        assert announced - 0.002 < begin["deadline"] <= announced, "the preempted pod's deadline, carried over"
        assert d["checkpoint_id"].startswith(f"fake-{step}-"), "the dump its own sidecar answered"

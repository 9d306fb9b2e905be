"""The PyTorch helpers restore everything a bit-identical continuation needs, and the hash notices what they miss."""

import random

import numpy as np
import torch
import torch.nn as nn

from checkpoint_sdk.torch_state import load_training_state, save_training_state, state_sha256


def make():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
    return model, torch.optim.Adam(model.parameters(), lr=1e-2)


def train(model, optimizer, steps):
    for _ in range(steps):
        x = torch.randn(4, 8) + torch.from_numpy(np.random.standard_normal((4, 8)).astype(np.float32)) * random.random()
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()


def test_resume_is_bit_identical_and_needs_every_rng_and_the_optimizer(tmp_path):
    torch.set_num_threads(1)
    model, optimizer = make()
    np.random.seed(1)
    random.seed(2)
    train(model, optimizer, 5)
    files = save_training_state(tmp_path / "rank-0", model, optimizer, step=5)
    assert sorted(f.name for f in files) == ["model.pt", "optimizer.pt", "trainer_state.pt"]
    train(model, optimizer, 5)
    expected = state_sha256(model, optimizer)

    def resumed(**kwargs):
        m, o = make()
        torch.manual_seed(99)
        np.random.seed(99)
        random.seed(99)
        state = load_training_state(tmp_path / "rank-0", m, o if kwargs.get("optimizer", True) else None,
                                    restore_rng=kwargs.get("restore_rng", True))
        assert state.step == 5
        if not kwargs.get("optimizer", True):
            o = torch.optim.Adam(m.parameters(), lr=1e-2)
        train(m, o, 5)
        return state_sha256(m, o)

    assert resumed() == expected
    assert resumed(restore_rng=False) != expected
    assert resumed(optimizer=False) != expected


def test_hash_covers_the_optimizer_state():
    model, optimizer = make()
    train(model, optimizer, 1)
    before = state_sha256(model, optimizer)
    optimizer.state_dict()["state"][0]["exp_avg"].add_(1e-7)
    assert state_sha256(model, optimizer) != before
    assert state_sha256(model) != before


# --------------------------------------------------------------------- weights-only loading (torch >= 2.6's default)

import json  # noqa: E402

import pytest  # noqa: E402

from checkpoint_sdk import CheckpointError, ErrorCode  # noqa: E402
from checkpoint_sdk.torch_state import (  # noqa: E402
    distributed_checkpoint_support,
    load_distributed_checkpoint,
    rank_directories,
    save_distributed_checkpoint,
)


def test_every_file_loads_with_the_weights_only_unpickler_and_the_resume_is_bit_identical(tmp_path):
    torch.set_num_threads(1)
    model, optimizer = make()
    np.random.seed(1)
    random.seed(2)
    random.gauss(0, 1)  # python's random keeps a cached gaussian (a float) in its state
    np.random.standard_normal()  # numpy's state has a float too
    train(model, optimizer, 3)
    files = save_training_state(tmp_path, model, optimizer, step=3, extra={"epoch": 1, "lr": 0.5, "name": "x"})
    for path in files:
        torch.load(path, weights_only=True)  # what torch >= 2.6 does by default; raises on anything else
    train(model, optimizer, 3)
    expected = state_sha256(model, optimizer), np.random.standard_normal(), random.random()

    m, o = make()
    state = load_training_state(tmp_path, m, o, weights_only=True)
    assert (state.step, state.extra) == (3, {"epoch": 1, "lr": 0.5, "name": "x"})
    assert type(state.extra["lr"]) is float
    train(m, o, 3)
    assert (state_sha256(m, o), np.random.standard_normal(), random.random()) == expected


class Opaque:
    pass


def test_extra_the_weights_only_unpickler_refuses_is_a_clear_error_not_code_execution(tmp_path):
    model, optimizer = make()
    save_training_state(tmp_path, model, optimizer, step=1, extra={"sampler": Opaque()})
    with pytest.raises(CheckpointError) as raised:
        load_training_state(tmp_path, *make())
    assert raised.value.code == ErrorCode.DATA_LOSS
    assert "trainer_state.pt" in str(raised.value) and "weights_only=False" in str(raised.value)
    assert isinstance(load_training_state(tmp_path, *make(), weights_only=False).extra["sampler"], Opaque)


def test_files_of_the_previous_format_still_load_when_trusted(tmp_path):
    # checkpoint_sdk 0.1.0 pickled numpy's state tuple (an ndarray) and plain floats.
    model, optimizer = make()
    np.random.seed(5)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    torch.save({"step": 7, "rng": {"python": random.getstate(), "torch": torch.get_rng_state(),
                                   "numpy": np.random.get_state()}, "extra": {}}, tmp_path / "trainer_state.pt")
    expected = np.random.standard_normal()
    np.random.seed(6)
    assert load_training_state(tmp_path, *make(), weights_only=False).step == 7
    assert np.random.standard_normal() == expected


def test_replicated_state_without_the_model_file_outside_torch_distributed_says_where_it_is(tmp_path):
    model, optimizer = make()
    save_training_state(tmp_path, model, optimizer, step=1)
    state = torch.load(tmp_path / "trainer_state.pt", weights_only=True)
    state["replicated_from"] = 0  # as rank 1 of a DDP world writes it
    torch.save(state, tmp_path / "trainer_state.pt")
    (tmp_path / "model.pt").unlink()
    with pytest.raises(CheckpointError) as raised:
        load_training_state(tmp_path, *make())
    assert raised.value.code == ErrorCode.FAILED_PRECONDITION
    assert "rank 0 wrote the replicated model" in str(raised.value)


# --------------------------------------------------------------------- torch.distributed.checkpoint


def test_rank_directories_of_a_job_wide_checkpoint_come_from_its_manifest(tmp_path):
    step = tmp_path / "step-000000040"
    for shard, ranks in (("pod-0_aa", (0, 1)), ("pod-1_bb", (2, 3))):
        for r in ranks:
            (step / shard / f"rank-{r}").mkdir(parents=True)
    shards = [{"directory": "pod-0_aa", "ranks": [{"rank": 0}, {"rank": 1}]},
              {"directory": "pod-1_bb", "ranks": [{"rank": 2}, {"rank": 3}]}]
    (step / "manifest.json").write_text(json.dumps({"formatVersion": 2, "shards": shards}))
    assert rank_directories(step / "pod-1_bb") == {
        0: step / "pod-0_aa" / "rank-0", 1: step / "pod-0_aa" / "rank-1",
        2: step / "pod-1_bb" / "rank-2", 3: step / "pod-1_bb" / "rank-3"}

    shards[1]["directory"] = "../elsewhere"
    (step / "manifest.json").write_text(json.dumps({"formatVersion": 2, "shards": shards}))
    with pytest.raises(CheckpointError, match="outside the step"):
        rank_directories(step / "pod-0_aa")


def test_rank_directories_of_a_single_pod_checkpoint_are_its_rank_folders(tmp_path):
    for name in ("rank-0", "rank-1", "rank-x", "notes"):
        (tmp_path / name).mkdir()
    assert rank_directories(tmp_path) == {0: tmp_path / "rank-0", 1: tmp_path / "rank-1"}


@pytest.mark.skipif(distributed_checkpoint_support() is not None, reason=str(distributed_checkpoint_support()))
def test_distributed_checkpoint_round_trip_in_a_one_rank_world(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model, optimizer = make()
        train(model, optimizer, 2)
        files = save_distributed_checkpoint(tmp_path / "step" / "rank-0", {"model": model.state_dict()})
        assert {p.parent.name for p in files} == {"dcp"} and any(p.name == ".metadata" for p in files)
        fresh, _ = make()
        target = {"model": fresh.state_dict()}
        load_distributed_checkpoint(tmp_path / "step", target)
        fresh.load_state_dict(target["model"])
        assert state_sha256(fresh) == state_sha256(model)
    finally:
        dist.destroy_process_group()

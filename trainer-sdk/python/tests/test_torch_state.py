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

"""One rank of a multi-pod job for test_multi_pod: a small DDP model over gloo, the SDK as a real trainer uses it.

    world_trainer.py --store FILE [--steps N] [--checkpoint-every K] [--step-delay-ms MS] [--padding-mib M]

RANK and WORLD_SIZE from the environment (as torchrun sets them), the pod's sidecar from CHECKPOINT_SOCKET_PATH; the
world meets through a FileStore (no port picked ahead). ``--padding-mib`` adds a file of that size to each shard,
to make the sidecar's copy take a while. The model is DDP-replicated: rank 0 alone writes model.pt and optimizer.pt;
on resume the other ranks get them by broadcast from rank 0 (their pods' storage holds only their trainer_state.pt).

Stdout (read by the tests): ``starting fresh`` or ``resumed from checkpoint <id> at step <n> state <sha256>``,
``step <n>`` every 10 steps, ``checkpoint <id> written at step <n> (<reason>) state <sha256>``,
``outcome <id> <status> missing [<ranks>]`` for periodic checkpoints (followed in the background),
``finished at step <n> state <sha256>``. ``state`` hashes the model, the optimizer and every RNG state, so equal
hashes at the dump and after the resume mean a bit-exact resume. A preemption ends the process inside the
checkpoint block (the SDK exits with the preemption exit code and says why on stderr).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn as nn  # noqa: E402

from checkpoint_sdk import CheckpointClient, CheckpointError, CheckpointStatus  # noqa: E402
from checkpoint_sdk.torch_state import load_training_state, save_training_state, state_sha256  # noqa: E402


def full_state(model, optimizer) -> str:
    """Model, optimizer and every RNG the training draws on."""
    digest = hashlib.sha256(state_sha256(model, optimizer).encode())
    digest.update(torch.get_rng_state().numpy().tobytes())
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    digest.update(keys.tobytes() + repr((kind, position, has_gauss, gauss)).encode())
    digest.update(repr(random.getstate()).encode())
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--step-delay-ms", type=int, default=0)
    parser.add_argument("--padding-mib", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"file://{args.store}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=90))
    torch.manual_seed(1234)  # same initial weights on every rank
    # Wide enough that the model and optimizer, not the RNG states, make up most of the bytes (as in real jobs).
    model = nn.Sequential(nn.Linear(16, 1024), nn.ReLU(), nn.Dropout(0.1), nn.Linear(1024, 4))
    torch.manual_seed(99 + rank)  # each rank draws its own data
    np.random.seed(199 + rank)
    random.seed(299 + rank)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ddp = nn.parallel.DistributedDataParallel(model)

    client = CheckpointClient(checkpoint_every=args.checkpoint_every, description=f"world_trainer rank {rank}")
    assert client.world_size == world and client.world_id, "the world is given on Attach"
    step = 0
    latest = client.latest()
    if latest is None:
        print("starting fresh", flush=True)
    else:
        step = load_training_state(latest.rank_dir(rank), ddp, optimizer).step
        print(f"resumed from checkpoint {latest.checkpoint_id} at step {step} state {full_state(model, optimizer)}",
              flush=True)

    def follow(checkpoint_id: str) -> None:
        try:
            outcome = client.wait_for_checkpoint(checkpoint_id)
        except CheckpointError as error:
            print(f"outcome {checkpoint_id} unknown: {error}", flush=True)
            return
        print(f"outcome {checkpoint_id} {outcome.status.value} missing {list(outcome.missing_ranks)}", flush=True)

    while step < args.steps:
        if client.should_checkpoint(step):
            writer = client.checkpoint(step)
            with writer as directory:
                save_training_state(directory, ddp, optimizer, step)  # replicated: rank 0 writes model and optimizer
                if args.padding_mib:
                    (directory / "padding.bin").write_bytes(os.urandom(args.padding_mib << 20))
                print(f"checkpoint {writer.checkpoint_id} written at step {step} ({writer.dump.reason.value}) "
                      f"state {full_state(model, optimizer)}", flush=True)
            if writer.outcome is None:  # periodic: persisted in the background
                threading.Thread(target=follow, args=(writer.checkpoint_id,), daemon=True).start()
            elif writer.outcome.status != CheckpointStatus.COMMITTED:
                print(f"preemption checkpoint {writer.checkpoint_id} {writer.outcome.status.value}", flush=True)
                return 1
        x = torch.randn(8, 16) + torch.from_numpy(np.random.standard_normal((8, 16)).astype(np.float32)) * random.random()
        optimizer.zero_grad()
        ddp(x).pow(2).mean().backward()  # gradients all_reduced across the pods
        optimizer.step()
        step += 1
        if step % 10 == 0:
            print(f"step {step}", flush=True)
        if args.step_delay_ms:
            time.sleep(args.step_delay_ms / 1000)  # a slower "GPU step", so a test can preempt mid-run
    print(f"finished at step {step} state {full_state(model, optimizer)}", flush=True)
    client.close()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

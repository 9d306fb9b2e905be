#!/usr/bin/python3
"""An MNIST-like classifier (64 "pixels", 10 classes) trained on synthetic data on CPU with the checkpoint SDK.

It resumes from the sidecar's latest checkpoint, checkpoints every N steps, and dumps when the pod is preempted,
so a run that was preempted and resumed ends with the same parameters and optimizer state, bit for bit, as one
that was not. The data draws on the torch, numpy and python ``random`` generators, and the model uses dropout, so
the resume is bit-exact only if every RNG state is restored.

Stdout (read by tests; a contract): ``starting fresh`` or ``resumed from checkpoint <id> at step <n>``,
``step <n> loss <x>`` every 10 steps, ``checkpoint <id> written at step <n> (periodic|preemption|drill)``,
``finished at step <n> params-sha256 <hex>`` (model and optimizer state). Exit codes: 0 finished,
1 preempted (the SDK's preemption exit code), 2 bad command line, 3 sidecar unreachable or checkpoint unreadable.

torch.distributed: with WORLD_SIZE > 1 in the environment (and RANK, MASTER_ADDR, MASTER_PORT, as torchrun sets
them) it trains with DistributedDataParallel over gloo; every rank attaches to the pod's sidecar and writes its
own shard (rank-<r>/).
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import sys
import time
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from checkpoint_sdk import CheckpointClient, CheckpointError, CheckpointReason  # noqa: E402
from checkpoint_sdk.torch_state import load_training_state, save_training_state, state_sha256  # noqa: E402

EXIT_FAILURE = 3


def every(value: str):
    if value == "auto":
        return value
    steps = int(value)
    if steps < 0:
        raise argparse.ArgumentTypeError("a number of steps (0: none) or auto")
    return steps


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--checkpoint-every", type=every, default=50,
                        help="steps between periodic checkpoints (0: none), or auto: the sidecar's recommendation")
    parser.add_argument("--auto-fallback-every", type=int, default=0,
                        help="with --checkpoint-every auto: steps between checkpoints while no recommendation is known")
    parser.add_argument("--step-delay-ms", type=int, default=0, help="sleep after each step (to be preempted mid-run)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--socket", default=None, help="sidecar socket (default: CHECKPOINT_SOCKET_PATH)")
    args = parser.parse_args(argv)
    if args.steps < 0 or args.step_delay_ms < 0 or args.batch_size <= 0:
        parser.error("--steps and --step-delay-ms must be >= 0, --batch-size > 0")
    return args


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Dropout(0.1), nn.Linear(48, 10))

    def forward(self, x):
        return self.layers(x)


def main(argv) -> int:
    args = parse(argv)
    torch.set_num_threads(1)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world_size > 1
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = int(os.environ.get("RANK", "0"))

    # Seeds first: the model's initial weights and the data depend on them; a resume restores the states saved.
    torch.manual_seed(args.seed)  # same initial weights on every rank
    teacher = torch.randn(64, 10, generator=torch.Generator().manual_seed(7))  # the fixed "true" labeller
    model = Net()
    torch.manual_seed(args.seed + 1 + rank)  # each rank draws its own data
    np.random.seed(args.seed + 2 + rank)
    random.seed(args.seed + 3 + rank)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_model = model
    if distributed:
        train_model = nn.parallel.DistributedDataParallel(model)
    loss_fn = nn.CrossEntropyLoss()

    def train_step() -> float:
        x = torch.randn(args.batch_size, 64)
        noise = torch.from_numpy(np.random.standard_normal((args.batch_size, 64)).astype(np.float32))
        x = x + noise * random.uniform(0.05, 0.2)
        labels = (x @ teacher).argmax(dim=1)
        optimizer.zero_grad()
        loss = loss_fn(train_model(x), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    try:
        client = CheckpointClient(socket_path=args.socket, rank=rank, checkpoint_every=args.checkpoint_every,
                                  auto_fallback_every=args.auto_fallback_every,
                                  description=f"train_mnist_like rank {rank} pid {os.getpid()}")
    except CheckpointError as error:
        print(f"train_mnist_like: {error}", file=sys.stderr, flush=True)
        return EXIT_FAILURE

    with client:
        step = 0
        try:
            latest = client.latest()
            if latest is None:
                print("starting fresh", flush=True)
            else:
                step = load_training_state(latest.rank_dir(client.rank), train_model, optimizer).step
                print(f"resumed from checkpoint {latest.checkpoint_id} at step {step}", flush=True)
        except (CheckpointError, OSError, RuntimeError, KeyError) as error:
            print(f"train_mnist_like: cannot resume: {error}", file=sys.stderr, flush=True)
            return EXIT_FAILURE

        while step < args.steps:
            # A step boundary: model and optimizer are consistent, so a checkpoint is written here.
            if client.should_checkpoint(step):
                checkpoint = client.checkpoint(step, metadata={"step": str(step)})
                try:
                    with checkpoint as directory:
                        # Under DDP rank 0 alone writes the (replicated) model and optimizer; resume broadcasts them.
                        save_training_state(directory, train_model, optimizer, step)
                        kind = "drill" if checkpoint.dump.drill else checkpoint.dump.reason.value
                        print(f"checkpoint {checkpoint.checkpoint_id} written at step {step} ({kind})", flush=True)
                    # A preemption never gets here: the SDK exits with the preemption exit code once committed.
                    # A drill (checkpoint-sidecar drill) does: it is written like a preemption, then training goes on.
                except (CheckpointError, OSError) as error:
                    if checkpoint.dump is not None and checkpoint.dump.reason == CheckpointReason.PREEMPTION:
                        print(f"train_mnist_like: preemption checkpoint failed: {error}", file=sys.stderr, flush=True)
                        return client.preemption_exit_code
                    # A missed periodic checkpoint costs only the steps until the next one.
                    print(f"train_mnist_like: periodic checkpoint at step {step} skipped: {error}",
                          file=sys.stderr, flush=True)

            loss = train_step()
            step += 1
            if step % 10 == 0:
                print(f"step {step} loss {loss!r}", flush=True)
            if args.step_delay_ms:
                if args.step_delay_ms >= 1000:
                    # A step this long is where a preemption finds the trainer: say so.
                    print(f"step {step} takes {args.step_delay_ms / 1000:g} s", flush=True)
                time.sleep(args.step_delay_ms / 1000)

        print(f"finished at step {step} params-sha256 {state_sha256(model, optimizer)}", flush=True)
    if distributed:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

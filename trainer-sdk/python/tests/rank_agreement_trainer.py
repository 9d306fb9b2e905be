"""A minimal distributed trainer for test_two_ranks: rank 1 learns of the dump request late (its listener is
slowed down on purpose), so only the collective in should_checkpoint() keeps the ranks on the same step."""

import os
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch.distributed as dist  # noqa: E402

from checkpoint_sdk import CheckpointClient  # noqa: E402

dist.init_process_group("gloo", timeout=timedelta(seconds=60))
rank = dist.get_rank()
client = CheckpointClient(handle_termination=False)
assert client.rank == rank, "the rank comes from torch.distributed"
late = float(os.environ.get("LATE_RANK1_SECONDS", "0"))
if rank == 1 and late > 0:
    record = client._on_dump

    def late_record(dump):
        time.sleep(late)  # fault injection: this rank's stream delivers the request late
        record(dump)

    client._on_dump = late_record
print("ready", flush=True)
step = 0
while True:
    if client.should_checkpoint(step):
        writer = client.checkpoint(step)
        with writer as directory:
            (directory / "shard.bin").write_bytes(bytes([rank]) * 4096 + step.to_bytes(8, "little"))
        print(f"checkpoint {writer.checkpoint_id} written at step {step} ({writer.dump.reason.value})", flush=True)
        print(f"outcome {writer.outcome.status.value}", flush=True)
        break
    step += 1
    time.sleep(0.005)
client.close()
dist.destroy_process_group()

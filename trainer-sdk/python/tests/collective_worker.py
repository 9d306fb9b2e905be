"""One rank of a gloo world for test_collectives: runs a scenario and prints one JSON line per result.

    collective_worker.py SCENARIO RANK WORLD_SIZE STORE_FILE WORK_DIR [JSON_CONFIG]

The world meets through a FileStore (no port picked ahead). Scenarios:

- ``primitives``: the SDK's collectives called directly (urgency, world id, resume agreement).
- ``client-resume``: a CheckpointClient per rank, each on its own fake sidecar (one "pod" per rank), whose
  GetLatestCheckpoint answers are given per rank in the config; prints what latest() returned or raised each time.
- ``client-preemption``: a CheckpointClient per rank on its own fake sidecar; rank 0's sidecar pushes a preemption
  dump at step 5. Every rank must dump the same step; the others ask their own sidecar for the job-wide preemption
  checkpoint with rank 0's deadline, and (handle_termination) every rank exits with the preemption exit code.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch.distributed as dist  # noqa: E402

from checkpoint_sdk import CheckpointClient, CheckpointError  # noqa: E402
from checkpoint_sdk import _collectives as collectives  # noqa: E402
from fake_sidecar import FakeSidecar  # noqa: E402


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def error_fields(error: CheckpointError) -> dict:
    return {"error": error.code.name, "message": str(error)}


def primitives(rank: int, world: int, config: dict) -> None:
    # Rank 1 is being preempted with a deadline; rank 2 too, with an earlier one; rank 0 knows nothing.
    deadlines = {1: 1_900_000_100.250, 2: 1_900_000_050.5}
    urgent, deadline = collectives.agree_urgency(dist, rank in deadlines, deadlines.get(rank))
    emit(what="urgency", urgent=urgent, deadline=deadline)
    urgent, deadline = collectives.agree_urgency(dist, False, None)
    emit(what="calm", urgent=urgent, deadline=deadline)
    emit(what="world-id", value=collectives.agree_world_id(dist, ""))
    emit(what="world-id-given", value=collectives.agree_world_id(dist, "run42" if rank == world - 1 else ""))
    try:
        collectives.agree_world_id(dist, "run42" if rank == 0 else "run43" if rank == 1 else "")
        emit(what="world-id-conflict", value="agreed")
    except CheckpointError as error:
        emit(what="world-id-conflict", **error_fields(error))
    collectives.agree_resume(dist, 120, None)
    emit(what="resume-same", value="agreed")
    try:
        collectives.agree_resume(dist, 100 if rank == world - 1 else 120, None)
        emit(what="resume-split", value="agreed")
    except CheckpointError as error:
        emit(what="resume-split", **error_fields(error))


def client_resume(rank: int, world: int, work: Path, config: dict) -> None:
    sidecar = FakeSidecar(str(work / f"pod-{rank}.sock"), work, latest=config["latest"][rank])
    client = CheckpointClient(str(work / f"pod-{rank}.sock"), handle_termination=False)
    request = sidecar.attach_requests[0]
    emit(what="attach", rank=request.rank, world_size=request.world_size, world_id=request.world_id)
    for _ in config["latest"][rank]:
        try:
            latest = client.latest()
            emit(what="latest", step=None if latest is None else latest.step,
                 world_size=None if latest is None else latest.world_size)
        except CheckpointError as error:
            emit(what="latest", **error_fields(error))
    client.close()
    sidecar.stop()


def client_preemption(rank: int, world: int, work: Path, config: dict) -> None:
    staging = work / f"staging-{rank}"
    staging.mkdir()
    sidecar = FakeSidecar(str(work / f"pod-{rank}.sock"), staging)
    client = CheckpointClient(str(work / f"pod-{rank}.sock"), warn_signal_pitfalls=False)
    deadline = time.time() + 120.0
    step = 0
    while step < 10_000:
        if rank == 0 and step == 5:
            sidecar.push_preemption("5", deadline)  # rank 0's pod is being preempted
        if client.should_checkpoint(step):
            writer = client.checkpoint(step)
            with writer as directory:
                (directory / "shard.bin").write_bytes(bytes([rank]) * 64)
                emit(what="dump", step=step, checkpoint_id=writer.checkpoint_id, reason=writer.dump.reason.value,
                     announced_deadline=deadline,
                     begin=[{"step": r.step, "reason": r.reason,
                             "deadline": r.deadline.seconds + r.deadline.nanos / 1e9 if r.HasField("deadline") else None}
                            for r in sidecar.begin_requests])
            emit(what="not-exited")  # handle_termination must have ended the process in the block's exit
            return
        dist.barrier()  # a training step's collective (DDP would all_reduce gradients here)
        step += 1
    emit(what="never-dumped")


def main(argv) -> int:
    scenario, rank, world, store, work = argv[:5]
    config = json.loads(argv[5]) if len(argv) > 5 else {}
    rank, world, work = int(rank), int(world), Path(work)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    if scenario == "primitives":
        primitives(rank, world, config)
    elif scenario == "client-resume":
        client_resume(rank, world, work, config)
    elif scenario == "client-preemption":
        client_preemption(rank, world, work, config)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

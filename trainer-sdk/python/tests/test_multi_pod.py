"""Job-wide checkpoints with real processes: several "pods" (each its own sidecar process, socket, staging directory
and POD_NAME; one shared storage directory) x 1 rank each, one torch.distributed gloo world (tests/world_trainer.py,
DDP). One pod is preempted; every rank dumps the same step; one job checkpoint commits; a restarted job resumes it on
every rank bit for bit. A pod killed during its copy leaves no job checkpoint: every rank resumes the previous one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, Optional

import pytest

from conftest import PYTHON_DIR, REPO, SIGKILL, SIGTERM, ObservedProcess, assert_verifies, step_id

WORLD_TRAINER = PYTHON_DIR / "tests" / "world_trainer.py"
FAULTFS = REPO / "tests" / "faultfs" / "faultfs.py"
WRITTEN = r"^checkpoint (\S+) written at step (\d+) \((preemption)\) state ([0-9a-f]{64})$"
RESUMED = r"^resumed from checkpoint (\S+) at step (\d+) state ([0-9a-f]{64})$"


class Pod:
    """One pod's private volumes (socket directory, staging); storage is the job's shared directory or a view of it."""

    def __init__(self, dirs, index: int, run: int, storage: Optional[Path] = None) -> None:
        self.index = index
        self.name = f"pod-{index}-run{run}"  # a restarted job's pods get new names, as in Kubernetes
        root = dirs.root / self.name
        self.staging = root / "staging"
        sock = root / "sock"
        for d in (self.staging, sock):
            d.mkdir(parents=True)
        self.socket_path = str(sock / "sidecar.sock")
        self.storage = storage or dirs.storage
        self.sidecar: Optional[ObservedProcess] = None
        self.rank: Optional[ObservedProcess] = None


def start_job(procs, dirs, pods: int, run: int, *trainer_args: str, grace: int = 30,
              storage_for: Optional[dict] = None) -> List[Pod]:
    """A sidecar per pod, then one rank per pod (rank = pod index), all in one gloo world."""
    world = [Pod(dirs, i, run, (storage_for or {}).get(i)) for i in range(pods)]
    for pod in world:
        pod.sidecar = procs.sidecar(grace=grace, name=f"sidecar {pod.name}", socket_path=pod.socket_path,
                                    staging=pod.staging, storage=pod.storage, POD_NAME=pod.name)
    store = dirs.root / f"gloo-store-run{run}"
    for pod in world:
        pod.rank = procs.python(f"rank {pod.index} ({pod.name})",
                                [str(WORLD_TRAINER), "--store", str(store), *trainer_args],
                                RANK=str(pod.index), WORLD_SIZE=str(pods), CHECKPOINT_SOCKET_PATH=pod.socket_path,
                                GLOO_SOCKET_IFNAME="lo")
    return world


def stop_idle_sidecar(pod: Pod) -> None:
    """A pod that was not preempted: its trainer has gone; its sidecar stops with nothing to flush."""
    pod.sidecar.wait_for_line(r"Trainer \S+ \(rank \d+\) detached")
    pod.sidecar.signal(SIGTERM)
    assert pod.sidecar.wait_exit() == 0, pod.sidecar.output


def wait_periodic_committed(world: List[Pod], step: int) -> List[str]:
    """Every rank wrote the periodic checkpoint of ``step`` and saw it committed job-wide; returns their state hashes."""
    written = [pod.rank.wait_for_line(rf"^checkpoint (\S+) written at step {step} \(periodic\) state ([0-9a-f]{{64}})$")
               for pod in world]
    for pod, w in zip(world, written):
        pod.rank.wait_for_line(rf"^outcome {re.escape(w.group(1))} committed missing \[\]$")
    return [w.group(2) for w in written]


def assert_every_rank_resumes(world: List[Pod], checkpoint: str, step: int, states: List[str]) -> None:
    for pod in world:
        resumed = pod.rank.wait_for_line(RESUMED)
        assert (resumed.group(1), int(resumed.group(2))) == (checkpoint, step), f"{pod.rank.name}: {resumed.group(0)}"
        assert resumed.group(3) == states[pod.index], (
            f"{pod.rank.name}: model, optimizer or RNG state after the resume differs from the state it dumped")
    for pod in world:
        pod.rank.wait_for_line(rf"^finished at step {step + 3} ")
        assert pod.rank.wait_exit() == 0, pod.rank.output


@pytest.mark.parametrize("pods,preempted,signal_trainer", [(2, 1, True), (4, 2, False)],
                         ids=["2-pods-sigterm-to-pod", "4-pods-sigterm-to-sidecar-only"])
def test_one_preempted_pod_checkpoints_the_whole_job_and_every_rank_resumes_it(procs, dirs, pods, preempted,
                                                                               signal_trainer):
    world = start_job(procs, dirs, pods, 1, "--checkpoint-every", "20", "--step-delay-ms", "20")
    for pod in world:
        pod.rank.wait_for_line("^starting fresh$")
    wait_periodic_committed(world, 20)
    for pod in world:
        pod.rank.wait_for_line("^step 30$")

    # The kubelet signals the preempted pod's containers (or, with a native sidecar, its preStop/pod watch fires
    # and only the sidecar knows).
    world[preempted].sidecar.signal(SIGTERM)
    if signal_trainer:
        world[preempted].rank.signal(SIGTERM)
    written = [pod.rank.wait_for_line(WRITTEN) for pod in world]
    step = int(written[0].group(2))
    assert [(int(w.group(2)), w.group(3)) for w in written] == [(step, "preemption")] * pods, (
        "every rank dumps the same step for the preemption")
    assert step > 20
    checkpoint = step_id(step)
    for pod, w in zip(world, written):
        assert pod.rank.wait_exit() == 1, f"{pod.rank.name} must exit with the preemption exit code:\n{pod.rank.output}"
        assert re.search(rf"exiting with code 1: preemption checkpoint {re.escape(w.group(1))} committed at step {step} ",
                         pod.rank.output), pod.rank.output
        if pod.index != preempted:
            assert (f"the ranks agreed to dump at step {step}: taking preemption checkpoint {w.group(1)}"
                    in pod.rank.output), "a rank whose pod is not preempted asks its own sidecar"
    assert world[preempted].sidecar.wait_exit() == 0, world[preempted].sidecar.output
    for pod in world:
        if pod.index != preempted:
            stop_idle_sidecar(pod)
    assert job_checkpoints(dirs) == [step_id(20), checkpoint], "exactly one job checkpoint more: the preemption one"
    assert_job_manifest(dirs, checkpoint, step, pods, "preemption")

    states = [w.group(4) for w in written]
    restarted = start_job(procs, dirs, pods, 2, "--steps", str(step + 3))
    assert_every_rank_resumes(restarted, checkpoint, step, states)


def test_pod_killed_during_its_copy_leaves_no_job_checkpoint_and_every_rank_resumes_the_previous_one(procs, dirs):
    control = dirs.root / "faultfs-control"
    view = dirs.root / "pod-1-nfs"  # pod 1 reaches the shared storage through faultfs, as through its NFS client
    for d in (control, view):
        d.mkdir()
    faultfs = procs.python("faultfs", [str(FAULTFS), str(dirs.storage), str(view), "--control", str(control)])
    faultfs.wait_for_line(r"^mounted ")
    try:
        grace = 10
        world = start_job(procs, dirs, 2, 1, "--checkpoint-every", "20", "--step-delay-ms", "20", grace=grace,
                          storage_for={1: view})
        states = wait_periodic_committed(world, 20)

        # From now on pod 1's sidecar stalls on its first write of rank 1's files: it is "copying".
        rules = [{"name": "hold-rank-1", "op": "write", "path_glob": "*rank-1/*", "action": "stall", "once": True}]
        (control / "rules.json.tmp").write_text(json.dumps(rules))
        (control / "rules.json.tmp").rename(control / "rules.json")
        for pod in world:
            pod.rank.wait_for_line("^step 30$")
        world[0].sidecar.signal(SIGTERM)  # pod 0 is preempted
        world[0].rank.signal(SIGTERM)
        written = [pod.rank.wait_for_line(WRITTEN) for pod in world]
        assert written[0].group(2, 3) == written[1].group(2, 3), "both ranks dump the same step for the preemption"
        step = int(written[0].group(2))
        faultfs.wait_for_line(r"event: hold-rank-1 write ")
        world[1].sidecar.signal(SIGKILL)  # pod 1 dies in the middle of its copy
        world[1].sidecar.wait_exit()

        for pod in world:
            assert pod.rank.wait_exit(timeout=grace + 20) == 1, pod.rank.output
        # Pod 0's shard is sealed but rank 1 never got one: at the deadline pod 0 gives up (its trainer may be ended
        # by its own watchdog at that same deadline first).
        assert re.search(rf"exiting with code 1: (preemption checkpoint {re.escape(written[0].group(1))} failed: .*"
                         rf"rank 1 of the world had no shard|the preemption deadline .* passed)",
                         world[0].rank.output), world[0].rank.output
        assert world[0].sidecar.wait_exit(timeout=grace + 20) == 1, "a flush that failed ends the sidecar with 1"
        assert job_checkpoints(dirs) == [step_id(20)], f"no job checkpoint of step {step} without rank 1's shard"
    finally:
        faultfs.signal(SIGTERM)
        faultfs.wait_exit()

    restarted = start_job(procs, dirs, 2, 2, "--steps", "23")
    assert_every_rank_resumes(restarted, step_id(20), 20, states)


def job_checkpoints(dirs) -> List[str]:
    """The job-committed checkpoints on storage, oldest first: step directories holding a job manifest."""
    if not dirs.job.is_dir():
        return []
    return sorted(p.name for p in dirs.job.glob("step-*") if (p / "manifest.json").is_file())


def assert_job_manifest(dirs, checkpoint: str, step: int, world_size: int, reason: str) -> dict:
    """The job manifest names the checkpoint, verifies, and covers every rank of the world with one shard per pod."""
    manifest = assert_verifies(dirs.job / checkpoint)
    assert (manifest["id"], manifest["step"], manifest["worldSize"], manifest["reason"]) == (
        checkpoint, step, world_size, reason), manifest
    ranks = sorted(r["rank"] for r in manifest["ranks"])
    assert ranks == list(range(world_size)), f"the job manifest covers ranks {ranks}"
    assert len(manifest["shards"]) == world_size, "one shard per pod (one rank each)"
    assert len({shard["worldId"] for shard in manifest["shards"]}) == 1, "shards of one world"
    assert_replicated_state_written_once(manifest, world_size)
    return manifest


def assert_replicated_state_written_once(manifest: dict, world_size: int) -> None:
    """The DDP-replicated model and optimizer are on storage once (rank 0's); every rank has its own RNG state."""
    files = {f["path"]: f["size"] for f in manifest["files"]}
    assert sorted(files) == ["rank-0/model.pt", "rank-0/optimizer.pt"] + [
        f"rank-{r}/trainer_state.pt" for r in range(world_size)], sorted(files)
    replicated = files["rank-0/model.pt"] + files["rank-0/optimizer.pt"]
    flushed = sum(files.values())
    every_rank = flushed + (world_size - 1) * replicated  # what each rank writing its own copy flushed
    assert flushed < every_rank / world_size * 1.25, (
        f"{flushed} bytes flushed; a copy per rank would be {every_rank}: the replicated state must dominate")

"""The typed results carry the job-wide fields of the contract (no sidecar needed)."""

from pathlib import Path

from checkpoint_sdk import CheckpointOutcome, CheckpointReason, CheckpointStatus, DumpRequest, LatestCheckpoint
from checkpoint_sdk._proto.checkpoint.v1 import checkpoint_pb2 as pb


def test_outcome_names_the_missing_ranks_and_the_commit_wait():
    message = pb.CheckpointOutcome(checkpoint_id="step-000000040", status=pb.CHECKPOINT_STATUS_FAILED, step=40,
                                   error="ranks 3, 1 had no sealed shard by the deadline", missing_ranks=[3, 1])
    message.timings.commit_wait.FromMilliseconds(1250)
    message.timings.reason = pb.CHECKPOINT_REASON_PREEMPTION
    outcome = CheckpointOutcome._from_proto(message)
    assert outcome.status == CheckpointStatus.FAILED
    assert outcome.missing_ranks == (1, 3)
    assert outcome.timings is not None and outcome.timings.commit_wait == 1.25
    assert outcome.timings.reason == CheckpointReason.PREEMPTION


def test_outcome_of_a_committed_checkpoint_misses_no_rank():
    outcome = CheckpointOutcome._from_proto(pb.CheckpointOutcome(
        checkpoint_id="step-000000040", status=pb.CHECKPOINT_STATUS_COMMITTED, directory="/nfs/job/step-000000040"))
    assert outcome.missing_ranks == () and outcome.timings is None


def test_latest_checkpoint_carries_the_world_size():
    info = pb.CheckpointInfo(checkpoint_id="step-000000123", directory="/nfs/job/step-000000123/pod-1", step=123,
                             reason=pb.CHECKPOINT_REASON_PERIODIC, world_size=4, metadata={"epoch": "2"})
    latest = LatestCheckpoint._from_proto(info)
    assert latest.world_size == 4
    assert latest.rank_dir(3) == Path("/nfs/job/step-000000123/pod-1/rank-3")
    assert LatestCheckpoint._from_proto(pb.CheckpointInfo(checkpoint_id="old")).world_size == 0


def test_dump_request_says_whether_it_is_a_drill():
    drill = DumpRequest._from_proto(pb.DumpRequest(checkpoint_id="c1", reason=pb.CHECKPOINT_REASON_MANUAL,
                                                   staging_dir="/s/c1", drill=True))
    assert drill.drill and drill.reason == CheckpointReason.MANUAL
    assert not DumpRequest._from_proto(pb.DumpRequest(checkpoint_id="c2", reason=pb.CHECKPOINT_REASON_PREEMPTION,
                                                      staging_dir="/s/c2")).drill

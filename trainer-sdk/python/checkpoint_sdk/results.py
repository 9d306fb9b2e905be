"""Typed results: the SDK's own view of the contract's messages."""

from __future__ import annotations

import datetime as _dt
import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ._proto.checkpoint.v1 import checkpoint_pb2 as pb


class CheckpointReason(enum.Enum):
    UNSPECIFIED = "unspecified"
    PREEMPTION = "preemption"
    PERIODIC = "periodic"
    MANUAL = "manual"

    @classmethod
    def _from_proto(cls, value: int) -> "CheckpointReason":
        return {
            pb.CHECKPOINT_REASON_PREEMPTION: cls.PREEMPTION,
            pb.CHECKPOINT_REASON_PERIODIC: cls.PERIODIC,
            pb.CHECKPOINT_REASON_MANUAL: cls.MANUAL,
        }.get(value, cls.UNSPECIFIED)

    def _to_proto(self) -> int:
        return {
            CheckpointReason.PREEMPTION: pb.CHECKPOINT_REASON_PREEMPTION,
            CheckpointReason.PERIODIC: pb.CHECKPOINT_REASON_PERIODIC,
            CheckpointReason.MANUAL: pb.CHECKPOINT_REASON_MANUAL,
        }.get(self, pb.CHECKPOINT_REASON_UNSPECIFIED)


class CheckpointStatus(enum.Enum):
    UNSPECIFIED = "unspecified"
    COMMITTED = "committed"
    FAILED = "failed"
    #: A newer checkpoint replaced this one before it was persisted; nothing was lost.
    SUPERSEDED = "superseded"

    @classmethod
    def _from_proto(cls, value: int) -> "CheckpointStatus":
        return {
            pb.CHECKPOINT_STATUS_COMMITTED: cls.COMMITTED,
            pb.CHECKPOINT_STATUS_FAILED: cls.FAILED,
            pb.CHECKPOINT_STATUS_SUPERSEDED: cls.SUPERSEDED,
        }.get(value, cls.UNSPECIFIED)


def rank_dir_name(rank: int) -> str:
    """The folder each rank writes under, inside the shared staging (and committed) directory."""
    return f"rank-{rank}"


def _duration(d) -> float:
    return d.seconds + d.nanos / 1e9


def _timestamp(message, name: str) -> Optional[_dt.datetime]:
    if not message.HasField(name):
        return None
    ts = getattr(message, name)
    return _dt.datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=_dt.timezone.utc)


@dataclass(frozen=True)
class DumpRequest:
    """Where and why to write a checkpoint: pushed by the sidecar (a preemption or a preemption drill) or answered to
    begin_checkpoint."""

    checkpoint_id: str
    reason: CheckpointReason
    #: Absolute wall-clock time by which the checkpoint must be committed; None for periodic checkpoints.
    deadline: Optional[_dt.datetime]
    staging_dir: Path
    #: A preemption drill (``checkpoint-sidecar drill``): reason MANUAL with the deadline a preemption now would get.
    #: The SDK writes it at the next step boundary, as it would a preemption dump, and training goes on.
    drill: bool = False

    def rank_dir(self, rank: int) -> Path:
        return self.staging_dir / rank_dir_name(rank)

    @classmethod
    def _from_proto(cls, m) -> "DumpRequest":
        return cls(m.checkpoint_id, CheckpointReason._from_proto(m.reason), _timestamp(m, "deadline"), Path(m.staging_dir),
                   m.drill)


@dataclass(frozen=True)
class FlushTimings:
    checkpoint_id: str
    reason: CheckpointReason
    notify: float
    dump: float
    copy: float
    verify: float
    commit: float
    total: float
    budget: float
    budget_used_ratio: float
    bytes: int
    #: Part of ``commit``: from this pod's shard being sealed to the job-wide commit, i.e. how long this pod waited
    #: for the other pods' shards. 0 for a single-pod job.
    commit_wait: float = 0.0

    @classmethod
    def _from_proto(cls, m) -> "FlushTimings":
        return cls(m.checkpoint_id, CheckpointReason._from_proto(m.reason), _duration(m.notify), _duration(m.dump),
                   _duration(m.copy), _duration(m.verify), _duration(m.commit), _duration(m.total),
                   _duration(m.budget), m.budget_used_ratio, m.bytes, _duration(m.commit_wait))


@dataclass(frozen=True)
class CheckpointOutcome:
    checkpoint_id: str
    status: CheckpointStatus
    #: The committed directory on shared storage (empty unless committed).
    directory: str
    step: int
    error: Optional[str] = None
    timings: Optional[FlushTimings] = None
    #: Ranks of the world that had no sealed shard when a job-wide checkpoint failed (sorted); empty otherwise.
    missing_ranks: Tuple[int, ...] = ()
    #: The job's recommended checkpoint interval (seconds) as the sidecar knew it when answering (the newest, not that
    #: checkpoint's); None while not known.
    recommended_interval: Optional[float] = None

    @classmethod
    def _from_proto(cls, m) -> "CheckpointOutcome":
        return cls(m.checkpoint_id, CheckpointStatus._from_proto(m.status), m.directory, m.step, m.error or None,
                   FlushTimings._from_proto(m.timings) if m.HasField("timings") else None,
                   tuple(sorted(m.missing_ranks)),
                   _duration(m.recommended_interval) if m.HasField("recommended_interval") else None)


@dataclass(frozen=True)
class LatestCheckpoint:
    """The newest committed checkpoint, for resume. Files lie under ``directory`` as they were written to staging.

    In a job-wide checkpoint every pod's shard has a directory of its own: ``directory`` is the one holding this
    rank's ``rank-<r>/`` folder, so ranks of different pods get different directories for the same checkpoint.
    """

    checkpoint_id: str
    directory: Path
    step: int
    reason: CheckpointReason
    created: Optional[_dt.datetime]
    #: The asking rank's metadata, as reported with its files.
    metadata: Dict[str, str] = field(default_factory=dict)
    total_bytes: int = 0
    #: The number of ranks of the world that took it (every rank 0..world_size-1 has its files in it); 0 when the
    #: sidecar does not say (a checkpoint taken before job-wide checkpoints existed).
    world_size: int = 0

    def rank_dir(self, rank: int) -> Path:
        return self.directory / rank_dir_name(rank)

    @classmethod
    def _from_proto(cls, m) -> "LatestCheckpoint":
        return cls(m.checkpoint_id, Path(m.directory), m.step, CheckpointReason._from_proto(m.reason),
                   _timestamp(m, "created"), dict(m.metadata), m.total_bytes, m.world_size)


@dataclass(frozen=True)
class AttachedTrainer:
    """One trainer process attached to the sidecar.

    ``trainer_id`` is always empty: the sidecar tells no process another's id (an id is honoured only from the
    process that attached it); this process's own is :attr:`CheckpointClient.trainer_id`.
    """

    trainer_id: str
    rank: int
    description: str


@dataclass(frozen=True)
class SidecarStatus:
    grace_period: float
    trainers: List[AttachedTrainer]
    terminating: bool
    last_committed_checkpoint_id: Optional[str]
    last_flush: Optional[FlushTimings]

    @classmethod
    def _from_proto(cls, m) -> "SidecarStatus":
        return cls(_duration(m.grace_period), [AttachedTrainer(t.trainer_id, t.rank, t.description) for t in m.trainers],
                   m.terminating, m.last_committed_checkpoint_id or None,
                   FlushTimings._from_proto(m.last_flush) if m.HasField("last_flush") else None)


def default_socket_path() -> str:
    return os.environ.get("CHECKPOINT_SOCKET_PATH") or "/var/run/checkpoint/sidecar.sock"

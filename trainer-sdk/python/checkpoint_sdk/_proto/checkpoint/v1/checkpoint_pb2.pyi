from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

CHECKPOINT_REASON_MANUAL: CheckpointReason
CHECKPOINT_REASON_PERIODIC: CheckpointReason
CHECKPOINT_REASON_PREEMPTION: CheckpointReason
CHECKPOINT_REASON_UNSPECIFIED: CheckpointReason
CHECKPOINT_STATUS_COMMITTED: CheckpointStatus
CHECKPOINT_STATUS_FAILED: CheckpointStatus
CHECKPOINT_STATUS_SUPERSEDED: CheckpointStatus
CHECKPOINT_STATUS_UNSPECIFIED: CheckpointStatus
DESCRIPTOR: _descriptor.FileDescriptor
TERMINATION_SOURCE_PRESTOP_HOOK: TerminationSource
TERMINATION_SOURCE_TRAINER_SIGNAL: TerminationSource
TERMINATION_SOURCE_UNSPECIFIED: TerminationSource

class AttachRequest(_message.Message):
    __slots__ = ["description", "rank", "world_id", "world_size"]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    WORLD_ID_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    description: str
    rank: int
    world_id: str
    world_size: int
    def __init__(self, rank: _Optional[int] = ..., description: _Optional[str] = ..., world_size: _Optional[int] = ..., world_id: _Optional[str] = ...) -> None: ...

class Attached(_message.Message):
    __slots__ = ["grace_period", "recommended_interval", "trainer_id"]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TRAINER_ID_FIELD_NUMBER: _ClassVar[int]
    grace_period: _duration_pb2.Duration
    recommended_interval: _duration_pb2.Duration
    trainer_id: str
    def __init__(self, trainer_id: _Optional[str] = ..., grace_period: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., recommended_interval: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class BeginCheckpointRequest(_message.Message):
    __slots__ = ["deadline", "reason", "step", "trainer_id"]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TRAINER_ID_FIELD_NUMBER: _ClassVar[int]
    deadline: _timestamp_pb2.Timestamp
    reason: CheckpointReason
    step: int
    trainer_id: str
    def __init__(self, trainer_id: _Optional[str] = ..., step: _Optional[int] = ..., reason: _Optional[_Union[CheckpointReason, str]] = ..., deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BeginCheckpointResponse(_message.Message):
    __slots__ = ["dump"]
    DUMP_FIELD_NUMBER: _ClassVar[int]
    dump: DumpRequest
    def __init__(self, dump: _Optional[_Union[DumpRequest, _Mapping]] = ...) -> None: ...

class CheckpointInfo(_message.Message):
    __slots__ = ["checkpoint_id", "created", "directory", "metadata", "reason", "step", "total_bytes", "world_size"]
    class MetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    created: _timestamp_pb2.Timestamp
    directory: str
    metadata: _containers.ScalarMap[str, str]
    reason: CheckpointReason
    step: int
    total_bytes: int
    world_size: int
    def __init__(self, checkpoint_id: _Optional[str] = ..., directory: _Optional[str] = ..., step: _Optional[int] = ..., reason: _Optional[_Union[CheckpointReason, str]] = ..., created: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., total_bytes: _Optional[int] = ..., world_size: _Optional[int] = ...) -> None: ...

class CheckpointOutcome(_message.Message):
    __slots__ = ["checkpoint_id", "directory", "error", "missing_ranks", "recommended_interval", "status", "step", "timings"]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MISSING_RANKS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    directory: str
    error: str
    missing_ranks: _containers.RepeatedScalarFieldContainer[int]
    recommended_interval: _duration_pb2.Duration
    status: CheckpointStatus
    step: int
    timings: FlushTimings
    def __init__(self, checkpoint_id: _Optional[str] = ..., status: _Optional[_Union[CheckpointStatus, str]] = ..., directory: _Optional[str] = ..., step: _Optional[int] = ..., error: _Optional[str] = ..., timings: _Optional[_Union[FlushTimings, _Mapping]] = ..., missing_ranks: _Optional[_Iterable[int]] = ..., recommended_interval: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DumpRequest(_message.Message):
    __slots__ = ["checkpoint_id", "deadline", "drill", "reason", "staging_dir"]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    DRILL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STAGING_DIR_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    deadline: _timestamp_pb2.Timestamp
    drill: bool
    reason: CheckpointReason
    staging_dir: str
    def __init__(self, checkpoint_id: _Optional[str] = ..., reason: _Optional[_Union[CheckpointReason, str]] = ..., deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., staging_dir: _Optional[str] = ..., drill: bool = ...) -> None: ...

class FlushTimings(_message.Message):
    __slots__ = ["budget", "budget_used_ratio", "bytes", "checkpoint_id", "commit", "commit_wait", "copy", "dump", "notify", "reason", "total", "verify"]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    BUDGET_USED_RATIO_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    COMMIT_WAIT_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    DUMP_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    budget: _duration_pb2.Duration
    budget_used_ratio: float
    bytes: int
    checkpoint_id: str
    commit: _duration_pb2.Duration
    commit_wait: _duration_pb2.Duration
    copy: _duration_pb2.Duration
    dump: _duration_pb2.Duration
    notify: _duration_pb2.Duration
    reason: CheckpointReason
    total: _duration_pb2.Duration
    verify: _duration_pb2.Duration
    def __init__(self, checkpoint_id: _Optional[str] = ..., reason: _Optional[_Union[CheckpointReason, str]] = ..., notify: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., dump: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., copy: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., verify: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., commit: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., total: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., budget: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., budget_used_ratio: _Optional[float] = ..., bytes: _Optional[int] = ..., commit_wait: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetLatestCheckpointRequest(_message.Message):
    __slots__ = ["rank"]
    RANK_FIELD_NUMBER: _ClassVar[int]
    rank: int
    def __init__(self, rank: _Optional[int] = ...) -> None: ...

class GetLatestCheckpointResponse(_message.Message):
    __slots__ = ["checkpoint"]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: CheckpointInfo
    def __init__(self, checkpoint: _Optional[_Union[CheckpointInfo, _Mapping]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ["grace_period", "last_committed_checkpoint_id", "last_flush", "terminating", "trainers"]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    LAST_COMMITTED_CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_FLUSH_FIELD_NUMBER: _ClassVar[int]
    TERMINATING_FIELD_NUMBER: _ClassVar[int]
    TRAINERS_FIELD_NUMBER: _ClassVar[int]
    grace_period: _duration_pb2.Duration
    last_committed_checkpoint_id: str
    last_flush: FlushTimings
    terminating: bool
    trainers: _containers.RepeatedCompositeFieldContainer[TrainerInfo]
    def __init__(self, grace_period: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., trainers: _Optional[_Iterable[_Union[TrainerInfo, _Mapping]]] = ..., terminating: bool = ..., last_committed_checkpoint_id: _Optional[str] = ..., last_flush: _Optional[_Union[FlushTimings, _Mapping]] = ...) -> None: ...

class NotifyTerminationRequest(_message.Message):
    __slots__ = ["source", "trainer_id"]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRAINER_ID_FIELD_NUMBER: _ClassVar[int]
    source: TerminationSource
    trainer_id: str
    def __init__(self, trainer_id: _Optional[str] = ..., source: _Optional[_Union[TerminationSource, str]] = ...) -> None: ...

class NotifyTerminationResponse(_message.Message):
    __slots__ = ["checkpoint_id", "deadline"]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, checkpoint_id: _Optional[str] = ..., deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportDumpRequest(_message.Message):
    __slots__ = ["checkpoint_id", "files", "metadata", "step", "trainer_id"]
    class MetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TRAINER_ID_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    files: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    step: int
    trainer_id: str
    def __init__(self, trainer_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., step: _Optional[int] = ..., files: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReportDumpResponse(_message.Message):
    __slots__ = ["checkpoint_id", "ranks_expected", "ranks_reported"]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    RANKS_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    RANKS_REPORTED_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    ranks_expected: int
    ranks_reported: int
    def __init__(self, checkpoint_id: _Optional[str] = ..., ranks_reported: _Optional[int] = ..., ranks_expected: _Optional[int] = ...) -> None: ...

class SidecarCommand(_message.Message):
    __slots__ = ["attached", "dump"]
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    DUMP_FIELD_NUMBER: _ClassVar[int]
    attached: Attached
    dump: DumpRequest
    def __init__(self, attached: _Optional[_Union[Attached, _Mapping]] = ..., dump: _Optional[_Union[DumpRequest, _Mapping]] = ...) -> None: ...

class StartDrillRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class StartDrillResponse(_message.Message):
    __slots__ = ["checkpoint_id", "deadline", "grace_period", "safety_margin", "triggered_at"]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    SAFETY_MARGIN_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_AT_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    deadline: _timestamp_pb2.Timestamp
    grace_period: _duration_pb2.Duration
    safety_margin: _duration_pb2.Duration
    triggered_at: _timestamp_pb2.Timestamp
    def __init__(self, checkpoint_id: _Optional[str] = ..., triggered_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., grace_period: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., safety_margin: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TrainerInfo(_message.Message):
    __slots__ = ["description", "rank", "trainer_id"]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    TRAINER_ID_FIELD_NUMBER: _ClassVar[int]
    description: str
    rank: int
    trainer_id: str
    def __init__(self, trainer_id: _Optional[str] = ..., rank: _Optional[int] = ..., description: _Optional[str] = ...) -> None: ...

class WaitForCheckpointRequest(_message.Message):
    __slots__ = ["checkpoint_id"]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    def __init__(self, checkpoint_id: _Optional[str] = ...) -> None: ...

class CheckpointReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class CheckpointStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class TerminationSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

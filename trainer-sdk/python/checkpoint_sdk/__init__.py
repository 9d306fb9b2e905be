"""Python trainer SDK for the checkpoint sidecar (contract: protos/checkpoint/v1/checkpoint.proto).

Import name ``checkpoint_sdk``. See trainer-sdk/python/README.md.
"""

from ._signals import diagnose_signal_delivery
from .client import CheckpointClient, CheckpointWriter, connect
from .errors import CheckpointError, ErrorCode
from .results import (
    AttachedTrainer,
    CheckpointOutcome,
    CheckpointReason,
    CheckpointStatus,
    DumpRequest,
    FlushTimings,
    LatestCheckpoint,
    SidecarStatus,
    rank_dir_name,
)

__all__ = [
    "AttachedTrainer",
    "CheckpointClient",
    "CheckpointError",
    "CheckpointOutcome",
    "CheckpointReason",
    "CheckpointStatus",
    "CheckpointWriter",
    "DumpRequest",
    "ErrorCode",
    "FlushTimings",
    "LatestCheckpoint",
    "SidecarStatus",
    "connect",
    "diagnose_signal_delivery",
    "rank_dir_name",
]
__version__ = "0.2.0"

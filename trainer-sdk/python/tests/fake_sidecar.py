"""An in-process stand-in for one pod's sidecar, for tests of the SDK's collectives without the real sidecar.

It serves the contract on a Unix socket with fixed answers and records what the trainer asked: the Attach request
(world size and id), BeginCheckpoint requests (reason, step, deadline) and reports. ``push`` sends a command on every
open Attach stream, as the real sidecar does when its pod is preempted. Every checkpoint it is asked for commits.
"""

from __future__ import annotations

import queue
import threading
from concurrent import futures
from pathlib import Path
from typing import List, Optional, Union

import grpc

from checkpoint_sdk._proto.checkpoint.v1 import checkpoint_pb2 as pb
from checkpoint_sdk._proto.checkpoint.v1 import checkpoint_pb2_grpc as pb_grpc

#: What GetLatestCheckpoint answers: a step, None (no checkpoint) or "error" (the sidecar cannot read storage).
LatestAnswer = Union[int, None, str]


def checkpoint_id(step: int) -> str:
    """A job-committed checkpoint's id (what GetLatestCheckpoint names)."""
    return f"step-{step:09d}"


class FakeSidecar(pb_grpc.CheckpointServiceServicer):
    def __init__(self, socket_path: str, staging: Path, latest: Optional[List[LatestAnswer]] = None,
                 grace_seconds: int = 30) -> None:
        self.staging = staging
        self.grace_seconds = grace_seconds
        self._latest = list(latest or [])
        self._lock = threading.Lock()
        self._streams: List["queue.Queue[Optional[pb.SidecarCommand]]"] = []
        self.attach_requests: List[pb.AttachRequest] = []
        self.begin_requests: List[pb.BeginCheckpointRequest] = []
        self.reports: List[pb.ReportDumpRequest] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pb_grpc.add_CheckpointServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"unix://{socket_path}")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)

    def push(self, command: pb.SidecarCommand) -> None:
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.put(command)

    def push_preemption(self, step_hint: str, deadline_seconds: float) -> pb.DumpRequest:
        dump = pb.DumpRequest(checkpoint_id=f"own-preemption-{step_hint}", reason=pb.CHECKPOINT_REASON_PREEMPTION,
                              staging_dir=str(self.staging / f"own-preemption-{step_hint}"))
        dump.deadline.FromNanoseconds(int(deadline_seconds * 1e9))
        self.push(pb.SidecarCommand(dump=dump))
        return dump

    # ------------------------------------------------------------------ the contract

    def Attach(self, request, context):
        stream: "queue.Queue[Optional[pb.SidecarCommand]]" = queue.Queue()
        with self._lock:
            self.attach_requests.append(request)
            self._streams.append(stream)
        context.add_callback(lambda: stream.put(None))  # the stream ends: wake the loop below
        attached = pb.Attached(trainer_id=f"fake-{request.rank}")
        attached.grace_period.FromSeconds(self.grace_seconds)
        yield pb.SidecarCommand(attached=attached)
        while True:
            command = stream.get()
            if command is None:
                return
            yield command

    def BeginCheckpoint(self, request, context):
        with self._lock:
            self.begin_requests.append(request)
        if request.reason == pb.CHECKPOINT_REASON_PREEMPTION and not request.HasField("deadline"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a PREEMPTION checkpoint needs a deadline")
        name = f"fake-{request.step}-{len(self.begin_requests)}"  # each sidecar names its part of a checkpoint itself
        dump = pb.DumpRequest(checkpoint_id=name, reason=request.reason or pb.CHECKPOINT_REASON_PERIODIC,
                              staging_dir=str(self.staging / name))
        if request.HasField("deadline"):
            dump.deadline.CopyFrom(request.deadline)
        return pb.BeginCheckpointResponse(dump=dump)

    def ReportDump(self, request, context):
        with self._lock:
            self.reports.append(request)
        return pb.ReportDumpResponse(checkpoint_id=request.checkpoint_id, ranks_reported=1, ranks_expected=1)

    def WaitForCheckpoint(self, request, context):
        with self._lock:
            steps = [r.step for r in self.reports if r.checkpoint_id == request.checkpoint_id]
        return pb.CheckpointOutcome(checkpoint_id=request.checkpoint_id, status=pb.CHECKPOINT_STATUS_COMMITTED,
                                    directory=f"/fake/{request.checkpoint_id}", step=steps[0] if steps else 0)

    def GetLatestCheckpoint(self, request, context):
        with self._lock:
            answer = self._latest.pop(0) if self._latest else None
        if answer == "error":
            context.abort(grpc.StatusCode.INTERNAL, "the fake storage cannot be read")
        if answer is None:
            return pb.GetLatestCheckpointResponse()
        return pb.GetLatestCheckpointResponse(checkpoint=pb.CheckpointInfo(
            checkpoint_id=checkpoint_id(answer), directory=f"/fake/{checkpoint_id(answer)}", step=answer,
            reason=pb.CHECKPOINT_REASON_PERIODIC,
            world_size=self.attach_requests[-1].world_size if self.attach_requests else 0))

    def GetStatus(self, request, context):
        return pb.GetStatusResponse()

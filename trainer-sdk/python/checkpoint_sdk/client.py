"""A training process's connection to the checkpoint sidecar in its pod."""

from __future__ import annotations

import datetime as _dt
import os
import signal
import socket
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, TextIO, Union

import grpc

from . import _collectives, _signals
from ._interval import AUTO, StepClock
from ._proto.checkpoint.v1 import checkpoint_pb2 as pb
from ._proto.checkpoint.v1 import checkpoint_pb2_grpc as pb_grpc
from .errors import CheckpointError, ErrorCode, translate, unreachable
from .results import (
    CheckpointOutcome,
    CheckpointReason,
    CheckpointStatus,
    DumpRequest,
    LatestCheckpoint,
    SidecarStatus,
    default_socket_path,
)

#: Kubernetes' default terminationGracePeriodSeconds, for a sidecar that names neither deadline nor grace period.
FALLBACK_GRACE_PERIOD = 30.0
#: How long NotifyTermination may take before the SDK gives up on the sidecar and exits.
NOTIFY_TERMINATION_TIMEOUT = 5.0
#: Names one run of the world when torch.distributed is not initialised (every rank must give the same value).
WORLD_ID_ENV = "CHECKPOINT_WORLD_ID"
#: Seconds to wait for the sidecar's socket to accept a connection (0: fail at once); the same variable as the C# SDK's.
SOCKET_WAIT_TIMEOUT_ENV = "CHECKPOINT_CONNECT_TIMEOUT_SECONDS"
DEFAULT_SOCKET_WAIT_TIMEOUT = 60.0


def _hard_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not keep the process alive
            pass
    os._exit(code)


def _process_group():
    """torch.distributed when the user initialised a process group (of any size); never imports torch."""
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if not dist.is_available() or not dist.is_initialized():
            return None
    except Exception:  # noqa: BLE001
        return None
    return dist


def _distributed():
    """torch.distributed when the user initialised a process group of more than one rank: collectives are needed."""
    dist = _process_group()
    try:
        if dist is None or dist.get_world_size() <= 1:
            return None
    except Exception:  # noqa: BLE001
        return None
    return dist


def _default_rank() -> int:
    dist = _process_group()
    if dist is not None:
        return dist.get_rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _default_world_size() -> int:
    dist = _process_group()
    if dist is not None:
        return dist.get_world_size()
    value = os.environ.get("WORLD_SIZE", "").strip()
    if not value:
        return 0
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={value!r} in the environment is not a number of ranks; unset it or pass "
                         f"world_size= to the CheckpointClient") from None


def _default_socket_wait_timeout() -> float:
    value = os.environ.get(SOCKET_WAIT_TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_SOCKET_WAIT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise CheckpointError(
            f"The {SOCKET_WAIT_TIMEOUT_ENV} environment variable is {value!r}, which is not a number of seconds (0 or more; "
            f"0 fails at once). Fix the container's environment or pass socket_wait_timeout explicitly.",
            ErrorCode.INVALID_ARGUMENT)
    return seconds


def _probe_socket(path: str) -> None:
    """Connects to the Unix socket and hangs up; raises the OSError of a failed connect."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.connect(path)


def _epoch_seconds(value: Union[_dt.datetime, float, int]) -> float:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ValueError("a deadline must be a timezone-aware datetime (or seconds since the epoch)")
        return value.timestamp()
    return float(value)


def _utc(seconds: float) -> str:
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc).isoformat()


class CheckpointClient:
    """Connects to the sidecar, attaches this process (rank) and listens for dump requests.

    Use it for the life of the process, as a context manager or with :meth:`close`::

        with CheckpointClient(checkpoint_every=100) as client:
            latest = client.latest()
            ...
            if client.should_checkpoint(step):
                with client.checkpoint(step) as directory:
                    save(directory)

    Every failure talking to the sidecar raises :class:`CheckpointError`. Every call has a timeout.

    Options (defaults from the environment where one exists):

    - ``socket_path``: ``CHECKPOINT_SOCKET_PATH``, else ``/var/run/checkpoint/sidecar.sock``.
    - ``rank``: the torch.distributed rank when a process group is initialised, else ``RANK``, else 0.
    - ``world_size``: ranks in the whole job, across every pod: the torch.distributed world size when a process group
      is initialised, else ``WORLD_SIZE`` (torchrun sets it), else 0 (the ranks attached to this sidecar are the
      world: a single-pod job). A checkpoint is committed only when every rank 0..world_size-1 has its shard.
    - ``world_id``: names this run of the world (up to 32 characters of [a-z0-9]); shards of different runs are
      never combined. With a process group the ranks agree on it at construction (a collective: create the client
      on every rank): the given one (or ``CHECKPOINT_WORLD_ID``) when every rank that was given one agrees, else 16
      random hex characters drawn by rank 0. Without one: ``CHECKPOINT_WORLD_ID``, else none.
    - ``checkpoint_every``: periodic checkpoint every N steps (0: none), or ``"auto"``: follow the interval the sidecar
      recommends (Young/Daly, from the job's measured checkpoint cost and preemption rate; ``recommended_interval``),
      converted into steps from this process's measured step time (the median of recent steps between
      ``should_checkpoint`` calls) and never shorter than one checkpoint's measured stall. Under torch.distributed a
      checkpoint is due when it is due on any rank (carried in the step collective), so the ranks checkpoint together.
    - ``auto_fallback_every``: with ``checkpoint_every="auto"``, every N steps while no recommendation is known (the
      sidecar learns the checkpoint cost from these checkpoints and needs a few preemptions of the job to know its
      rate). Required with ``"auto"``.
    - ``handle_termination``: own SIGTERM (main thread only) and the process exit during a preemption.
    - ``preemption_exit_code``: exit code after a preemption (default 1: "run me again").
    - ``socket_wait_timeout``: seconds to wait for the sidecar's socket to appear and accept a connection, since a
      regular sidecar container may start after the trainer: ``CHECKPOINT_CONNECT_TIMEOUT_SECONDS``, else 60; 0 fails
      at once.
    - ``connect_timeout`` / ``rpc_timeout``: seconds for attaching / for each unary call.
    - ``reattach``: when the attachment breaks (sidecar restarted), attach again in the background.
    - ``exit_process``: how to end the process (default: flush stdio, ``os._exit``); for tests.
    """

    def __init__(
        self,
        socket_path: Optional[str] = None,
        *,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        world_id: Optional[str] = None,
        description: Optional[str] = None,
        checkpoint_every: Union[int, str] = 0,
        auto_fallback_every: int = 0,
        handle_termination: bool = True,
        preemption_exit_code: int = 1,
        connect_timeout: float = 10.0,
        socket_wait_timeout: Optional[float] = None,
        rpc_timeout: float = 10.0,
        wait_timeout: float = 600.0,
        reattach: bool = True,
        warn_signal_pitfalls: Optional[bool] = None,
        exit_process: Optional[Callable[[int], None]] = None,
        log: Optional[TextIO] = None,
    ) -> None:
        if checkpoint_every == AUTO:
            if isinstance(auto_fallback_every, bool) or not isinstance(auto_fallback_every, int) or auto_fallback_every <= 0:
                raise ValueError('checkpoint_every="auto" needs auto_fallback_every=N (steps, positive): the interval '
                                 'used until the sidecar knows a recommendation, which it learns from those checkpoints')
        elif isinstance(checkpoint_every, str) or isinstance(checkpoint_every, bool) or checkpoint_every < 0:
            raise ValueError(f'checkpoint_every must be 0 (off), a positive number of steps or "auto", '
                             f'not {checkpoint_every!r}')
        if connect_timeout <= 0 or rpc_timeout <= 0 or wait_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if socket_wait_timeout is not None and not 0 <= socket_wait_timeout < float("inf"):
            raise ValueError("socket_wait_timeout must be 0 (fail at once) or a positive number of seconds")
        self.socket_path = os.path.abspath(socket_path or default_socket_path())
        self.rank = _default_rank() if rank is None else int(rank)
        self.world_size = _default_world_size() if world_size is None else int(world_size)
        if self.world_size < 0:
            raise ValueError(f"world_size must be 0 (a single-pod job) or the number of ranks, not {self.world_size}")
        if self.world_size > 0 and not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in the world of {self.world_size} ranks (0..{self.world_size - 1}); "
                             f"check RANK and WORLD_SIZE, or initialise torch.distributed before creating the client")
        self.description = description or (
            f"python {sys.version.split()[0]} pid {os.getpid()} on {socket.gethostname()} rank {self.rank}")
        self.checkpoint_every: Union[int, str] = AUTO if checkpoint_every == AUTO else int(checkpoint_every)
        self.auto_fallback_every = int(auto_fallback_every)
        self.handle_termination = handle_termination
        self.preemption_exit_code = int(preemption_exit_code)
        self.connect_timeout = float(connect_timeout)
        self.socket_wait_timeout = (_default_socket_wait_timeout() if socket_wait_timeout is None
                                    else float(socket_wait_timeout))
        self.rpc_timeout = float(rpc_timeout)
        self.wait_timeout = float(wait_timeout)
        self._reattach_enabled = reattach
        self._exit_process = exit_process or _hard_exit
        self._log_stream = log

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._closed = threading.Event()
        self._attached = threading.Event()
        self._detached = threading.Event()
        self._channel: Optional[grpc.Channel] = None
        self._stub: Optional[pb_grpc.CheckpointServiceStub] = None
        self._call = None
        self._generation = 0
        self._trainer_id = ""
        self._grace_period = 0.0
        self._pending: Optional[DumpRequest] = None
        self._handlers: List[Callable[[DumpRequest], None]] = []
        self._last_checkpoint_step: Optional[int] = None
        self._terminating = False
        self._preemption_seen = False
        self._termination_deadline: Optional[float] = None
        self._preemption_outcome_started = False
        self._watchdog: Optional[threading.Timer] = None
        self._watchdog_deadline: Optional[float] = None
        self._exiting = False
        self._previous_sigterm = None
        self._reattaching = False
        # Another pod of the job is being preempted and this rank took the job-wide preemption dump: the world is
        # going down with it, and this is its deadline.
        self._job_preemption_deadline: Optional[float] = None
        # (step, deadline) of a job-wide preemption the ranks agreed on in should_checkpoint(), for checkpoint(step).
        self._agreed_preemption: Optional[tuple] = None
        self._last_reported_id: Optional[str] = None
        # A preemption drill's checkpoint this rank reported, until its outcome is known: the sidecar refuses other
        # checkpoints meanwhile (FAILED_PRECONDITION), which must not be read as the pod beginning to terminate.
        self._drill_in_flight: Optional[str] = None
        # checkpoint_every="auto": the sidecar's newest recommendation (seconds; None while it knows none), this
        # process's step time and checkpoint stall, and the step interval last logged.
        self._recommended: Optional[float] = None
        self._step_clock = StepClock()
        self._logged_auto_steps: Optional[int] = None

        # A collective under torch.distributed: before any connection, so that a rank that cannot reach its sidecar
        # does not leave the others waiting in it.
        self.world_id = self._resolve_world_id(world_id)
        self._wait_for_socket()
        self._attach()

        if handle_termination:
            self._register_sigterm()
            if warn_signal_pitfalls is None:
                warn_signal_pitfalls = os.environ.get("CHECKPOINT_SDK_SIGNAL_WARNING", "1") != "0"
            if warn_signal_pitfalls:
                problem = _signals.diagnose_signal_delivery()
                if problem:
                    warnings.warn(problem, RuntimeWarning, stacklevel=2)

    # ------------------------------------------------------------------ properties

    @property
    def trainer_id(self) -> str:
        """The identifier the sidecar gave the current attachment."""
        with self._lock:
            return self._trainer_id

    @property
    def grace_period(self) -> float:
        """The grace period (seconds) the sidecar plans preemption flushes against."""
        return self._grace_period

    @property
    def recommended_interval(self) -> Optional[float]:
        """The job's recommended checkpoint interval (seconds) as the sidecar last told it (on attaching and with each
        checkpoint outcome), or None while it knows none."""
        with self._lock:
            return self._recommended

    @property
    def auto_interval_steps(self) -> Optional[int]:
        """With ``checkpoint_every="auto"``: the steps between checkpoints the recommendation comes to at the measured
        step time, or None while either is unknown (``auto_fallback_every`` applies then)."""
        with self._lock:
            return self._step_clock.steps_for(self._recommended)

    @property
    def attached(self) -> bool:
        return self._attached.is_set()

    @property
    def pending_dump(self) -> Optional[DumpRequest]:
        """The dump the sidecar pushed and is waiting for (a preemption, or a drill: ``drill`` set), or None; cleared
        once reported."""
        with self._lock:
            return self._pending

    @property
    def termination_requested(self) -> bool:
        """This process got SIGTERM, the sidecar asked for a preemption dump, or this rank took the job-wide
        preemption checkpoint of another pod's preemption: periodic checkpoints are pointless, the world goes down."""
        with self._lock:
            return self._terminating or self._preemption_seen or self._job_preemption_deadline is not None

    def wait_attached(self, timeout: float) -> bool:
        """Waits until the client is attached (again, after the sidecar restarted); False on timeout."""
        return self._attached.wait(timeout)

    def wait_detached(self, timeout: float) -> bool:
        """Waits until the attachment is lost (the sidecar went away); False on timeout."""
        return self._detached.wait(timeout)

    def on_dump_requested(self, handler: Callable[[DumpRequest], None]) -> Callable[[], None]:
        """Registers a callback for pushed dump requests (runs on a background thread; only note the request there).

        Returns a function that unregisters it. A request that arrived before is not replayed: check ``pending_dump``.
        """
        with self._lock:
            self._handlers.append(handler)

        def unregister() -> None:
            with self._lock:
                if handler in self._handlers:
                    self._handlers.remove(handler)

        return unregister

    # ------------------------------------------------------------------ the training loop's API

    def latest(self) -> Optional[LatestCheckpoint]:
        """The newest committed checkpoint with this rank's metadata, or None (start fresh).

        Under torch.distributed (a collective: call it on every rank) the ranks check that they all got the same
        step (all_gather); when they did not, every rank raises CheckpointError FAILED_PRECONDITION naming the ranks
        and the step each got, so training never starts split. A rank whose own lookup failed raises its own error
        and the others name it.
        """
        dist = _distributed()
        try:
            response = self._unary("GetLatestCheckpoint", "GetLatestCheckpoint",
                                   pb.GetLatestCheckpointRequest(rank=self.rank))
        except CheckpointError as error:
            if dist is not None:
                _collectives.agree_resume(dist, None, error)  # raises, after the other ranks learned of it
            raise
        latest = LatestCheckpoint._from_proto(response.checkpoint) if response.HasField("checkpoint") else None
        if dist is not None:
            _collectives.agree_resume(dist, None if latest is None else latest.step, None)
        if latest is None:
            return None
        with self._lock:
            if self._last_checkpoint_step is None:
                self._last_checkpoint_step = latest.step  # resuming at that step: no periodic copy of it again
        return latest

    def should_checkpoint(self, step: int) -> bool:
        """Whether to write a checkpoint at this step boundary; call it at every step, on every rank.

        True when a preemption dump is pending (or this process got SIGTERM), when a preemption drill's dump is
        pending (``checkpoint-sidecar drill``: written here, as a preemption's would be, and training goes on), or
        when a periodic checkpoint is due (``checkpoint_every``). Under torch.distributed the ranks agree through a
        collective (one all_reduce MAX of the pending flag, the negated deadline, the drill flag and the periodic
        checkpoint being due, which with ``"auto"`` depends on each rank's measured step time), so every rank
        answers the same, no rank dumps a different step, and every rank learns the earliest deadline any rank's pod
        announced: a rank whose pod is not being preempted then takes the job-wide preemption checkpoint in
        ``checkpoint(step)`` with that deadline.
        """
        urgent = self.termination_requested
        drill = self._pending_drill() is not None
        due = self._periodic_due(step)
        deadline: Optional[float] = None
        dist = _distributed()
        if dist is not None:
            urgent, deadline, drill, due = _collectives.agree_step_boundary(
                dist, urgent, self._local_deadline() if urgent else None, drill, due)
        if urgent:
            with self._lock:
                self._agreed_preemption = (step, deadline)
            return True
        if drill:
            # A rank the push has not reached yet asks for a checkpoint of this step in checkpoint(step); the
            # sidecar hands it the drill's dump.
            return True
        return due

    def _periodic_due(self, step: int) -> bool:
        """Whether this rank's periodic schedule asks for a checkpoint at ``step`` (before the ranks agree)."""
        with self._lock:
            last = self._last_checkpoint_step
            if self.checkpoint_every != AUTO:
                every = int(self.checkpoint_every)
                return every > 0 and step > 0 and step % every == 0 and step != last
            self._step_clock.boundary(step)
            steps = self._step_clock.steps_for(self._recommended)
            recommended = self._recommended
        if step <= 0 or step == last:
            return False
        if steps is None:
            return step % self.auto_fallback_every == 0
        if self._logged_auto_steps is None or abs(steps - self._logged_auto_steps) > 0.2 * self._logged_auto_steps:
            # Once per change worth telling, not per step: the measured step time wobbles.
            self._logged_auto_steps = steps
            self._log(f"checkpoint_every=auto: the sidecar recommends a checkpoint every {recommended:.1f} s; at "
                      f"{self._step_clock.step_seconds:.4g} s per step that is every {steps} steps")
        since = step - (last if last is not None and last <= step else 0)
        return since >= steps

    def checkpoint(self, step: int, metadata: Optional[Mapping[str, str]] = None,
                   reason: CheckpointReason = CheckpointReason.PERIODIC) -> "CheckpointWriter":
        """A context manager giving this rank's directory to write the checkpoint of ``step`` into.

        The pending preemption dump when there is one, else the pending drill dump, else a new ``reason`` checkpoint
        (PERIODIC or MANUAL). When the block exits without an exception, the files under the directory are reported.
        A preemption then waits for the outcome and (with ``handle_termination``) exits the process with
        ``preemption_exit_code``; a drill, periodic or manual checkpoint returns at once while the sidecar persists it
        in the background (a drill is written as a preemption would be, but nothing exits: training goes on).
        """
        return CheckpointWriter(self, step, dict(metadata or {}), reason)

    # ------------------------------------------------------------------ the pieces

    def begin_checkpoint(self, step: int, reason: CheckpointReason = CheckpointReason.PERIODIC,
                         deadline: Union[_dt.datetime, float, None] = None) -> DumpRequest:
        """Asks the sidecar for a checkpoint of ``step``; ranks asking at the same step share one checkpoint.

        ``reason`` PERIODIC or MANUAL; or PREEMPTION with ``deadline`` (an aware datetime or seconds since the epoch):
        another pod of the job is being preempted, the ranks agreed to dump at ``step``, and the job-wide checkpoint
        must be committed by ``deadline``. ``checkpoint(step)`` does that by itself when the ranks' collective says so.
        """
        if reason not in (CheckpointReason.PERIODIC, CheckpointReason.MANUAL, CheckpointReason.PREEMPTION):
            raise ValueError(f"a trainer asks for PERIODIC, MANUAL or PREEMPTION checkpoints, not {reason}")
        request = pb.BeginCheckpointRequest(trainer_id=self.trainer_id, step=step, reason=reason._to_proto())
        if reason == CheckpointReason.PREEMPTION:
            if deadline is None:
                raise ValueError("a PREEMPTION checkpoint needs the deadline the preempted pod announced")
            request.deadline.FromNanoseconds(int(round(_epoch_seconds(deadline) * 1e9)))
        response = self._unary("BeginCheckpoint", "BeginCheckpoint", request)
        if not response.HasField("dump"):
            raise CheckpointError(f"The checkpoint sidecar answered BeginCheckpoint for step {step} without a dump.",
                                  ErrorCode.INTERNAL)
        return DumpRequest._from_proto(response.dump)

    def report_dump(self, dump: DumpRequest, step: int, files: List[str],
                    metadata: Optional[Mapping[str, str]] = None) -> pb.ReportDumpResponse:
        """Reports the files (relative to ``dump.staging_dir``) this rank wrote; the sidecar validates them at once.

        Raises CheckpointError: INVALID_ARGUMENT naming a missing or irregular file or a step differing from another
        rank's, NOT_FOUND / FAILED_PRECONDITION for an unknown or ended checkpoint, UNAVAILABLE.
        """
        if not files or any(not f or not f.strip() for f in files):
            raise CheckpointError(f"Checkpoint {dump.checkpoint_id}: a dump must report at least one non-empty path.",
                                  ErrorCode.INVALID_ARGUMENT)
        request = pb.ReportDumpRequest(trainer_id=self.trainer_id, checkpoint_id=dump.checkpoint_id, step=step,
                                       files=list(files), metadata=dict(metadata or {}))
        try:
            response = self._unary("ReportDump", "ReportDump", request)
        except CheckpointError as error:
            if dump.drill and error.code in (ErrorCode.NOT_FOUND, ErrorCode.FAILED_PRECONDITION):
                # The drill ended without this rank (its deadline, or a real preemption superseded it): it is not
                # pending any more, or every later step boundary would try to write it again.
                with self._lock:
                    if self._pending is not None and self._pending.checkpoint_id == dump.checkpoint_id:
                        self._pending = None
            raise
        with self._lock:
            if self._pending is not None and self._pending.checkpoint_id == dump.checkpoint_id:
                self._pending = None
            self._last_checkpoint_step = step
            self._last_reported_id = dump.checkpoint_id
            if dump.drill:
                self._drill_in_flight = dump.checkpoint_id
        return response

    def wait_for_checkpoint(self, checkpoint_id: str, timeout: Optional[float] = None) -> CheckpointOutcome:
        """Waits until the checkpoint is committed, failed or superseded (at most ``timeout``, default wait_timeout)."""
        timeout = self.wait_timeout if timeout is None else max(0.1, timeout)
        response = self._unary("WaitForCheckpoint", "WaitForCheckpoint",
                               pb.WaitForCheckpointRequest(checkpoint_id=checkpoint_id), timeout=timeout)
        outcome = CheckpointOutcome._from_proto(response)
        with self._lock:
            self._recommended = outcome.recommended_interval  # the sidecar's newest word, "none known" too
        return outcome

    def status(self) -> SidecarStatus:
        return SidecarStatus._from_proto(self._unary("GetStatus", "GetStatus", pb.GetStatusRequest()))

    def submit(self, dump: DumpRequest, step: int, files: List[str],
               metadata: Optional[Mapping[str, str]] = None) -> Optional[CheckpointOutcome]:
        """Reports a dump and returns when the training loop may go on (what the context manager does on exit).

        Periodic/manual (a drill too): returns None at once; the outcome is followed in the background (a failure is
        logged). A drill's dump is MANUAL, so nothing here exits or arms the deadline watchdog.
        Preemption: waits for the outcome until the deadline; with ``handle_termination`` the process then exits
        with ``preemption_exit_code`` (also when the report or the wait fails: there is nothing left to do).
        """
        if dump.reason != CheckpointReason.PREEMPTION:
            self.report_dump(dump, step, files, metadata)
            threading.Thread(target=self._follow, args=(dump.checkpoint_id,), name="checkpoint-follow",
                             daemon=True).start()
            return None

        with self._lock:
            self._preemption_outcome_started = True
        try:
            self.report_dump(dump, step, files, metadata)
            outcome = self.wait_for_checkpoint(dump.checkpoint_id, timeout=self._time_left(dump) + 2.0)
        except CheckpointError as error:
            if self.handle_termination:
                self._exit(f"preemption checkpoint {dump.checkpoint_id} could not be completed: {error}")
            raise
        if self.handle_termination:
            missing = (f" ({_collectives.describe_ranks(outcome.missing_ranks)} of the world had no shard)"
                       if outcome.missing_ranks else "")
            result = {
                CheckpointStatus.COMMITTED: f"committed at step {outcome.step} in {outcome.directory}",
                CheckpointStatus.FAILED: f"failed: {outcome.error}{missing}",
            }.get(outcome.status, outcome.status.value)
            self._exit(f"preemption checkpoint {dump.checkpoint_id} {result}")
        return outcome

    def close(self) -> None:
        """Detaches (closes the Attach stream), restores the SIGTERM handler and stops the watchdog."""
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            call, channel = self._call, self._channel
            if self._watchdog is not None:
                self._watchdog.cancel()
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            try:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            except (ValueError, OSError):
                pass
        if call is not None:
            call.cancel()
        if channel is not None:
            channel.close()

    def __enter__(self) -> "CheckpointClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ internals: attachment

    def _resolve_world_id(self, given: Optional[str]) -> str:
        source = "the world_id option" if given is not None else f"{WORLD_ID_ENV}"
        if given is None:
            given = os.environ.get(WORLD_ID_ENV, "").strip()
        dist = _distributed()
        if dist is not None:
            return _collectives.agree_world_id(dist, given, source)
        if given and not _collectives.valid_world_id(given):
            raise CheckpointError(
                f"the world id {given[:64]!r} ({source}) is not 1 to {_collectives.WORLD_ID_MAX} characters of "
                f"[a-z0-9]; give a valid one or none", ErrorCode.INVALID_ARGUMENT)
        if not given and _process_group() is not None:
            return _collectives.new_world_id()  # a world of one rank agrees with itself
        return given

    def _new_channel(self) -> grpc.Channel:
        # Reconnect quickly after a sidecar restart (initial/max backoff), but leave the connect timeout
        # at gRPC's default: gRPC takes grpc.min_reconnect_backoff_ms as the minimum connect timeout too,
        # and on a busy node the sidecar's HTTP/2 SETTINGS can take longer than a short one.
        return grpc.insecure_channel(f"unix://{self.socket_path}", options=[
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.enable_retries", 0),
        ])

    def _wait_for_socket(self) -> None:
        """Returns once the socket accepts a connection (the probe is closed at once).

        A regular (not native) sidecar container starts beside the trainer, not before it: the socket may not exist
        yet, or a file left by the previous sidecar may have no listener yet. Both are waited out, retrying after
        50 ms and doubling up to every second; anything else (permission denied) fails at once.
        """
        give_up_at = time.monotonic() + self.socket_wait_timeout
        retry = 0.05
        while True:
            try:
                _probe_socket(self.socket_path)
                return
            except (FileNotFoundError, ConnectionRefusedError) as e:
                failure = e
            except OSError as e:
                raise unreachable(self.socket_path, "Attach", str(e)) from e
            left = give_up_at - time.monotonic()
            if retry == 0.05 and left > 0:
                # Once: a trainer that seems stuck at start says what it waits for.
                self._log(f"waiting up to {self.socket_wait_timeout:g} s for the checkpoint sidecar socket "
                          f"{self.socket_path} ({failure.strerror})")
            if left <= 0:
                raise unreachable(
                    self.socket_path, "Attach",
                    f"{failure.strerror}; waited {self.socket_wait_timeout:g} s for the socket to accept a connection, "
                    f"set by {SOCKET_WAIT_TIMEOUT_ENV} or socket_wait_timeout") from failure
            time.sleep(min(retry, left))
            retry = min(retry * 2, 1.0)

    def _attach(self) -> None:
        channel = self._new_channel()
        stub = pb_grpc.CheckpointServiceStub(channel)
        first = threading.Event()
        result: Dict[str, object] = {}
        call = stub.Attach(pb.AttachRequest(rank=self.rank, description=self.description, world_size=self.world_size,
                                            world_id=self.world_id))
        with self._lock:
            self._generation += 1
            generation = self._generation
        thread = threading.Thread(target=self._read_commands, args=(call, generation, first, result),
                                  name=f"checkpoint-attach-{generation}", daemon=True)
        thread.start()
        if not first.wait(self.connect_timeout):
            call.cancel()
            channel.close()
            raise unreachable(self.socket_path, "Attach", f"no answer within {self.connect_timeout:g} s")
        if "error" in result:
            channel.close()
            raise translate(self.socket_path, "Attach", result["error"])  # type: ignore[arg-type]
        if "attached" not in result:
            channel.close()
            raise CheckpointError(
                f"The checkpoint sidecar at {self.socket_path} did not confirm the attachment of rank {self.rank}: "
                f"{result.get('why', 'it closed the stream')}.", ErrorCode.INTERNAL)
        attached = result["attached"]
        with self._lock:
            old = self._channel
            self._channel, self._stub, self._call = channel, stub, call
            self._trainer_id = attached.trainer_id  # type: ignore[attr-defined]
            g = attached.grace_period  # type: ignore[attr-defined]
            self._grace_period = g.seconds + g.nanos / 1e9
            r = attached.recommended_interval  # type: ignore[attr-defined]
            self._recommended = r.seconds + r.nanos / 1e9 if attached.HasField("recommended_interval") else None  # type: ignore[attr-defined]
        if old is not None:
            old.close()
        self._detached.clear()
        self._attached.set()

    def _read_commands(self, call, generation: int, first: threading.Event, result: Dict[str, object]) -> None:
        why = "the sidecar closed the attachment stream"
        try:
            for command in call:
                kind = command.WhichOneof("command")
                if not first.is_set():
                    if kind == "attached":
                        result["attached"] = command.attached
                    else:
                        result["why"] = f"its first message was {kind} instead of attached"
                    first.set()
                    if kind != "attached":
                        call.cancel()
                        return
                    continue
                if kind == "dump":
                    self._on_dump(DumpRequest._from_proto(command.dump))
        except grpc.RpcError as error:
            if not first.is_set():
                result["error"] = error
                first.set()
                return
            if self._closed.is_set():
                return
            why = f"the attachment stream broke ({error.code().name}: {error.details()})"
        except Exception as error:  # noqa: BLE001 - a broken listener must say so, not die silently
            why = f"the attachment listener failed: {error!r}"
        if not first.is_set():
            first.set()
            return
        with self._lock:
            if generation != self._generation or self._closed.is_set():
                return
        self._on_attachment_lost(why)

    def _on_attachment_lost(self, why: str) -> None:
        self._attached.clear()
        self._detached.set()
        self._log(f"detached from the checkpoint sidecar: {why}")
        if self.handle_termination and self.termination_requested:
            with self._lock:
                if self._preemption_outcome_started:
                    return  # the outcome wait fails on its own if the sidecar is really gone, and exits then
            self._exit("the sidecar went away while the pod terminates; no preemption checkpoint can be committed")
            return
        if self._reattach_enabled:
            with self._lock:
                if self._reattaching:
                    return
                self._reattaching = True
            threading.Thread(target=self._reattach_loop, name="checkpoint-reattach", daemon=True).start()

    def _reattach_loop(self) -> None:
        delay = 0.2
        try:
            while not self._closed.is_set():
                # A bounded retry backoff (not a synchronisation): closing the client ends it at once.
                if self._closed.wait(delay):
                    return
                if self.termination_requested:
                    return
                try:
                    self._attach()
                except CheckpointError:
                    delay = min(delay * 2, 2.0)
                    continue
                self._log(f"re-attached to the checkpoint sidecar as {self.trainer_id}")
                return
        finally:
            with self._lock:
                self._reattaching = False

    def _on_dump(self, dump: DumpRequest) -> None:
        with self._changed:
            if dump.checkpoint_id == self._last_reported_id:
                # This rank already joined that checkpoint through BeginCheckpoint(PREEMPTION) and reported its files;
                # its own sidecar's push came later. Nothing is pending.
                return
            self._pending = dump
            if dump.reason == CheckpointReason.PREEMPTION:
                self._preemption_seen = True
            handlers = list(self._handlers)
            self._changed.notify_all()
        deadline = f", deadline {dump.deadline.isoformat()}" if dump.deadline else ""
        kind = "preemption drill, training goes on" if dump.drill else dump.reason.value
        self._log(f"the sidecar asks for dump {dump.checkpoint_id} ({kind}{deadline}) into {dump.staging_dir}")
        if dump.reason == CheckpointReason.PREEMPTION and self.handle_termination:
            self._arm_watchdog(dump.deadline.timestamp() if dump.deadline else self._default_deadline())
        for handler in handlers:
            try:
                handler(dump)
            except Exception as error:  # noqa: BLE001 - a throwing callback must not stop the listener
                self._log(f"a dump request callback raised; the request stays pending: {error!r}")

    def _follow(self, checkpoint_id: str) -> None:
        try:
            try:
                outcome = self.wait_for_checkpoint(checkpoint_id)
            except CheckpointError as error:
                if not self._closed.is_set():
                    self._log(f"could not learn the outcome of checkpoint {checkpoint_id}: {error}")
                return
        finally:
            with self._lock:
                if self._drill_in_flight == checkpoint_id:
                    self._drill_in_flight = None
        if outcome.status == CheckpointStatus.FAILED:
            self._log(f"checkpoint {checkpoint_id} failed: {outcome.error}")

    # ------------------------------------------------------------------ internals: preemption

    def _dump_for(self, step: int, reason: CheckpointReason) -> DumpRequest:
        """The dump a ``checkpoint()`` block writes: the preemption one when any rank needs it, else a new one."""
        dist = _distributed()
        dump: Optional[DumpRequest] = None
        failure: Optional[CheckpointError] = None
        with self._lock:
            agreed, self._agreed_preemption = self._agreed_preemption, None
        if agreed is not None and agreed[0] != step:
            agreed = None  # agreed at another step boundary: not this checkpoint's
        # Urgent when this rank's pod terminates, or when should_checkpoint(step) found that another rank's does: no
        # periodic checkpoint is begun then (it would only be abandoned).
        urgent = self.termination_requested or agreed is not None
        if not urgent:
            # A pushed drill dump is written at this step boundary, as a preemption's would be; a rank the push has
            # not reached yet gets the drill's dump from begin_checkpoint (the sidecar hands it out meanwhile).
            dump = self._pending_drill()
            try:
                if dump is None:
                    dump = self.begin_checkpoint(step, reason)
            except CheckpointError as error:
                # FAILED_PRECONDITION: the pod began terminating since should_checkpoint(); the preemption dump
                # replaces this one -- unless a drill this rank already wrote is still being persisted (the sidecar
                # refuses other checkpoints until it ends). Any other failure is raised, but only after the collective
                # below, so that the other ranks are not left waiting in it.
                if error.code == ErrorCode.FAILED_PRECONDITION and not self._drill_refused() and (
                        dist is not None or self.termination_requested or self._wait_preemption_briefly()):
                    urgent = True
                else:
                    failure = error
        deadline = agreed[1] if agreed is not None else None
        if dist is not None:
            # All ranks take a preemption dump, or none does; every rank learns the earliest announced deadline.
            own = self._local_deadline() if urgent and agreed is None else deadline
            urgent, deadline = _collectives.agree_urgency(dist, urgent, own)
        if urgent:
            return self._preemption_dump(step, deadline, dist is not None)
        if failure is not None:
            raise failure
        assert dump is not None
        return dump

    def _pending_drill(self) -> Optional[DumpRequest]:
        """The preemption drill's dump the sidecar pushed, while it waits for this rank's files; else None."""
        with self._lock:
            pending = self._pending
            if pending is None or not pending.drill or pending.reason == CheckpointReason.PREEMPTION:
                return None
            if pending.deadline is not None and pending.deadline.timestamp() <= time.time():
                # The sidecar failed the drill at its deadline (this rank was in a long step): nothing to write.
                self._pending = None
                self._log(f"preemption drill {pending.checkpoint_id} ended at its deadline before this rank's step "
                          f"boundary; not writing it")
                return None
            return pending

    def _drill_refused(self) -> bool:
        """A checkpoint was refused because this rank's drill checkpoint is still being persisted, not because the pod
        terminates."""
        with self._lock:
            return self._drill_in_flight is not None and not self.termination_requested

    def _preemption_dump(self, step: int, deadline: Optional[float], distributed: bool) -> DumpRequest:
        """This rank's part of the preemption checkpoint of ``step``.

        The dump its own sidecar pushed when its pod is being preempted (waiting for it after a SIGTERM). Otherwise
        another pod of the job is being preempted: this rank asks its own sidecar for the job-wide preemption
        checkpoint with the deadline the ranks agreed on, rather than wait for a request that never comes.
        """
        with self._lock:
            pending = self._pending
            own_pod_terminating = self._terminating or self._preemption_seen
        if pending is not None and pending.reason == CheckpointReason.PREEMPTION:
            return pending
        if own_pod_terminating or not distributed:
            return self._wait_for_preemption_dump()
        return self._begin_job_preemption(step, deadline)

    def _begin_job_preemption(self, step: int, deadline: Optional[float]) -> DumpRequest:
        if deadline is None:
            # No rank knew its deadline (a refused periodic checkpoint was the only sign): this sidecar's grace period
            # from now is the best estimate; the preempted pod's sidecar keeps its own deadline anyway.
            deadline = self._default_deadline()
        try:
            dump = self.begin_checkpoint(step, CheckpointReason.PREEMPTION, deadline=deadline)
        except CheckpointError as error:
            # This rank's own pod may have begun terminating meanwhile (its sidecar then pushes its own dump), or the
            # sidecar predates job-wide checkpoints and refuses PREEMPTION (INVALID_ARGUMENT) but pushes its dump
            # when it is the preempted one (every rank of a single-pod job shares it).
            if self.termination_requested or self._wait_preemption_briefly():
                return self._wait_for_preemption_dump()
            why = (f"another rank's pod is being preempted and the ranks agreed to dump at step {step} by "
                   f"{_utc(deadline)}, but this rank's sidecar refused the job-wide preemption checkpoint: {error}")
            if error.code == ErrorCode.INVALID_ARGUMENT:
                why += " (a sidecar without job-wide checkpoints refuses PREEMPTION: upgrade it)"
            if self.handle_termination:
                self._exit(why)  # the world goes down with the preempted pod: nothing is left to train with
            raise CheckpointError(f"rank {self.rank}: {why}", error.code, error.detail) from None
        agreed_deadline = dump.deadline.timestamp() if dump.deadline else deadline
        with self._changed:
            self._job_preemption_deadline = agreed_deadline
            self._changed.notify_all()
        self._log(f"a rank's pod is being preempted and the ranks agreed to dump at step {step}: taking preemption "
                  f"checkpoint {dump.checkpoint_id}, to be committed by {_utc(agreed_deadline)}")
        if self.handle_termination:
            self._arm_watchdog(agreed_deadline)
        return dump

    def _local_deadline(self) -> float:
        """When this rank's own preemption checkpoint must be committed: from the dump its sidecar pushed, else the
        NotifyTermination answer, else the job-wide one it took. Waits (bounded) for one while it is on the way."""

        def known() -> Optional[float]:
            pending = self._pending
            if pending is not None and pending.reason == CheckpointReason.PREEMPTION and pending.deadline is not None:
                return pending.deadline.timestamp()
            if self._termination_deadline is not None:
                return self._termination_deadline
            return self._job_preemption_deadline

        with self._changed:
            self._changed.wait_for(lambda: known() is not None, timeout=NOTIFY_TERMINATION_TIMEOUT)
            value = known()
        return value if value is not None else self._default_deadline()

    def _wait_preemption_briefly(self) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._preemption_seen, timeout=min(self.rpc_timeout, 5.0))

    def _wait_for_preemption_dump(self) -> DumpRequest:
        with self._changed:
            limit = self._termination_deadline or (time.time() + (self._grace_period or FALLBACK_GRACE_PERIOD))
            got = self._changed.wait_for(
                lambda: self._pending is not None and self._pending.reason == CheckpointReason.PREEMPTION,
                timeout=max(0.1, limit - time.time()))
            if not got:
                raise CheckpointError(
                    f"rank {self.rank}: the pod is terminating but the sidecar at {self.socket_path} sent no preemption "
                    f"dump request before the deadline", ErrorCode.DEADLINE_EXCEEDED)
            return self._pending  # type: ignore[return-value]

    def _register_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            self._log("SIGTERM can only be handled when the client is created in the main thread; not handling it")
            return
        self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:  # runs in the main thread, between bytecodes
        with self._lock:
            again = self._terminating
            self._terminating = True
            self._changed.notify_all()
        if again:
            self._log("SIGTERM received again; the preemption checkpoint is already under way")
            return
        self._log("SIGTERM received: asking the checkpoint sidecar to start the preemption checkpoint")
        # The call runs on a thread: the handler must return at once so the training step goes on to its boundary.
        threading.Thread(target=self._notify_termination, name="checkpoint-sigterm", daemon=True).start()

    def _notify_termination(self) -> None:
        try:
            response = self._unary("NotifyTermination", "NotifyTermination",
                                   pb.NotifyTerminationRequest(trainer_id=self.trainer_id),
                                   timeout=NOTIFY_TERMINATION_TIMEOUT)
        except CheckpointError as error:
            if self._closed.is_set():
                return
            self._exit(f"could not tell the checkpoint sidecar about SIGTERM, so there is nothing to wait for: {error}")
            return
        deadline = (response.deadline.seconds + response.deadline.nanos / 1e9
                    if response.HasField("deadline") else self._default_deadline())
        with self._changed:
            self._termination_deadline = deadline
            self._changed.notify_all()
        when = _utc(deadline)
        self._log(f"the sidecar is taking preemption checkpoint {response.checkpoint_id}; it must be committed by {when}")
        self._arm_watchdog(deadline)

    def _arm_watchdog(self, deadline: float) -> None:
        with self._lock:
            if self._closed.is_set() or (self._watchdog_deadline is not None and self._watchdog_deadline <= deadline):
                return
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._watchdog_deadline = deadline
            self._watchdog = threading.Timer(max(0.0, deadline - time.time()), self._on_deadline, args=(deadline,))
            self._watchdog.daemon = True
            self._watchdog.start()

    def _on_deadline(self, deadline: float) -> None:
        when = _utc(deadline)
        self._exit(f"the preemption deadline {when} passed before the preemption checkpoint was committed")

    def _exit(self, why: str) -> None:
        with self._lock:
            if self._exiting or self._closed.is_set():
                return
            self._exiting = True
        self._log(f"exiting with code {self.preemption_exit_code}: {why}")
        self._exit_process(self.preemption_exit_code)

    def _default_deadline(self) -> float:
        return time.time() + (self._grace_period if self._grace_period > 0 else FALLBACK_GRACE_PERIOD)

    def _time_left(self, dump: DumpRequest) -> float:
        deadline = dump.deadline.timestamp() if dump.deadline else self._default_deadline()
        return max(0.1, deadline - time.time())

    # ------------------------------------------------------------------ internals: calls

    def _unary(self, operation: str, method: str, request, timeout: Optional[float] = None):
        if self._closed.is_set():
            raise CheckpointError(f"{operation}: the checkpoint client is closed", ErrorCode.FAILED_PRECONDITION)
        with self._lock:
            stub = self._stub
        if stub is None:
            raise unreachable(self.socket_path, operation, "not attached")
        timeout = self.rpc_timeout if timeout is None else timeout
        try:
            return getattr(stub, method)(request, timeout=timeout)
        except grpc.RpcError as error:
            raise translate(self.socket_path, operation, error, timeout) from None
        except ValueError as error:  # grpc raises ValueError on a closed channel (a reattach swapped it)
            raise unreachable(self.socket_path, operation, str(error)) from None

    def _log(self, message: str) -> None:
        stream = self._log_stream or sys.stderr
        try:
            stream.write(f"[checkpoint-sdk rank {self.rank}] {message}\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # diagnostics are best effort


class CheckpointWriter:
    """``with client.checkpoint(step) as directory:`` — see :meth:`CheckpointClient.checkpoint`.

    After ``__enter__``: ``dump`` (the DumpRequest: ``checkpoint_id``, ``reason``, ``deadline``), ``directory`` (this
    rank's folder), ``metadata`` (a dict that may still be filled inside the block). After a clean exit: ``files``
    (the reported relative paths) and ``outcome`` (preemption without handle_termination; else None).
    """

    def __init__(self, client: CheckpointClient, step: int, metadata: Dict[str, str], reason: CheckpointReason):
        self.client = client
        self.step = step
        self.metadata = metadata
        self.reason = reason
        self.dump: Optional[DumpRequest] = None
        self.directory: Optional[Path] = None
        self.files: List[str] = []
        self.outcome: Optional[CheckpointOutcome] = None
        self._started = 0.0

    @property
    def checkpoint_id(self) -> str:
        return self.dump.checkpoint_id if self.dump else ""

    def __enter__(self) -> Path:
        self._started = time.monotonic()
        self.dump = self.client._dump_for(self.step, self.reason)
        self.directory = self.dump.rank_dir(self.client.rank)
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            return self._finish(exc_type)
        finally:
            # What the block held the training loop for: checkpoint_every="auto" never checkpoints more often.
            with self.client._lock:
                self.client._step_clock.checkpoint_taken(time.monotonic() - self._started)

    def _finish(self, exc_type) -> bool:
        assert self.dump is not None and self.directory is not None
        if exc_type is not None:
            self.client._log(f"checkpoint {self.dump.checkpoint_id} at step {self.step} not reported: "
                             f"the block raised {exc_type.__name__}")
            return False
        staging = self.dump.staging_dir
        files = []
        for root, dirs, names in os.walk(self.directory):
            dirs.sort()
            for name in sorted(names):
                files.append(Path(root, name).relative_to(staging).as_posix())
        if not files:
            raise CheckpointError(f"checkpoint {self.dump.checkpoint_id}: nothing was written into {self.directory}",
                                  ErrorCode.INVALID_ARGUMENT)
        self.files = files
        self.outcome = self.client.submit(self.dump, self.step, files, self.metadata)
        return False


def connect(**options) -> CheckpointClient:
    """``CheckpointClient(**options)``: connects and attaches, reading the environment for what is not given."""
    return CheckpointClient(**options)

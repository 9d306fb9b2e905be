"""The ranks' collective decisions under torch.distributed: what every rank must answer the same.

Each function here is one collective that every rank of the process group must call at the same point, with its
own inputs; every rank gets the same result (or the same error), so no rank is left waiting in a collective the
others skipped. A function that can fail raises only after its collective, on every rank.

The arithmetic is kept apart from the communication (``encode_*`` / ``decode_*``) so it can be tested without a
process group. Tensors live on the current CUDA device when the backend is NCCL (it has no CPU tensors), else on
the CPU. torch is imported only when a collective runs.
"""

from __future__ import annotations

import math
import re
import secrets
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import CheckpointError, ErrorCode

#: What AttachRequest.world_id accepts (checkpoint.proto).
WORLD_ID_PATTERN = re.compile(r"^[a-z0-9]{1,32}$")
WORLD_ID_MAX = 32
#: Stands for "no deadline" in the urgency reduction: below any negated deadline, so MAX ignores it.
_NO_DEADLINE = -(2 ** 62)
#: Steps in the resume agreement for "no checkpoint" and "could not ask the sidecar".
NO_CHECKPOINT = -1
LOOKUP_FAILED = -2
#: A world id slot that held an invalid value (the first code of the slot).
_INVALID_ID = -1
#: At most this many groups of ranks are spelled out in an error message (a job may have thousands of ranks).
_MAX_GROUPS_NAMED = 16


def _device(dist):
    import torch

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce_max(dist, values: Sequence[int]) -> List[int]:
    import torch

    tensor = torch.tensor(list(values), dtype=torch.int64, device=_device(dist))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [int(v) for v in tensor.tolist()]


def _all_gather(dist, values: Sequence[int]) -> List[List[int]]:
    """Every rank's ``values`` (same length on every rank), indexed by rank."""
    import torch

    device = _device(dist)
    mine = torch.tensor(list(values), dtype=torch.int64, device=device)
    gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    return [[int(v) for v in t.tolist()] for t in gathered]


# ---------------------------------------------------------------------------------------------- naming ranks


def describe_ranks(ranks: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"ranks 0-2, 5"``; ``[3]`` -> ``"rank 3"``."""
    ordered = sorted(set(ranks))
    runs: List[Tuple[int, int]] = []
    for r in ordered:
        if runs and r == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], r)
        else:
            runs.append((r, r))
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return ("rank " if len(ordered) == 1 else "ranks ") + text


def _group_by(values: Sequence[int]) -> Dict[int, List[int]]:
    groups: Dict[int, List[int]] = {}
    for rank, value in enumerate(values):
        groups.setdefault(value, []).append(rank)
    return groups


# ---------------------------------------------------------------------------------------------- urgency


def encode_urgency(urgent: bool, deadline: Optional[float]) -> List[int]:
    """``[urgent, -deadline in ms]``: an element-wise MAX over the ranks gives "any rank urgent" and the earliest
    deadline any rank announced (a later deadline negates to a smaller number)."""
    negated = _NO_DEADLINE if deadline is None else -int(math.floor(deadline * 1000))
    return [1 if urgent else 0, negated]


def decode_urgency(values: Sequence[int]) -> Tuple[bool, Optional[float]]:
    urgent, negated = values
    return bool(urgent), (None if negated <= _NO_DEADLINE else -negated / 1000.0)


def combine_urgency(encoded: Sequence[Sequence[int]]) -> List[int]:
    """What the all_reduce(MAX) computes, for tests and for reading the arithmetic."""
    return [max(column) for column in zip(*encoded)]


def agree_urgency(dist, urgent: bool, deadline: Optional[float]) -> Tuple[bool, Optional[float]]:
    """(any rank urgent, earliest deadline any rank knows or None): one all_reduce(MAX), same answer on every rank.

    ``deadline`` is this rank's own (seconds since the epoch): when its pod's preemption checkpoint must be committed.
    """
    return decode_urgency(_all_reduce_max(dist, encode_urgency(urgent, deadline)))


def agree_step_boundary(dist, urgent: bool, deadline: Optional[float], drill: bool, due: bool = False
                        ) -> Tuple[bool, Optional[float], bool, bool]:
    """:func:`agree_urgency` plus "any rank has a preemption drill's dump pending" and "a periodic checkpoint is due on
    any rank", in the same all_reduce(MAX).

    The drill's push reaches the ranks at slightly different times, and with ``checkpoint_every="auto"`` each rank
    converts the recommended interval into steps with its own measured step time; agreeing here makes every rank write
    the same step (a checkpoint's ranks must report one step) without a second collective per step.
    """
    values = _all_reduce_max(dist, encode_urgency(urgent, deadline) + [1 if drill else 0, 1 if due else 0])
    agreed_urgent, agreed_deadline = decode_urgency(values[:2])
    return agreed_urgent, agreed_deadline, bool(values[2]), bool(values[3])


# ---------------------------------------------------------------------------------------------- world id


def new_world_id() -> str:
    """16 random hex characters: unguessable and, in practice, unique per run."""
    return secrets.token_hex(8)


def valid_world_id(value: str) -> bool:
    return bool(WORLD_ID_PATTERN.match(value))


def _encode_id(value: str) -> List[int]:
    if value and not valid_world_id(value):
        return [_INVALID_ID] + [0] * (WORLD_ID_MAX - 1)
    codes = [ord(c) for c in value]
    return codes + [0] * (WORLD_ID_MAX - len(codes))


def _decode_id(codes: Sequence[int]) -> Optional[str]:
    if codes and codes[0] == _INVALID_ID:
        return None
    return "".join(chr(c) for c in codes if c > 0)


def encode_world_id_proposal(given: str, candidate: str) -> List[int]:
    """What a rank contributes: the id it was given (may be empty) and, from rank 0, the random fallback."""
    return _encode_id(given) + _encode_id(candidate)


def decide_world_id(proposals: Sequence[Sequence[int]], source: str) -> str:
    """The world id every rank takes, from every rank's proposal (indexed by rank); raises on every rank alike.

    Rank 0's given id wins, else its random candidate. A rank that was given an invalid id, or an id other than the
    chosen one, fails the agreement: shards of one world must never be named by two ids.
    """
    given = [_decode_id(p[:WORLD_ID_MAX]) for p in proposals]
    invalid = [rank for rank, value in enumerate(given) if value is None]
    if invalid:
        raise CheckpointError(
            f"the world id ({source}) given to {describe_ranks(invalid)} is not 1 to {WORLD_ID_MAX} characters of "
            f"[a-z0-9]; give every rank the same valid id, or none (the ranks then draw one together)",
            ErrorCode.INVALID_ARGUMENT)
    named = {value for value in given if value}
    if len(named) > 1:
        groups = {}
        for rank, value in enumerate(given):
            groups.setdefault(value or "(none)", []).append(rank)
        listed = "; ".join(f"{describe_ranks(ranks)}: {value}" for value, ranks in sorted(groups.items()))
        raise CheckpointError(
            f"the ranks were given different world ids ({source}): {listed}. Every rank of one run must give the same "
            f"id (or none: the ranks then draw one together)", ErrorCode.INVALID_ARGUMENT)
    if named:
        return named.pop()
    chosen = _decode_id(proposals[0][WORLD_ID_MAX:])
    if not chosen:
        raise CheckpointError("rank 0 proposed no world id; this is a bug in the checkpoint SDK", ErrorCode.INTERNAL)
    return chosen


def agree_world_id(dist, given: str, source: str = "world_id option or CHECKPOINT_WORLD_ID") -> str:
    """One all_gather: every rank takes the same world id, rank 0's random one unless the ranks were given one."""
    candidate = new_world_id() if dist.get_rank() == 0 else ""
    return decide_world_id(_all_gather(dist, encode_world_id_proposal(given, candidate)), source)


# ---------------------------------------------------------------------------------------------- resume


def encode_resume(step: Optional[int], failed: bool) -> List[int]:
    if failed:
        return [LOOKUP_FAILED]
    return [NO_CHECKPOINT if step is None else int(step)]


def resume_disagreement(steps: Sequence[int]) -> Optional[str]:
    """None when every rank got the same answer; else a sentence naming the ranks and what each group got."""
    groups = _group_by(steps)
    if len(groups) == 1 and LOOKUP_FAILED not in groups:
        return None

    def what(step: int) -> str:
        if step == NO_CHECKPOINT:
            return "found no checkpoint"
        if step == LOOKUP_FAILED:
            return "could not ask its sidecar (see that rank's error)"
        return f"got step {step}"

    # Largest groups first: the odd ones out are what a person looks for, but the majority frames them.
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[1][0]))
    parts = [f"{describe_ranks(ranks)} {what(step)}" for step, ranks in ordered[:_MAX_GROUPS_NAMED]]
    if len(ordered) > _MAX_GROUPS_NAMED:
        parts.append(f"and {len(ordered) - _MAX_GROUPS_NAMED} more groups")
    return "; ".join(parts)


def agree_resume(dist, step: Optional[int], error: Optional[CheckpointError]) -> None:
    """One all_gather of the step each rank would resume from; raises on every rank when they differ.

    A rank whose own lookup failed (``error``) re-raises that error; the others raise FAILED_PRECONDITION naming it.
    """
    steps = [values[0] for values in _all_gather(dist, encode_resume(step, error is not None))]
    if error is not None:
        raise error
    disagreement = resume_disagreement(steps)
    if disagreement is None:
        return
    raise CheckpointError(
        f"the ranks would resume from different checkpoints: {disagreement}. Training must not start with ranks at "
        f"different steps, so every rank stops here. Check that every pod's sidecar uses the same "
        f"CHECKPOINT_STORAGE_DIR, POD_NAMESPACE and CHECKPOINT_JOB_NAME, and that the sidecars commit job-wide "
        f"checkpoints (every rank attaches with the world size).", ErrorCode.FAILED_PRECONDITION)

"""PyTorch helpers: save and load everything a bit-identical resume needs. Imports torch only when called.

Files written into a rank's checkpoint directory (the one ``client.checkpoint(step)`` yields):

- ``model.pt``: ``model.state_dict()``
- ``optimizer.pt``: ``optimizer.state_dict()`` (when an optimizer is given)
- ``trainer_state.pt``: the step, the RNG states (torch CPU, CUDA when initialised, numpy when importable,
  python ``random``), ``extra`` (a data loader position, an LR scheduler's state_dict...) and, for replicated
  state, which rank wrote ``model.pt`` / ``optimizer.pt``.

Replicated state is written once. Under DistributedDataParallel every rank holds the same model and optimizer
(DDP broadcasts rank 0's parameters at construction and all-reduces the gradients), so only rank 0 of the
data-parallel group writes ``model.pt`` and ``optimizer.pt``; every rank writes its own ``trainer_state.pt`` (its
RNG states differ). On resume the rank that has the files loads them and broadcasts them to the others, so every
rank must call :func:`load_training_state` (a collective), whichever pod's storage it sees.

Every file loads with ``torch.load(weights_only=True)`` (the default from torch 2.6): checkpoints on shared
storage are untrusted input, and the weights-only unpickler runs no code from them.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .errors import CheckpointError, ErrorCode

MODEL_FILE = "model.pt"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.pt"
#: The folder of a rank's directory that save_distributed_checkpoint writes torch.distributed.checkpoint files into.
DCP_DIR = "dcp"

PathLike = Union[str, Path]

# torch < 2.0's weights-only unpickler has no BINFLOAT opcode (an optimizer's lr fails to load). Where the running
# torch cannot read floats back, they are stored as a float64 scalar tensor under this key (bit-exact) and decoded
# on load; newer torch writes plain floats, so its files are ordinary state dicts.
_FLOAT_KEY = "__checkpoint_sdk_float64__"


@dataclass
class TrainingState:
    step: int
    extra: Dict[str, Any] = field(default_factory=dict)


def _unwrap(model):
    # DistributedDataParallel / DataParallel keep the real module in .module; save that so keys carry no prefix.
    return getattr(model, "module", model)


def _distributed():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _is_ddp(model) -> bool:
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, DistributedDataParallel)


def _global_rank(dist, group, group_rank: int) -> int:
    if group is None:
        return group_rank
    get = getattr(dist, "get_global_rank", None) or dist.distributed_c10d._get_global_rank  # torch < 2.0
    return get(group, group_rank)


_floats_load = None


def _weights_only_reads_floats() -> bool:
    global _floats_load
    if _floats_load is None:
        import torch

        buffer = io.BytesIO()
        torch.save(0.5, buffer)
        buffer.seek(0)
        try:
            _floats_load = torch.load(buffer, weights_only=True) == 0.5
        except pickle.UnpicklingError:
            _floats_load = False
    return _floats_load


_DESCEND = object()


def _map_tree(value: Any, transform) -> Any:
    """Rebuilds nested dicts (OrderedDicts keep a state_dict's ``_metadata``), lists and tuples; ``transform`` returns
    a node's replacement, or _DESCEND to keep the node and map its children."""
    replaced = transform(value)
    if replaced is not _DESCEND:
        return replaced
    if isinstance(value, dict):
        mapped = type(value)((k, _map_tree(v, transform)) for k, v in value.items())
        if hasattr(value, "_metadata"):
            mapped._metadata = value._metadata
        return mapped
    if type(value) in (list, tuple):
        return type(value)(_map_tree(v, transform) for v in value)
    return value


def _encode(value: Any) -> Any:
    import torch

    return _map_tree(value, lambda v: {_FLOAT_KEY: torch.tensor(v, dtype=torch.float64)} if type(v) is float
                     else _DESCEND)


def _decode(value: Any) -> Any:
    def transform(v):
        if isinstance(v, dict) and len(v) == 1 and _FLOAT_KEY in v:
            return float(v[_FLOAT_KEY].item())
        return _DESCEND

    return _map_tree(value, transform)


def _save(obj: Any, path: Path) -> None:
    import torch

    torch.save(obj if _weights_only_reads_floats() else _encode(obj), path)


def _load(path: Path, map_location, weights_only: bool) -> Any:
    import torch

    try:
        obj = torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} holds objects the weights-only unpickler refuses ({error}). Checkpoint storage is untrusted "
            "input: keep `extra` to tensors, numbers, strings, lists and dicts; pass weights_only=False only for "
            "files from a trusted source (e.g. written by checkpoint_sdk before 0.2.0).",
            ErrorCode.DATA_LOSS) from None
    return _decode(obj)


def rng_states() -> Dict[str, Any]:
    """The RNG states, as plain types and tensors (what the weights-only unpickler accepts)."""
    import torch

    states: Dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    numpy = sys.modules.get("numpy")
    if numpy is None:
        try:
            import numpy  # noqa: F811
        except ImportError:
            numpy = None
    if numpy is not None:
        kind, keys, position, has_gauss, cached_gaussian = numpy.random.get_state()
        # The MT19937 key is a uint32 array (numpy arrays are not weights-only loadable): kept as an int64 tensor.
        states["numpy"] = {"kind": kind, "keys": torch.from_numpy(keys.astype(numpy.int64)), "pos": int(position),
                           "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}
    return states


def set_rng_states(states: Dict[str, Any]) -> None:
    import torch

    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "numpy" in states:
        import numpy

        state = states["numpy"]
        if isinstance(state, dict):
            numpy.random.set_state((state["kind"], state["keys"].numpy().astype(numpy.uint32), state["pos"],
                                    state["has_gauss"], state["cached_gaussian"]))
        else:  # written by checkpoint_sdk < 0.2.0: numpy's own tuple
            numpy.random.set_state(state)


def save_training_state(directory: PathLike, model, optimizer=None, step: int = 0,
                        extra: Optional[Dict[str, Any]] = None, *, replicated: Optional[bool] = None,
                        group=None) -> List[Path]:
    """Writes model, optimizer, step and RNG states into ``directory`` (this rank's); returns the files written.

    ``replicated``: whether model and optimizer are the same on every rank of ``group`` (default: the whole world),
    so that only the group's rank 0 writes them. ``None`` (default): True when ``model`` is a
    DistributedDataParallel and torch.distributed is initialised. Pass False for state that differs per rank
    (ZeroRedundancyOptimizer, model parallelism; or use :func:`save_distributed_checkpoint` for sharded state).
    With several data-parallel replicas of a model-parallel shard, pass each replica group as ``group``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dist = _distributed()
    if replicated is None:
        replicated = dist is not None and _is_ddp(model)
    source: Optional[int] = None
    if replicated and dist is not None and dist.get_world_size(group) > 1:
        source = _global_rank(dist, group, 0)
    written: List[Path] = []
    if source is None or dist.get_rank() == source:
        written.append(directory / MODEL_FILE)
        _save(_unwrap(model).state_dict(), written[-1])
        if optimizer is not None:
            written.append(directory / OPTIMIZER_FILE)
            _save(optimizer.state_dict(), written[-1])
    written.append(directory / STATE_FILE)
    _save({"step": int(step), "rng": rng_states(), "extra": dict(extra or {}), "replicated_from": source,
           "has_optimizer": optimizer is not None}, written[-1])
    return written


def load_training_state(directory: PathLike, model, optimizer=None, map_location="cpu",
                        restore_rng: bool = True, *, weights_only: bool = True, group=None) -> TrainingState:
    """Loads what :func:`save_training_state` wrote (into ``model`` / ``optimizer`` in place); returns step and extra.

    When the checkpoint's model and optimizer were written once for the replicated group, this is a collective:
    call it on every rank of that ``group`` (the one given when saving); the rank that wrote them loads them
    and broadcasts them (structure with ``broadcast_object_list``, then each tensor with ``broadcast``).
    ``weights_only``: load with the weights-only unpickler (default; the storage is untrusted input).
    """
    directory = Path(directory)
    state = _load(directory / STATE_FILE, "cpu", weights_only)
    source = state.get("replicated_from")
    dist = _distributed()
    if source is None:
        _unwrap(model).load_state_dict(_load(directory / MODEL_FILE, map_location, weights_only))
        if optimizer is not None:
            optimizer.load_state_dict(_load(directory / OPTIMIZER_FILE, map_location, weights_only))
    elif dist is None:
        if not (directory / MODEL_FILE).is_file():
            raise CheckpointError(
                f"{directory} holds no {MODEL_FILE}: rank {source} wrote the replicated model and optimizer once for "
                f"every rank. Load under torch.distributed (every rank calls load_training_state) or load rank "
                f"{source}'s directory.", ErrorCode.FAILED_PRECONDITION)
        _unwrap(model).load_state_dict(_load(directory / MODEL_FILE, map_location, weights_only))
        if optimizer is not None:
            optimizer.load_state_dict(_load(directory / OPTIMIZER_FILE, map_location, weights_only))
    else:
        model_state, optimizer_state = _broadcast_replicated(dist, group, int(source), directory, map_location,
                                                             weights_only, optimizer is not None)
        _unwrap(model).load_state_dict(model_state)
        if optimizer is not None:
            optimizer.load_state_dict(optimizer_state)
    if restore_rng:
        set_rng_states(state["rng"])
    return TrainingState(int(state["step"]), dict(state.get("extra") or {}))


class _TensorSlot:
    """Stands for the i-th tensor of a state dict while its structure travels by broadcast_object_list."""

    def __init__(self, index: int, dtype, shape) -> None:
        self.index, self.dtype, self.shape = index, dtype, tuple(shape)


def _split(value: Any, tensors: list) -> Any:
    """``value`` with each tensor replaced by a _TensorSlot; the tensors appended to ``tensors`` in slot order."""
    import torch

    def transform(v):
        if isinstance(v, torch.Tensor):
            tensors.append(v)
            return _TensorSlot(len(tensors) - 1, v.dtype, v.shape)
        return _DESCEND

    return _map_tree(value, transform)


def _join(value: Any, tensors: list) -> Any:
    return _map_tree(value, lambda v: tensors[v.index] if isinstance(v, _TensorSlot) else _DESCEND)


def _broadcast_replicated(dist, group, source: int, directory: Path, map_location, weights_only: bool,
                          want_optimizer: bool):
    import torch

    is_source = dist.get_rank() == source
    header: List[Any] = [None]
    tensors: list = []
    if is_source:
        try:
            model_state = _load(directory / MODEL_FILE, "cpu", weights_only)
            optimizer_state = _load(directory / OPTIMIZER_FILE, "cpu", weights_only) if want_optimizer else None
            header[0] = {"model": _split(model_state, tensors), "optimizer": _split(optimizer_state, tensors)}
        except (OSError, CheckpointError, RuntimeError) as error:
            # Told to every rank, so none waits for tensors that will never come.
            header[0] = {"error": f"rank {source} could not load the replicated state from {directory}: {error}"}
    dist.broadcast_object_list(header, src=source, group=group)
    if "error" in header[0]:
        raise CheckpointError(header[0]["error"], ErrorCode.DATA_LOSS)
    slots: List[_TensorSlot] = []
    _collect_slots(header[0], slots)
    slots.sort(key=lambda s: s.index)
    # NCCL moves only CUDA tensors; gloo and MPI take CPU ones.
    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend(group) == "nccl" else torch.device("cpu"))
    received = []
    for slot in slots:
        if is_source:
            tensor = tensors[slot.index].to(device).contiguous()
        else:
            tensor = torch.empty(slot.shape, dtype=slot.dtype, device=device)
        dist.broadcast(tensor, src=source, group=group)
        movable = isinstance(map_location, (str, torch.device))  # a dict or function map_location: left as received
        received.append(tensor.to(map_location) if movable else tensor)
    model_state = _join(header[0]["model"], received)
    optimizer_state = _join(header[0]["optimizer"], received)
    if want_optimizer and optimizer_state is None:
        raise CheckpointError(f"the checkpoint in {directory} has no optimizer state (saved without an optimizer)",
                              ErrorCode.FAILED_PRECONDITION)
    return model_state, optimizer_state


def _collect_slots(value: Any, slots: list) -> None:
    _map_tree(value, lambda v: slots.append(v) if isinstance(v, _TensorSlot) else _DESCEND)


# ---------------------------------------------------------------------------- torch.distributed.checkpoint


def distributed_checkpoint_support() -> Optional[str]:
    """None when torch.distributed.checkpoint is usable here; else why not (a sentence)."""
    try:
        import torch.distributed.checkpoint as dcp  # noqa: F401
    except Exception as error:  # torch < 2.0 has no such module; 1.13's _shard.checkpoint breaks on Python 3.11
        import torch

        return f"torch {torch.__version__} has no usable torch.distributed.checkpoint ({type(error).__name__}: {error})"
    return None


def save_distributed_checkpoint(directory: PathLike, state_dict: Dict[str, Any], *, process_group=None) -> List[Path]:
    """Saves a (sharded) state dict with torch.distributed.checkpoint into ``directory/dcp`` (this rank's directory).

    A collective: every rank of ``process_group`` calls it with its own directory. Each rank writes the data of
    the items it owns (``__<rank>_<n>.distcp``); the coordinator (rank 0) also writes ``.metadata``. The files are
    this rank's: ``client.checkpoint(step)`` reports them with the rest of the directory.
    """
    reason = distributed_checkpoint_support()
    if reason is not None:
        raise CheckpointError(reason, ErrorCode.FAILED_PRECONDITION)
    import torch.distributed.checkpoint as dcp

    target = Path(directory) / DCP_DIR
    target.mkdir(parents=True, exist_ok=True)
    writer = dcp.FileSystemWriter(str(target))
    if hasattr(dcp, "save"):  # torch >= 2.2
        dcp.save(state_dict, storage_writer=writer, process_group=process_group)
    else:
        dcp.save_state_dict(state_dict, storage_writer=writer, process_group=process_group)
    return sorted(p for p in target.rglob("*") if p.is_file())


def rank_directories(checkpoint_directory: PathLike) -> Dict[int, Path]:
    """Every rank's directory of a committed checkpoint, from ``LatestCheckpoint.directory`` (this rank's shard).

    A job-wide checkpoint (format 2) lists its shards in ``manifest.json`` next to the shard directories (README,
    "Storage layout"); a single-pod one has every ``rank-<r>/`` under the one directory.
    """
    from .results import rank_dir_name

    directory = Path(checkpoint_directory)
    manifest_path = directory.parent / "manifest.json"
    found: Dict[int, Path] = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        for shard in manifest.get("shards") or []:
            shard_dir = directory.parent / str(shard["directory"])
            if shard_dir.parent != directory.parent or shard_dir.name in ("", ".", ".."):
                raise CheckpointError(f"{manifest_path} names a shard directory outside the step: "
                                      f"{str(shard['directory'])[:256]!r}", ErrorCode.DATA_LOSS)
            for entry in shard.get("ranks") or []:
                rank = int(entry["rank"])
                found[rank] = shard_dir / rank_dir_name(rank)
    if not found:
        for child in sorted(directory.glob("rank-*")):
            suffix = child.name[len("rank-"):]
            if child.is_dir() and suffix.isdigit():
                found[int(suffix)] = child
    return found


def load_distributed_checkpoint(checkpoint_directory: PathLike, state_dict: Dict[str, Any], *,
                                process_group=None) -> None:
    """Loads what :func:`save_distributed_checkpoint` wrote, in place into ``state_dict`` (a collective).

    ``checkpoint_directory`` is ``LatestCheckpoint.directory``. The ranks' files lie in different rank (and, for
    a job-wide checkpoint, pod) directories; they are gathered, by symbolic link, into one private directory that
    torch.distributed.checkpoint reads (its file names are unique per rank), so a different world size may load it.
    """
    reason = distributed_checkpoint_support()
    if reason is not None:
        raise CheckpointError(reason, ErrorCode.FAILED_PRECONDITION)
    import torch.distributed.checkpoint as dcp

    view = Path(tempfile.mkdtemp(prefix="checkpoint-sdk-dcp-"))
    try:
        for rank, rank_dir in sorted(rank_directories(checkpoint_directory).items()):
            for path in sorted((rank_dir / DCP_DIR).glob("*")):
                if path.is_file() and not (view / path.name).exists():
                    os.symlink(path.resolve(), view / path.name)
        if not (view / ".metadata").exists():
            raise CheckpointError(f"no torch.distributed.checkpoint .metadata under any rank of {checkpoint_directory}",
                                  ErrorCode.DATA_LOSS)
        reader = dcp.FileSystemReader(str(view))
        if hasattr(dcp, "load"):  # torch >= 2.2
            dcp.load(state_dict, storage_reader=reader, process_group=process_group)
        else:
            dcp.load_state_dict(state_dict, storage_reader=reader, process_group=process_group)
    finally:
        shutil.rmtree(view, ignore_errors=True)


def state_sha256(model, optimizer=None) -> str:
    """A deterministic SHA-256 over the model's parameters and buffers and the optimizer's state and hyperparameters."""
    import hashlib

    import torch

    digest = hashlib.sha256()

    def feed(name: str, value: Any) -> None:
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=repr):
                feed(f"{name}.{key}", value[key])
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                feed(f"{name}[{i}]", item)
        else:
            digest.update(repr(value).encode())

    feed("model", dict(_unwrap(model).state_dict()))
    if optimizer is not None:
        feed("optimizer", optimizer.state_dict())
    return digest.hexdigest()

"""PyTorch helpers: save and load everything a bit-identical resume needs. Imports torch only when called.

Files written into a checkpoint directory (the one ``client.checkpoint(step)`` yields):

- ``model.pt``: ``model.state_dict()``
- ``optimizer.pt``: ``optimizer.state_dict()`` (when an optimizer is given)
- ``trainer_state.pt``: the step, the RNG states (torch CPU, CUDA when initialised, numpy when importable,
  python ``random``) and ``extra`` (anything picklable: a data loader position, an LR scheduler's state_dict...)
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

MODEL_FILE = "model.pt"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.pt"

PathLike = Union[str, Path]


@dataclass
class TrainingState:
    step: int
    extra: Dict[str, Any] = field(default_factory=dict)


def _unwrap(model):
    # DistributedDataParallel / DataParallel keep the real module in .module; save that so keys carry no prefix.
    return getattr(model, "module", model)


def rng_states() -> Dict[str, Any]:
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
        states["numpy"] = numpy.random.get_state()
    return states


def set_rng_states(states: Dict[str, Any]) -> None:
    import torch

    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "numpy" in states:
        import numpy

        numpy.random.set_state(states["numpy"])


def save_training_state(directory: PathLike, model, optimizer=None, step: int = 0,
                        extra: Optional[Dict[str, Any]] = None) -> List[Path]:
    """Writes model, optimizer, step and RNG states into ``directory``; returns the files written."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / MODEL_FILE]
    torch.save(_unwrap(model).state_dict(), written[0])
    if optimizer is not None:
        written.append(directory / OPTIMIZER_FILE)
        torch.save(optimizer.state_dict(), written[-1])
    written.append(directory / STATE_FILE)
    torch.save({"step": int(step), "rng": rng_states(), "extra": dict(extra or {})}, written[-1])
    return written


def load_training_state(directory: PathLike, model, optimizer=None, map_location="cpu",
                        restore_rng: bool = True) -> TrainingState:
    """Loads what :func:`save_training_state` wrote (into ``model`` / ``optimizer`` in place); returns step and extra."""
    import torch

    directory = Path(directory)
    _unwrap(model).load_state_dict(torch.load(directory / MODEL_FILE, map_location=map_location))
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(directory / OPTIMIZER_FILE, map_location=map_location))
    state = torch.load(directory / STATE_FILE, map_location="cpu")
    if restore_rng:
        set_rng_states(state["rng"])
    return TrainingState(int(state["step"]), dict(state.get("extra") or {}))


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

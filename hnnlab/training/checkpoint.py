"""Load a trained model back from a Lightning checkpoint written by :class:`DynamicsModule`."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hnnlab.errors import FileFormatError


class CheckpointError(FileFormatError):
    """A checkpoint that is missing, unreadable, or was not written by hnnlab."""


@dataclass
class LoadedCheckpoint:
    model: nn.Module
    model_description: dict[str, Any]
    integrator: dict[str, Any]
    path: str
    epoch: int
    global_step: int


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model stored in a checkpoint (its class and constructor arguments) and load its weights."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise CheckpointError(f"checkpoint {path!r} cannot be read: {type(exc).__name__}: {exc}") from None
    info = ckpt.get("hnnlab") if isinstance(ckpt, dict) else None
    if not info or "model" not in info or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {path!r} was not written by hnnlab (no 'hnnlab' model description)")
    description = info["model"]
    class_path = description.get("class_path") or description.get("class")
    module_name, _, attr = class_path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {path!r}: cannot import model class {class_path!r}: {exc}") from None
    init_args = description.get("init_args") or {}
    try:
        model = cls(**init_args)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"checkpoint {path!r}: cannot rebuild {class_path} from {init_args}: {type(exc).__name__}: {exc}"
        ) from None
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtypes.pop())  # keep a float64-trained model in float64
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path!r}: weights do not fit {class_path}: {exc}") from None
    model.eval()
    return LoadedCheckpoint(
        model=model,
        model_description=description,
        integrator=info.get("integrator") or {},
        path=path,
        epoch=int(ckpt.get("epoch", -1)),
        global_step=int(ckpt.get("global_step", -1)),
    )

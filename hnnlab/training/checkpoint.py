"""What a checkpoint holds to rebuild its model, and loading a model back from a Lightning checkpoint.

:class:`~hnnlab.training.module.DynamicsModule` writes ``checkpoint["hnnlab"] = {**model_entry(model),
"integrator": ..., "wandb_run_id": ...}``; :func:`load_checkpoint` rebuilds the model from it with
:func:`rebuild_model` and loads the weights of ``checkpoint["state_dict"]`` over it, so that the reloaded
model gives the trained model's outputs bit for bit.

A model is rebuilt as ``type(model)(**constructor arguments)``. Plain arguments (widths, names, numbers)
are read from ``model.describe()["init_args"]``. A network injected with ``net=`` (or ``kinetic_net=``,
``mass_net=``, ...: any constructor argument that is, or holds, an ``nn.Module``) is stored under
``checkpoint["hnnlab"]["modules"][argument]`` in one of two forms:

- a recipe ``{"class_path": "hnnlab.models.mlp:MLP", "init_args": {...}}`` for an hnnlab :class:`MLP`,
  whatever built it (Python or a ``class_path``/``init_args`` config of ``hnnlab fit``): hnnlab's own
  constructor is a stable interface, so the checkpoint survives changes to the class's internals;
- otherwise the module itself, pickled whole (``{"class_path": ..., "object": module}``): a user's own
  architecture round-trips with no registration and no constructor convention, including state that
  is not in the state dict (non-persistent buffers, plain attributes). Its class must be importable
  where the checkpoint is loaded (a module-level class, not one defined inside a function); checkpoints
  are read with ``torch.load(weights_only=False)``, so load only checkpoints you trust. Its tensors
  share storage with the state dict, so ``torch.save`` writes them once.

A module that cannot be pickled (a class defined inside a function, a lambda attribute) does not stop
training: the checkpoint records why (``{"class_path": ..., "unstorable": reason}``), a warning says so
at save time, and :func:`load_checkpoint` refuses with that reason.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hnnlab.errors import FileFormatError
from hnnlab.models.base import AbstractModel
from hnnlab.models.mlp import MLP, module_path


class CheckpointError(FileFormatError):
    """A checkpoint that is missing, unreadable, or was not written by hnnlab."""


@dataclass
class LoadedCheckpoint:
    model: AbstractModel
    model_description: dict[str, Any]
    integrator: dict[str, Any]
    path: str
    epoch: int
    global_step: int


def model_entry(model: AbstractModel) -> dict[str, Any]:
    """``{"model": model.describe(), "modules": {argument: stored module}}``: what a checkpoint needs
    (besides the state dict) to rebuild ``model``; the module forms are described in this module's
    docstring. Warns when an injected module cannot be stored."""
    modules: dict[str, dict[str, Any]] = {}
    for name, value in model.constructor_arguments().items():
        if not _holds_module(value):
            continue
        class_path = module_path(value) if isinstance(value, nn.Module) else type(value).__qualname__
        if type(value) is MLP:  # exactly hnnlab's MLP: a subclass may take other arguments
            modules[name] = {"class_path": class_path, "init_args": value.init_args()}
            continue
        reason = _unpicklable(value)
        if reason is None:
            modules[name] = {"class_path": class_path, "object": value}
        else:
            modules[name] = {"class_path": class_path, "unstorable": reason}
            warnings.warn(
                f"the checkpoint cannot store {type(model).__name__}'s {name}= ({class_path}): {reason}. Its "
                "weights are saved, but load_checkpoint cannot rebuild the model; define the class at module "
                "level (picklable) to make the checkpoint loadable",
                stacklevel=2,
            )
    return {"model": model.describe(), "modules": modules}


def rebuild_model(entry: Mapping[str, Any], *, source: str = "checkpoint") -> AbstractModel:
    """The model of a :func:`model_entry` (its class and constructor arguments), with the weights it
    had when built: load the state dict over it. ``source`` names the file in error messages."""
    description = entry["model"]
    class_path = description.get("class_path") or description.get("class")
    cls = _import(class_path, source, "model class")
    init_args = dict(description.get("init_args") or {})
    for name, stored in (entry.get("modules") or {}).items():
        init_args[name] = _rebuild_module(name, stored, source)
    try:
        return cls(**init_args)
    except Exception as exc:  # noqa: BLE001 - any constructor failure is a checkpoint that does not fit
        shown = {k: v if not _holds_module(v) else module_path(v) for k, v in init_args.items()}
        raise CheckpointError(
            f"{source}: cannot rebuild {class_path} from {shown}: {type(exc).__name__}: {exc}"
        ) from None


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model stored in a checkpoint (:func:`rebuild_model`) and load its weights; the model
    is returned in eval mode, in the dtype of its stored weights."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        hint = (
            " (a network stored whole in the checkpoint needs its class importable here)"
            if isinstance(exc, AttributeError | ImportError) else ""
        )
        raise CheckpointError(f"checkpoint {path!r} cannot be read: {type(exc).__name__}: {exc}{hint}") from None
    info = ckpt.get("hnnlab") if isinstance(ckpt, dict) else None
    if not info or "model" not in info or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {path!r} was not written by hnnlab (no 'hnnlab' model description)")
    model = rebuild_model(info, source=f"checkpoint {path!r}")
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtypes.pop())  # keep a float64-trained model in float64
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path!r}: weights do not fit {info['model'].get('class_path')}: {exc}"
        ) from None
    model.eval()
    return LoadedCheckpoint(
        model=model,
        model_description=info["model"],
        integrator=info.get("integrator") or {},
        path=path,
        epoch=int(ckpt.get("epoch", -1)),
        global_step=int(ckpt.get("global_step", -1)),
    )


# --------------------------------------------------------------------------------------------------


def _holds_module(value: Any) -> bool:
    if isinstance(value, nn.Module):
        return True
    if isinstance(value, list | tuple):
        return any(_holds_module(v) for v in value)
    if isinstance(value, Mapping):
        return any(_holds_module(v) for v in value.values())
    return False


class _StructurePickler(pickle.Pickler):
    """Pickles everything but tensor storages: whether an object pickles, without copying its weights."""

    def persistent_id(self, obj: Any) -> str | None:
        return "storage" if isinstance(obj, torch.storage.TypedStorage | torch.UntypedStorage) else None


def _unpicklable(value: Any) -> str | None:
    """Why ``value`` cannot be pickled, or ``None`` if it can."""
    try:
        _StructurePickler(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    except Exception as exc:  # noqa: BLE001 - pickle raises PicklingError, AttributeError, TypeError, ...
        return f"{type(exc).__name__}: {exc}"
    return None


def _rebuild_module(name: str, stored: Mapping[str, Any], source: str) -> Any:
    class_path = stored.get("class_path", "?")
    if "object" in stored:
        return stored["object"]
    if "init_args" in stored:
        cls = _import(class_path, source, f"class of {name}=")
        try:
            return cls(**stored["init_args"])
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"{source}: cannot rebuild {name}= ({class_path}) from {stored['init_args']}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    reason = stored.get("unstorable", "the checkpoint does not store it")
    raise CheckpointError(
        f"{source}: the model's {name}= ({class_path}) was not stored when the checkpoint was written ({reason}); "
        "define the module's class at module level so that it can be pickled, and save again"
    )


def _import(class_path: Any, source: str, what: str) -> Any:
    module_name, _, attr = str(class_path).partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise CheckpointError(f"{source}: cannot import {what} {class_path!r}: {exc}") from None
    return obj

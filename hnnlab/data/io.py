"""Reading dataset files: open with clear errors, metadata, the analytic system, whole-file loads.

Every failure raises :class:`~hnnlab.data.schema.DatasetError` naming the file (and the field), never
a traceback from inside h5py.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hnnlab.data.schema import NOISY_FIELD, ROOT_ATTRS, SPLITS, DatasetError, _attr, _short, validate
from hnnlab.errors import HnnlabError
from hnnlab.systems.base import AbstractSystem


def open_file(path: str | os.PathLike) -> Any:
    """Open ``path`` read-only as an ``h5py.File``; raise :class:`DatasetError` if it is missing,
    not a file, not HDF5, or damaged."""
    import h5py

    p = Path(path)
    if not p.exists():
        raise DatasetError(f"dataset file {str(p)!r} does not exist")
    if not p.is_file():
        raise DatasetError(f"dataset path {str(p)!r} is not a file")
    if p.stat().st_size == 0:
        raise DatasetError(f"dataset file {str(p)!r} is empty (0 bytes); it is not an HDF5 file")
    try:
        is_hdf5 = h5py.is_hdf5(p)
    except OSError as exc:
        raise DatasetError(f"dataset file {str(p)!r} cannot be read: {_short(exc)}") from None
    if not is_hdf5:
        raise DatasetError(f"dataset file {str(p)!r} is not an HDF5 file (no HDF5 signature)")
    try:
        return h5py.File(p, "r")
    except (OSError, RuntimeError) as exc:
        raise DatasetError(
            f"dataset file {str(p)!r} is corrupted or truncated (HDF5 open failed: {_short(exc)})"
        ) from None


def read_metadata(source: str | os.PathLike | Any) -> dict[str, Any]:
    """Root attributes as a dict, JSON attributes decoded; ``source`` is a path or an open file."""
    if isinstance(source, str | os.PathLike):
        with open_file(source) as file:
            return read_metadata(file)
    name = getattr(source, "filename", "<file>")
    meta: dict[str, Any] = {}
    try:
        for key, value in source.attrs.items():
            value = _attr(source.attrs, key)
            if key in ROOT_ATTRS and ROOT_ATTRS[key][1] and isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{name}: root attribute {key!r} is not valid JSON ({exc.msg})") from None
            meta[key] = value
    except (OSError, RuntimeError) as exc:
        raise DatasetError(f"{name}: the root attributes cannot be read ({_short(exc)})") from None
    meta["splits"] = [s for s in SPLITS if s in source]
    return meta


def rebuild_system(metadata: dict[str, Any]) -> AbstractSystem:
    """The analytic system that made a dataset, from its metadata (``get_system(class, **params)``)."""
    from hnnlab.systems.registry import system_from_description

    system = metadata.get("system")
    if isinstance(system, str):
        system = json.loads(system)
    if not isinstance(system, dict) or "class" not in system:
        raise DatasetError("dataset metadata has no 'system' description with a 'class' entry")
    try:
        return system_from_description(system)
    except HnnlabError as exc:
        params = dict(system.get("params", {}))
        raise DatasetError(f"system {system['class']!r} with parameters {params} cannot be rebuilt: {exc}") from None


@dataclass(frozen=True)
class SplitData:
    """One split of a dataset, in memory.

    Attributes:
        t: saved times ``(n_times,)``.
        state: observed states ``(n_traj, n_times, 2 * dof)`` (noisy when the dataset has noise).
        dxdt: exact time derivatives at the clean states, same shape.
        energy: energy of the clean states ``(n_traj, n_times)``.
        clean_state: the clean states when noise was added, else ``None`` (then ``state`` is clean).
        dt: time between saved states (0 for a single time).
    """

    t: Tensor
    state: Tensor
    dxdt: Tensor
    energy: Tensor
    clean_state: Tensor | None
    dt: float

    @property
    def n_traj(self) -> int:
        return self.state.shape[0]

    @property
    def n_times(self) -> int:
        return self.state.shape[1]

    @property
    def clean(self) -> Tensor:
        return self.state if self.clean_state is None else self.clean_state


@dataclass(frozen=True)
class LoadedDataset:
    """A whole dataset file in memory: ``metadata`` (root attributes) and ``splits`` by name."""

    metadata: dict[str, Any]
    splits: dict[str, SplitData]

    @property
    def system(self) -> AbstractSystem:
        return rebuild_system(self.metadata)


def load_dataset(path: str | os.PathLike, *, check: bool = True) -> LoadedDataset:
    """Read a dataset file fully into memory.

    Args:
        check: validate the file against the spec first (structure, shapes, finite values, energy).

    Raises:
        DatasetError: the file is missing, unreadable or invalid; the message names the file and the
            first problem (``hnnlab data check FILE`` lists them all).
    """
    if check:
        raise_if_invalid(path)
    with open_file(path) as file:
        meta = read_metadata(file)
        try:
            splits = {name: read_split(file[name]) for name in meta["splits"]}
        except (OSError, RuntimeError, KeyError) as exc:
            raise DatasetError(f"{path}: the file is corrupted or truncated ({_short(exc)})") from None
    return LoadedDataset(metadata=meta, splits=splits)


def read_split(group: Any) -> SplitData:
    """Read one split group into tensors."""
    clean = torch.from_numpy(group[NOISY_FIELD][()]) if NOISY_FIELD in group else None
    return SplitData(
        t=torch.from_numpy(group["t"][()]),
        state=torch.from_numpy(group["state"][()]),
        dxdt=torch.from_numpy(group["dxdt"][()]),
        energy=torch.from_numpy(group["energy"][()]),
        clean_state=clean,
        dt=float(group.attrs.get("dt", 0.0)),
    )


def raise_if_invalid(path: str | os.PathLike, *, check_values: bool = True) -> None:
    """Raise :class:`DatasetError` with the first problem (and a count of the others) if any."""
    problems = validate(path, check_values=check_values)
    if problems:
        more = f" (and {len(problems) - 1} more; run `hnnlab data check {path}`)" if len(problems) > 1 else ""
        raise DatasetError(problems[0] + more)

"""Reading dataset files: metadata, the analytic system, whole-file loads.

Every failure raises :class:`~hnnlab.data.schema.DatasetError` naming the file (and the field), never
a traceback from inside h5py. Files are opened with :func:`~hnnlab.data.schema.open_file`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hnnlab._hdf5 import TrajectoryArrays, first_line, read_attr, read_json_attr
from hnnlab.data.schema import (
    CLEAN_FIELD,
    INPUTS_FIELD,
    JSON_ATTRS,
    OBSERVED_FIELD,
    OBSERVED_T_FIELD,
    SPLITS,
    DatasetError,
    validate,
)
from hnnlab.data.schema import open_file as open_file  # public here: hnnlab.data.io.open_file
from hnnlab.systems.base import AbstractSystem
from hnnlab.systems.registry import rebuild_system


def read_metadata(source: str | os.PathLike | Any) -> dict[str, Any]:
    """Root attributes as a dict, JSON attributes decoded; ``source`` is a path or an open file."""
    if isinstance(source, str | os.PathLike):
        with open_file(source) as file:
            return read_metadata(file)
    name = getattr(source, "filename", "<file>")
    meta: dict[str, Any] = {}
    try:
        for key in source.attrs:
            value = read_attr(source, key)
            if key in JSON_ATTRS and isinstance(value, str):
                value = read_json_attr(source, key, where=name, error=DatasetError)
            meta[key] = value
    except (OSError, RuntimeError) as exc:
        raise DatasetError(f"{name}: the root attributes cannot be read ({first_line(exc)})") from None
    meta["splits"] = [s for s in SPLITS if s in source]
    return meta


@dataclass(frozen=True)
class SplitData(TrajectoryArrays):
    """One split of a dataset, in memory.

    Attributes:
        t: saved times ``(n_times,)``.
        state: observed states ``(n_traj, n_times, 2 * dof)`` (noisy when the dataset has noise).
        dxdt: exact time derivatives at the clean states, same shape.
        energy: energy of the clean states ``(n_traj, n_times)``.
        clean_state: the clean states when noise was added, else ``None`` (then ``state`` is clean).
        dt: time between saved states (0 for a single time).
        inputs: the inputs ``u`` on the time grid ``(n_traj, n_times, n_inputs)`` (format version 2, files with the
            root attribute ``inputs``), else ``None``.
        observed: observations ``(n_traj, n_obs, n_obs_dims)`` (files with the root attribute ``observation``),
            else ``None``; ``observed_t`` their times ``(n_obs,)``, ``t[::every]``.
    """

    t: Tensor
    state: Tensor
    dxdt: Tensor
    energy: Tensor
    clean_state: Tensor | None
    dt: float
    inputs: Tensor | None = None
    observed: Tensor | None = None
    observed_t: Tensor | None = None

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
        """The analytic system that made the data, rebuilt from ``metadata["system"]``."""
        return rebuild_system(self.metadata.get("system", {}), source="dataset metadata", error=DatasetError)


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
            raise DatasetError(f"{path}: the file is corrupted or truncated ({first_line(exc)})") from None
    return LoadedDataset(metadata=meta, splits=splits)


def read_split(group: Any) -> SplitData:
    """Read one split group into tensors."""
    def optional(field: str) -> Tensor | None:
        return torch.from_numpy(group[field][()]) if field in group else None

    clean = optional(CLEAN_FIELD)
    return SplitData(
        t=torch.from_numpy(group["t"][()]),
        state=torch.from_numpy(group["state"][()]),
        dxdt=torch.from_numpy(group["dxdt"][()]),
        energy=torch.from_numpy(group["energy"][()]),
        clean_state=clean,
        dt=float(group.attrs.get("dt", 0.0)),
        inputs=optional(INPUTS_FIELD),
        observed=optional(OBSERVED_FIELD),
        observed_t=optional(OBSERVED_T_FIELD),
    )


def raise_if_invalid(path: str | os.PathLike, *, check_values: bool = True) -> None:
    """Raise :class:`DatasetError` with the first problem (and a count of the others) if any."""
    problems = validate(path, check_values=check_values)
    if problems:
        more = f" (and {len(problems) - 1} more; run `hnnlab data check {path}`)" if len(problems) > 1 else ""
        raise DatasetError(problems[0] + more)

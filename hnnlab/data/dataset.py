"""A PyTorch Dataset over one split of a dataset file: (state, derivative) pairs or windows of states.

Items are dicts of tensors:

- ``mode="pairs"``: ``{"x": (2 * dof,), "dxdt": (2 * dof,), "t": ()}``, one per saved state of every trajectory
  (with its time, which a time-dependent model needs);
- ``mode="windows"``: ``{"states": (window + 1, 2 * dof), "t": (window + 1,)}``, consecutive saved
  states of one trajectory, one per start time; with ``with_dxdt=True`` also ``"dxdt"`` ``(window + 1, 2 * dof)``,
  the exact derivatives at those states (for a rollout loss with a derivative term).

In files with inputs (format version 2) items also have ``"u"``, the inputs at the same saved times
(``(n_inputs,)`` for pairs, ``(window + 1, n_inputs)`` for windows).

Indexing with a list (or 1-D tensor) of indices returns the batch directly (leading batch axis), which
a ``DataLoader(batch_size=None, sampler=<batch sampler>)`` uses to skip per-item collation.

Small files (``in_memory=None`` and at most ``IN_MEMORY_MAX_BYTES``) are read fully into memory.
Otherwise the HDF5 file is opened lazily, once per process, on first access: the handle is never
created in ``__init__`` and is dropped when the dataset is pickled, so ``spawn`` and ``forkserver``
DataLoader workers each open their own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from hnnlab.data.io import open_file, raise_if_invalid, read_metadata
from hnnlab.data.schema import CLEAN_FIELD, INPUTS_FIELD, DatasetError, _short
from hnnlab.errors import InvalidArgumentError

IN_MEMORY_MAX_BYTES = 256 * 2**20
Mode = Literal["pairs", "windows"]


class TrajectoryDataset(Dataset):
    """One split of an hnnlab dataset file.

    Args:
        path: the file (validated for structure on construction).
        split: ``"train"``, ``"val"`` or ``"test"``.
        mode: ``"pairs"`` or ``"windows"`` (see the module docstring).
        window: number of steps per window (``window + 1`` states), ``>= 1``; windows mode only.
        use_noisy: serve the observed (noisy) states; ``False`` serves the clean ones. Derivatives are
            always the exact ones at the clean states.
        with_dxdt: windows also carry ``"dxdt"`` (read only when asked: one more field per window).
        in_memory: read the split fully into memory; ``None`` decides by file size.

    Attributes:
        dt: time between saved states; ``dof``; ``metadata`` (the file's root attributes).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        *,
        mode: Mode = "pairs",
        window: int = 1,
        use_noisy: bool = True,
        in_memory: bool | None = None,
        with_dxdt: bool = False,
    ) -> None:
        if mode not in ("pairs", "windows"):
            raise InvalidArgumentError(f"mode must be 'pairs' or 'windows', got {mode!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise InvalidArgumentError(f"window must be an integer >= 1, got {window!r}")
        self.path = str(path)
        self.split = split
        self.mode = mode
        self.window = window
        self.with_dxdt = mode == "pairs" or bool(with_dxdt)
        raise_if_invalid(path, check_values=False)
        with open_file(path) as file:
            self.metadata: dict[str, Any] = read_metadata(file)
            if split not in self.metadata["splits"]:
                present = ", ".join(self.metadata["splits"]) or "none"
                raise DatasetError(f"{self.path}: split {split!r} is absent (splits present: {present})")
            group = file[split]
            self.n_traj, self.n_times, width = group["state"].shape
            self.t = torch.from_numpy(np.asarray(group["t"][()]))  # (n_times,)
            self.dt = float(group.attrs["dt"]) if self.n_times > 1 else float(self.metadata["dt"])
            noisy = CLEAN_FIELD in group
            self.has_inputs = INPUTS_FIELD in group
        self.dof = width // 2
        self.state_field = "state" if (use_noisy or not noisy) else CLEAN_FIELD
        if mode == "windows" and self.n_times < window + 1:
            raise DatasetError(
                f"{self.path}: split {split!r} has {self.n_times} saved times per trajectory; windows of "
                f"window={window} steps need at least {window + 1}"
            )
        self.per_traj = self.n_times if mode == "pairs" else self.n_times - window
        if in_memory is None:
            in_memory = Path(path).stat().st_size <= IN_MEMORY_MAX_BYTES
        self.in_memory = in_memory
        self._arrays: dict[str, Tensor] | None = None
        self._file: Any = None
        self._pid: int | None = None
        if in_memory:
            group = self._group()
            self._arrays = {name: torch.from_numpy(self._read(group, name, slice(None))) for name in self._fields()}
            self.close()

    def __len__(self) -> int:
        return self.n_traj * self.per_traj

    def __getitem__(self, index: int | Sequence[int] | Tensor) -> dict[str, Tensor]:
        if isinstance(index, int | np.integer):
            index = int(index)
            if not -len(self) <= index < len(self):
                raise IndexError(f"index {index} is out of range for a dataset of {len(self)} items")
            batch = self._batch(np.array([index % len(self)]))
            return {k: v[0] for k, v in batch.items()}
        indices = np.asarray(index.cpu() if isinstance(index, Tensor) else index, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices must lie in [0, {len(self)}), got {indices.min()}..{indices.max()}")
        return self._batch(indices)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Tensor]]:
        """Batched fetch for ``DataLoader``'s automatic batching (one read, then split into items)."""
        batch = self[list(indices)]
        n = len(indices)
        return [{k: v[i] for k, v in batch.items()} for i in range(n)]

    def _fields(self) -> tuple[str, ...]:
        fields = (self.state_field, "dxdt") if self.with_dxdt else (self.state_field,)
        return fields + ((INPUTS_FIELD,) if self.has_inputs else ())

    def _batch(self, indices: np.ndarray) -> dict[str, Tensor]:
        traj, offset = np.divmod(indices, self.per_traj)  # (B,), (B,)
        data = self._gather(traj)  # field -> (B, n_times, ...) in the order of ``traj``
        rows = np.arange(len(indices))
        if self.mode == "pairs":
            out = {"x": data[self.state_field][rows, offset], "dxdt": data["dxdt"][rows, offset], "t": self.t[offset]}
            if self.has_inputs:
                out["u"] = data[INPUTS_FIELD][rows, offset]
            return out
        steps = offset[:, None] + np.arange(self.window + 1)  # (B, window + 1)
        out = {"states": data[self.state_field][rows[:, None], steps], "t": self.t[steps]}
        if self.with_dxdt:
            out["dxdt"] = data["dxdt"][rows[:, None], steps]
        if self.has_inputs:
            out["u"] = data[INPUTS_FIELD][rows[:, None], steps]
        return out

    def _gather(self, traj: np.ndarray) -> dict[str, Tensor]:
        if self._arrays is not None:
            index = torch.from_numpy(traj)
            return {name: array[index] for name, array in self._arrays.items()}
        unique, inverse = np.unique(traj, return_inverse=True)  # h5py needs increasing indices
        group = self._group()
        out = {}
        for name in self._fields():
            out[name] = torch.from_numpy(self._read(group, name, unique))[torch.from_numpy(inverse)]
        return out

    def _read(self, group: Any, name: str, rows: Any) -> np.ndarray:
        try:
            return np.asarray(group[name][rows])
        except (OSError, RuntimeError, KeyError) as exc:
            raise DatasetError(f"{self.path}: /{self.split}/{name} cannot be read ({_short(exc)})") from None

    def _group(self) -> Any:
        """The split's HDF5 group, opening the file in this process on first use."""
        if self._file is None or self._pid != os.getpid():
            self._file = open_file(self.path)
            self._pid = os.getpid()
        return self._file[self.split]

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, None  # h5py handles cannot cross process boundaries
        return state

    def __repr__(self) -> str:
        where = "memory" if self.in_memory else "lazy HDF5"
        return (
            f"TrajectoryDataset({self.path!r}, split={self.split!r}, mode={self.mode!r}, window={self.window}, "
            f"{self.n_traj} trajectories x {self.n_times} times, {len(self)} items, {where})"
        )

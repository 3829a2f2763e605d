"""Atomic writes of dataset files: the file appears at its path only when complete.

Data is written to a hidden temporary file in the target's directory and moved onto the target path
(:class:`hnnlab._hdf5.AtomicWrite`). An interrupted or failing write removes the temporary file and
leaves the target path exactly as it was; an existing file is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py

from hnnlab import _hdf5
from hnnlab.data.schema import CLEAN_FIELD, JSON_ATTRS, SPLITS, DatasetError

if TYPE_CHECKING:
    from hnnlab.data.simulate import SimulationResult

# how a dataset target is named and refused (the CLI's flag first: `hnnlab simulate --overwrite`)
_TARGET: dict[str, Any] = {
    "what": "output file", "error": DatasetError, "overwrite_flag": "--overwrite (overwrite=True)",
}


def check_target(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Refuse a target that exists (unless ``overwrite``) or that is a directory; return it as a Path."""
    return _hdf5.check_target(path, overwrite=overwrite, **_TARGET)


def write_dataset(path: str | os.PathLike, result: SimulationResult, *, overwrite: bool = False) -> Path:
    """Write ``result`` as a spec-following HDF5 file at ``path``, atomically; return the path.

    Each array of shape ``(n_traj, n_times, ...)`` is stored with one chunk per trajectory. Splits
    with no trajectories are omitted.
    """
    with _hdf5.AtomicWrite(path, overwrite=overwrite, **_TARGET) as tmp:
        with h5py.File(tmp, "w") as file:
            _hdf5.write_attrs(file, result.metadata, json_keys=JSON_ATTRS)
            for name in SPLITS:
                split = result.splits.get(name)
                if split is None or split.n_traj == 0:
                    continue
                group = file.create_group(name)
                _hdf5.write_attrs(group, {"n_traj": split.n_traj, "n_times": split.n_times, "dt": float(split.dt)})
                group.create_dataset("t", data=split.t.numpy())
                arrays = {"state": split.state, "dxdt": split.dxdt, "energy": split.energy}
                if split.clean_state is not None:
                    arrays[CLEAN_FIELD] = split.clean_state
                for field, tensor in arrays.items():
                    array = tensor.detach().cpu().numpy()
                    # in slices, with a check for a stop signal between them (one h5py call cannot be stopped)
                    _hdf5.write_array(group, field, array, chunks=(1, *array.shape[1:]))
    return Path(path)

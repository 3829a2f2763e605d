"""Atomic writes of dataset files: the file appears at its path only when complete.

Data is written to a hidden temporary file in the target's directory and moved onto the target path
(:class:`hnnlab._hdf5.AtomicWrite`). An interrupted or failing write removes the temporary file and
leaves the target path exactly as it was; an existing file is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
from torch import Tensor

from hnnlab import _hdf5
from hnnlab.data.schema import (
    CLEAN_FIELD,
    INPUTS_ATTR,
    INPUTS_FIELD,
    JSON_ATTRS,
    OBSERVATION_ATTR,
    OBSERVED_FIELD,
    OBSERVED_T_FIELD,
    SPLITS,
    DatasetError,
)

if TYPE_CHECKING:
    from hnnlab.data.simulate import SimulationResult

# how a dataset target is named and refused (the CLI's flag first: `hnnlab simulate --overwrite`)
_TARGET: dict[str, Any] = {
    "what": "output file", "error": DatasetError, "overwrite_flag": "--overwrite (overwrite=True)",
}


def check_target(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Refuse a target that exists (unless ``overwrite``) or that is a directory; return it as a Path."""
    return _hdf5.check_target(path, overwrite=overwrite, **_TARGET)


def write_dataset(
    path: str | os.PathLike,
    result: SimulationResult,
    *,
    overwrite: bool = False,
    inputs: Mapping[str, Tensor] | None = None,
    input_info: Mapping[str, Any] | None = None,
    observations: Mapping[str, tuple[Tensor, Tensor]] | None = None,
    observation: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``result`` as a spec-following HDF5 file at ``path``, atomically; return the path.

    Each array of shape ``(n_traj, n_times, ...)`` is stored with one chunk per trajectory. Splits
    with no trajectories are omitted.

    Args:
        inputs: per split, the inputs ``(n_traj, n_times, n_inputs)`` on the split's time grid (replacing the
            split's own ``inputs``); needs ``input_info`` or a root attribute ``inputs`` in ``result.metadata``.
        input_info: the root attribute ``inputs``: ``{"names", "interpolation": "zoh" | "linear", "family"}``.
        observations: per split, ``(observed_t (n_obs,), observed (n_traj, n_obs, n_obs_dims))`` as returned by
            :func:`hnnlab.data.observations.make_observations`; needs ``observation``.
        observation: the root attribute ``observation`` (the description ``make_observations`` returns).

    Raises:
        DatasetError: inputs or observations without their description (or the reverse), or missing for a
            split; nothing is written. The shapes and values are checked by :func:`hnnlab.data.validate`.
    """
    metadata = dict(result.metadata)
    if input_info is not None:
        metadata[INPUTS_ATTR] = dict(input_info)
    if observation is not None:
        metadata[OBSERVATION_ATTR] = dict(observation)
    splits = {name: split for name, split in result.splits.items() if split is not None and split.n_traj}
    for name, split in splits.items():
        changes: dict[str, Any] = {}
        if inputs is not None and name in inputs:
            changes["inputs"] = inputs[name]
        if observations is not None and name in observations:
            changes["observed_t"], changes["observed"] = observations[name]
        if changes:
            splits[name] = dataclasses.replace(split, **changes)
    for key, field, flag in ((INPUTS_ATTR, "inputs", "inputs="), (OBSERVATION_ATTR, "observed", "observations=")):
        having = [name for name, split in splits.items() if getattr(split, field) is not None]
        if having and key not in metadata:
            raise DatasetError(
                f"{path}: splits {', '.join(having)} have {field} but there is no root attribute {key!r} describing "
                f"them; pass {'input_info=' if key == INPUTS_ATTR else 'observation='} (nothing was written)"
            )
        lacking = [name for name in splits if name not in having]
        if key in metadata and lacking:
            raise DatasetError(
                f"{path}: the root attribute {key!r} is set but splits {', '.join(lacking)} have no {field}; "
                f"give them through {flag} or drop the attribute (nothing was written)"
            )
    with _hdf5.AtomicWrite(path, overwrite=overwrite, **_TARGET) as tmp:
        with h5py.File(tmp, "w") as file:
            _hdf5.write_attrs(file, metadata, json_keys=JSON_ATTRS)
            for name in SPLITS:
                split = splits.get(name)
                if split is None:
                    continue
                group = file.create_group(name)
                _hdf5.write_attrs(group, {"n_traj": split.n_traj, "n_times": split.n_times, "dt": float(split.dt)})
                group.create_dataset("t", data=split.t.numpy())
                arrays = {"state": split.state, "dxdt": split.dxdt, "energy": split.energy}
                if split.clean_state is not None:
                    arrays[CLEAN_FIELD] = split.clean_state
                if split.inputs is not None:
                    arrays[INPUTS_FIELD] = split.inputs
                if split.observed is not None:
                    arrays[OBSERVED_FIELD] = split.observed
                    group.create_dataset(OBSERVED_T_FIELD, data=split.observed_t.detach().cpu().double().numpy())
                for field, tensor in arrays.items():
                    array = tensor.detach().cpu().numpy()
                    # in slices, with a check for a stop signal between them (one h5py call cannot be stopped)
                    _hdf5.write_array(group, field, array, chunks=(1, *array.shape[1:]))
    return Path(path)

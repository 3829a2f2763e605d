"""What the audit reads from a file: a rollout file or one split of a dataset file.

Both become an :class:`AuditSource`: trajectories, their time grid, the system and integrator that made
them where known, and the reasons for anything that a later check will miss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from hnnlab import rollout_io
from hnnlab.rollout_io import RolloutFileError, open_hdf5

DATASET_SCHEMA = "hnnlab.dataset"


@dataclass
class AuditSource:
    """Trajectories to audit and what is known about how they were made."""

    kind: str  # "rollout" | "dataset"
    t: Tensor  # (n_times,)
    states: Tensor  # (n_traj, n_times, 2 * dof)
    reference: Tensor | None = None  # (n_traj, n_times, 2 * dof)
    energy_model: Tensor | None = None  # (n_traj, n_times)
    first_nonfinite_step: Tensor | None = None  # (n_traj,)
    system: Any = None
    integrator: Any = None
    integrator_description: dict[str, Any] | None = None
    dt: float | None = None  # integrator step
    save_every: int | None = None
    model_description: dict[str, Any] | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    inputs: Any = None  # hnnlab.inputs.InputSignal of the trajectories, in files with inputs


def file_schema(path: str | os.PathLike[str]) -> str:
    """The ``schema`` root attribute of an hnnlab HDF5 file (clear errors for non-hnnlab files)."""
    with open_hdf5(path, what="file") as f:
        schema = f.attrs.get("schema")
    if isinstance(schema, bytes):
        schema = schema.decode()
    if schema not in (rollout_io.SCHEMA, DATASET_SCHEMA):
        found = "no 'schema' root attribute" if schema is None else f"schema {schema!r}"
        raise RolloutFileError(
            f"{str(path)!r} is not an hnnlab rollout or dataset file ({found}; expected "
            f"{rollout_io.SCHEMA!r} or {DATASET_SCHEMA!r})"
        )
    return schema


def load_source(path: str | os.PathLike[str], *, split: str = "test", trajectories: slice | None = None) -> AuditSource:
    """Read a rollout file, or split ``split`` of a dataset file, for the audit."""
    if file_schema(path) == rollout_io.SCHEMA:
        return _rollout_source(path, trajectories)
    return _dataset_source(path, split, trajectories)


def _rollout_source(path: str | os.PathLike[str], trajectories: slice | None) -> AuditSource:
    r = rollout_io.read_rollout(path, trajectories=trajectories)
    meta = r.metadata
    skipped: dict[str, str] = {}
    system = r.system()
    if system is None:
        skipped["energy"] = "the rollout file names no system: the true energy is unknown"
    return AuditSource(
        kind="rollout",
        t=r.t,
        states=r.state,
        reference=r.reference,
        energy_model=r.energy_model,
        first_nonfinite_step=r.first_nonfinite_step,
        system=system,
        integrator=r.integrator(),
        integrator_description=dict(meta.integrator),
        dt=meta.dt,
        save_every=meta.save_every,
        model_description=None if meta.model is None else dict(meta.model),
        skipped=skipped,
        # the inputs that drove the model and the reference (format version 2), at the saved times
        inputs=None if r.inputs is None else r.inputs.resample(r.t),
    )


def _dataset_source(path: str | os.PathLike[str], split: str, trajectories: slice | None) -> AuditSource:
    from hnnlab.data.io import open_file, raise_if_invalid, read_metadata, read_split, rebuild_system
    from hnnlab.data.schema import DatasetError

    # The whole file against its spec first (as `hnnlab data check` does): NaN in the noisy states, or an
    # energy that does not match the system, is a broken dataset, not one that passes because the audit
    # reads only its clean states.
    raise_if_invalid(path)
    with open_file(path) as f:
        meta = read_metadata(f)
        if split not in meta["splits"]:
            raise DatasetError(
                f"{str(path)!r} has no split {split!r}; its splits are: {', '.join(meta['splits']) or '(none)'}"
            )
        try:
            data = read_split(f[split])
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise DatasetError(
                f"{str(path)!r}: split {split!r} cannot be read (truncated or corrupted? {exc})"
            ) from None
    states = data.clean
    inputs = None
    if data.inputs is not None:
        from hnnlab.inputs import InputSignal

        values = data.inputs if trajectories is None else data.inputs[trajectories]
        inputs = InputSignal(data.t, values.to(torch.float64), meta["inputs"]["interpolation"])
    if trajectories is not None:
        states = states[trajectories]
    skipped = {"accuracy": "a dataset file is the ground truth itself: there is no separate reference"}
    system = rebuild_system(meta)
    description = meta.get("integrator")
    integrator = dt = save_every = None
    if not isinstance(description, dict) or "name" not in description:
        reason = "the dataset records no ground-truth integrator"
        skipped["symplecticity"] = skipped["reversibility"] = reason
    else:
        substeps = int(description.get("substeps", 1))
        save_every = substeps
        integrator = rollout_io.rebuild_integrator(description, source=str(path))
        dt = float(meta["dt"]) / substeps if meta.get("dt") else None
    return AuditSource(
        kind=f"dataset[{split}]",
        t=data.t,
        states=states,
        system=system,
        integrator=integrator,
        integrator_description=description if isinstance(description, dict) else None,
        dt=dt,
        save_every=save_every,
        skipped=skipped,
        inputs=inputs,
    )

"""Rollout files for tests/test_rollout_io.py, tests/test_audit.py and tests/test_cli.py: a streaming writer
helper and deliberately broken files, each with the fragment its error message must contain."""

from __future__ import annotations

import os

import h5py
import torch

from hnnlab.integrators import get_integrator
from hnnlab.rollout import iter_rollout
from hnnlab.rollout_io import RolloutMetadata, RolloutWriter
from hnnlab.systems import Pendulum


def grid(n_times: int, spacing: float) -> torch.Tensor:
    return torch.arange(n_times, dtype=torch.float64) * spacing


def pendulum_states(n: int = 4, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return Pendulum().sample_initial_states(n, torch.Generator().manual_seed(seed), dtype=dtype)


def write_rollout(path, system, integrator, x0, dt, n_steps, save_every=1, *, reference=False, batch=None):
    """Stream a rollout of ``system`` to ``path`` (optionally with a reference from the same system)."""
    integ = get_integrator(integrator)
    meta = RolloutMetadata(integrator=integ.describe(), dt=dt, save_every=save_every, system=system.describe(),
                           command="pytest")
    batch = batch or x0.shape[0]
    with RolloutWriter(path, x0.shape[0], system.dof, x0.dtype, meta, with_reference=reference) as writer:
        for start in range(0, x0.shape[0], batch):
            xb = x0[start : start + batch]
            chunks = iter_rollout(system, integ, xb, dt, n_steps, save_every, chunk_size=64)
            for chunk in chunks:
                writer.append(chunk, reference=chunk.clone() if reference else None, start=start)
    return path


def make_bad_file(tmp_path, kind):
    path = tmp_path / f"{kind}.h5"
    if kind == "missing":
        return path
    if kind == "not_hdf5":
        path.write_text("t,q,p\n0,1,0\n")
        return path
    good = write_rollout(tmp_path / "good.h5", Pendulum(), "leapfrog", pendulum_states(2), 0.1, 300)
    if kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "wrong_schema":
        with h5py.File(path, "w") as f:
            f.attrs["schema"] = "someone.else"
            f.create_dataset("state", data=torch.zeros(1, 2, 2).numpy())
    elif kind == "wrong_version":
        os.replace(good, path)
        with h5py.File(path, "a") as f:
            f.attrs["schema_version"] = 7
    elif kind == "missing_state":
        os.replace(good, path)
        with h5py.File(path, "a") as f:
            del f["state"]
    return path


BAD_FILES = {
    "missing": "does not exist",
    "not_hdf5": "not an HDF5 file",
    "truncated": "truncated",
    "wrong_schema": "'schema' is 'someone.else', expected 'hnnlab.rollout'",
    "wrong_version": "'schema_version' is 7",
    "missing_state": "missing dataset 'state'",
}

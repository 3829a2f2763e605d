"""A fitted echo state network on a dataset, and its file: fit on a split, save, load, check it against data.

The echo state network (:class:`hnnlab.models.esn.EchoStateNetwork`) is fitted in closed form (one ridge
solve over teacher-forced trajectories), so it has no training loop, optimizer state or Lightning
checkpoint. ``hnnlab esn fit`` writes it as a small self-describing HDF5 file instead (``docs/training.md``,
"Echo state network")::

    /          attrs: schema = "hnnlab.esn", schema_version = 1, model (JSON: the constructor arguments),
                      system (JSON: system.describe() of the training data), dt, washout,
                      data (JSON: {"path", "split", "n_traj", "n_times"}), fit (JSON: {"train_mse", "n_samples"}),
                      created, hnnlab_version, command
    /w         (n_reservoir, n_reservoir) float64   the reservoir (spectral radius rho)
    /w_in      (n_reservoir, 2 * dof)      float64
    /bias      (n_reservoir,)              float64
    /w_out     (1 + 2 * dof + n_reservoir, 2 * dof) float64   the fitted readout
    /mean      (2 * dof,)                  float64   the standardisation of the training states
    /scale     (2 * dof,)                  float64

Loading rebuilds the model from its arguments and overwrites every buffer with the stored one, so a loaded
model forecasts bit for bit as the fitted one did. It is a discrete-time map on the step ``dt`` it was
fitted on: :func:`check_forecast_data` refuses data on another step, of another system, or with too few
states for the warm-up.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from hnnlab import __version__
from hnnlab._hdf5 import AtomicWrite, check_schema, open_read, read_attr, read_json_attr, write_attrs
from hnnlab.errors import FileFormatError, InvalidArgumentError
from hnnlab.models.esn import EchoStateNetwork

SCHEMA = "hnnlab.esn"
SCHEMA_VERSION = 1
BUFFERS = ("w", "w_in", "bias", "w_out", "mean", "scale")
JSON_ATTRS = frozenset({"model", "system", "data", "fit"})
DT_RTOL = 1e-9  # two steps are the same step within this relative tolerance (float round-off of t_k / k)


class EsnFileError(FileFormatError):
    """An echo state network file that is missing, unreadable or does not follow its spec."""


@dataclass
class FittedESN:
    """An echo state network and what it was fitted on.

    Attributes:
        model: the fitted network (float64).
        system: ``system.describe()`` of the training data (``"class"``, ``"params"``, ``"coordinates"``, ...).
        dt: the step between the states it was fitted on: the only step it forecasts on.
        washout: teacher-forced states left out of the fit at the start of each trajectory.
        data: ``{"path", "split", "n_traj", "n_times"}`` of the training data.
        fit: ``{"train_mse", "n_samples", "seconds"}``: the one-step MSE of the standardised states.
        path: the file it was loaded from, if any.
    """

    model: EchoStateNetwork
    system: dict[str, Any]
    dt: float
    washout: int
    data: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def default_warmup(self) -> int:
        """``washout + 1`` true states: the first forecast step then uses a reservoir driven as long as the
        first fitted one (the zero initial reservoir state has been forgotten for as long)."""
        return self.washout + 1


def fit_esn(
    data_path: str | os.PathLike[str],
    *,
    split: str = "train",
    trajectories: int | None = None,
    washout: int = 50,
    **hyperparameters: Any,
) -> FittedESN:
    """Fit an :class:`EchoStateNetwork` on the states of split ``split`` of a dataset file, on its own step.

    The network sees the split's stored states ``state`` (noisy where the dataset has noise, as every other
    model is trained), in float64; ``trajectories`` takes the first ``N``. ``hyperparameters`` go to
    :class:`EchoStateNetwork` (``n_reservoir``, ``spectral_radius``, ``leak``, ``input_scale``, ``density``,
    ``ridge``, ``seed``).

    Raises:
        DatasetError: the file is missing or invalid (non-finite states included).
        InvalidArgumentError: no such split, too few trajectories or states for the washout, bad hyperparameters.
    """
    from hnnlab.data.io import load_dataset

    if isinstance(washout, bool) or not isinstance(washout, int) or washout < 0:
        raise InvalidArgumentError(f"washout must be an integer >= 0, got {washout!r}")
    name = os.fspath(data_path)
    data = load_dataset(name)
    valid = [k for k, v in data.splits.items() if v.n_traj > 0]
    if split not in valid:
        raise InvalidArgumentError(f"split {split!r} is not a non-empty split of {name!r}; valid: {', '.join(valid)}")
    part = data.splits[split]
    n = part.n_traj if trajectories is None else trajectories
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= part.n_traj:
        raise InvalidArgumentError(f"trajectories must be an integer in 1..{part.n_traj} (split {split!r} of "
                                   f"{name!r}), got {trajectories!r}")
    if part.inputs is not None:
        raise InvalidArgumentError(f"split {split!r} of {name!r} holds inputs u(t): an echo state network forecasts "
                                   "autonomous dynamics only; fit it on data simulated without --inputs")
    n_times = part.state.shape[1]
    if n_times < washout + 2:
        raise InvalidArgumentError(
            f"split {split!r} of {name!r} has {n_times} states per trajectory, too few for washout {washout}: the fit "
            f"needs at least washout + 2 = {washout + 2} (a driven state and its successor after the washout); "
            f"lower the washout to at most {n_times - 2}"
        )
    states = part.state[:n].to(torch.float64)  # (n, n_times, 2 * dof)
    model = EchoStateNetwork(states.shape[-1], **hyperparameters)
    started = time.perf_counter()
    info = model.fit(states, washout=washout)
    return FittedESN(
        model=model, system=dict(data.metadata["system"]), dt=float(part.dt), washout=washout,
        data={"path": name, "split": split, "n_traj": n, "n_times": n_times},
        fit={"train_mse": info["train_mse"], "n_samples": int(info["n_samples"]),
             "seconds": time.perf_counter() - started},
    )


def save_esn(
    fitted: FittedESN, path: str | os.PathLike[str], *, overwrite: bool = False, command: str | None = None
) -> Path:
    """Write ``fitted`` to ``path`` atomically (the file appears only when complete); return the path."""
    model = fitted.model
    if not bool(model.fitted):
        raise InvalidArgumentError("save_esn: the echo state network is not fitted; fit it first")
    with AtomicWrite(path, overwrite=overwrite, what="echo state network file", error=InvalidArgumentError,
                     overwrite_flag="--overwrite (overwrite=True)") as tmp, h5py.File(tmp, "w") as f:
        for name in BUFFERS:
            f.create_dataset(name, data=getattr(model, name).detach().to("cpu", torch.float64).numpy())
        attrs = {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "model": model.hyperparameters(),
            "system": fitted.system, "dt": float(fitted.dt), "washout": int(fitted.washout), "data": fitted.data,
            "fit": fitted.fit, "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "hnnlab_version": __version__,
        }
        if command is not None:
            attrs["command"] = command
        write_attrs(f, attrs, json_keys=JSON_ATTRS)
    return Path(path)


def is_esn_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an HDF5 file whose root attribute ``schema`` is ``"hnnlab.esn"`` (a Lightning
    checkpoint, which is not HDF5, is not)."""
    p = Path(path)
    if not p.is_file() or not h5py.is_hdf5(p):
        return False
    with open_read(p, what="file", error=EsnFileError) as f:
        return read_attr(f, "schema") == SCHEMA


def load_esn(path: str | os.PathLike[str]) -> FittedESN:
    """Read an echo state network file written by :func:`save_esn` (validated; clear :class:`EsnFileError`)."""
    name = os.fspath(path)
    where = repr(name)
    with open_read(name, what="echo state network file", error=EsnFileError) as f:
        check_schema(f, schema=SCHEMA, version=SCHEMA_VERSION, kind="hnnlab echo state network file", where=where,
                     error=EsnFileError)
        hyper = read_json_attr(f, "model", where=where, error=EsnFileError, required=True)
        system = read_json_attr(f, "system", where=where, error=EsnFileError, required=True)
        data = read_json_attr(f, "data", where=where, error=EsnFileError) or {}
        fit = read_json_attr(f, "fit", where=where, error=EsnFileError) or {}
        dt, washout = read_attr(f, "dt"), read_attr(f, "washout")
        missing = [k for k in BUFFERS if k not in f]
        if missing:
            raise EsnFileError(f"{where}: missing dataset(s) {', '.join(missing)}")
        arrays = {k: np.asarray(f[k][()]) for k in BUFFERS}
    if not isinstance(dt, float | int) or isinstance(dt, bool) or not math.isfinite(dt) or dt <= 0:
        raise EsnFileError(f"{where}: root attribute 'dt' must be a finite number > 0, got {dt!r}")
    if isinstance(washout, bool) or not isinstance(washout, int) or washout < 0:
        raise EsnFileError(f"{where}: root attribute 'washout' must be an integer >= 0, got {washout!r}")
    if not isinstance(system, dict) or not {"class", "params"} <= set(system):
        raise EsnFileError(f"{where}: root attribute 'system' must be system.describe() (keys 'class' and 'params')")
    if not isinstance(hyper, dict):
        raise EsnFileError(f"{where}: root attribute 'model' must be a JSON object of EchoStateNetwork arguments")
    try:
        model = EchoStateNetwork(**hyper)
    except (TypeError, InvalidArgumentError) as exc:
        raise EsnFileError(f"{where}: root attribute 'model' does not rebuild an EchoStateNetwork: {exc}") from None
    for key, array in arrays.items():
        expected = tuple(getattr(model, key).shape)
        if array.shape != expected or array.dtype != np.float64 or not np.isfinite(array).all():
            raise EsnFileError(f"{where}: dataset {key!r} must be finite float64 of shape {expected}, got "
                               f"{array.dtype} {array.shape}")
        getattr(model, key).copy_(torch.from_numpy(array))
    model.fitted.fill_(True)
    return FittedESN(model=model, system=system, dt=float(dt), washout=int(washout), data=data, fit=fit, path=name)


def check_forecast_data(
    fitted: FittedESN, system: dict[str, Any], dt: float, n_times: int, warmup: int, *, where: str,
    esn_name: str = "the echo state network", warmup_flag: str = "warmup",
) -> None:
    """Refuse data that ``fitted`` cannot forecast: another system or state size, another step ``dt`` (it is a
    map on the step it was fitted on), or fewer than ``warmup`` states per trajectory (the true states that
    warm the reservoir up). ``where``, ``esn_name`` and ``warmup_flag`` name the data, the network and the
    warm-up argument in the messages."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise InvalidArgumentError(f"{warmup_flag} must be an integer >= 1 (true states that drive the reservoir "
                                   f"before the forecast), got {warmup!r}")
    ours, theirs = fitted.system.get("class", fitted.system.get("name")), system.get("class", system.get("name"))
    if ours != theirs:
        raise InvalidArgumentError(
            f"{esn_name} was fitted on system {fitted.system.get('name')!r}, but {where} is system "
            f"{system.get('name')!r}; forecast data of {fitted.system.get('name')!r}"
        )
    if fitted.system.get("coordinates") != system.get("coordinates") or fitted.system.get("dof") != system.get("dof"):
        raise InvalidArgumentError(
            f"{esn_name} was fitted on states of dof {fitted.system.get('dof')} in {fitted.system.get('coordinates')} "
            f"coordinates, but {where} has dof {system.get('dof')} in {system.get('coordinates')} coordinates"
        )
    if not math.isclose(dt, fitted.dt, rel_tol=DT_RTOL, abs_tol=0.0):
        raise InvalidArgumentError(
            f"{where} is saved every dt = {dt:g}, but {esn_name} was fitted on dt = {fitted.dt:g}: an echo state "
            f"network is a discrete-time map that forecasts only on the step it was fitted on; use data saved "
            f"every {fitted.dt:g}"
        )
    if n_times < warmup:
        raise InvalidArgumentError(
            f"{where} has {n_times} states per trajectory, fewer than the warm-up of {warmup} true states that drive "
            f"the reservoir before the forecast; use {warmup_flag} <= {n_times}"
        )

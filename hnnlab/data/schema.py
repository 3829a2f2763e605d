"""The hnnlab dataset format, version 2 (version 1 still read): constants and a validator that lists every problem.

The written spec is ``docs/data_format.md``; this module is its executable form. A file is::

    /                      root attributes (ROOT_ATTRS): schema, schema_version, system (JSON), ...
    /train, /val, /test    one group per non-empty split (SPLITS), each with
        t            (n_times,)                  saved times
        state        (n_traj, n_times, 2 * dof)  states as observed (noisy when noise_std > 0)
        dxdt         (n_traj, n_times, 2 * dof)  exact time derivatives at the clean states
        energy       (n_traj, n_times)           the system's energy of the clean states
        clean_state  (n_traj, n_times, 2 * dof)  only when noise_std > 0
        inputs       (n_traj, n_times, n_inputs)  only in files with the root attribute ``inputs`` (version 2)
        observed     (n_traj, n_obs, n_obs_dims)  only in files with the root attribute ``observation`` (version 2)
        observed_t   (n_obs,)                     equal to t[::every]

:func:`validate` never raises for a bad file: it returns one line per problem, each naming the file
and the field.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np
import torch

from hnnlab._hdf5 import first_line as _short  # also imported by hnnlab.data.dataset
from hnnlab._hdf5 import open_read, read_attr, read_json_attr
from hnnlab.errors import FileFormatError, HnnlabError
from hnnlab.inputs import INTERPOLATIONS
from hnnlab.systems.registry import rebuild_system

SCHEMA_NAME = "hnnlab.dataset"
SCHEMA_VERSION = 2
READ_VERSIONS = (1, 2)  # versions this hnnlab reads; version 1 files have no inputs and no observations
SPLITS = ("train", "val", "test")
FLOAT_DTYPES = ("float32", "float64")

# name -> (python types allowed, whether the value is a JSON string)
ROOT_ATTRS: dict[str, tuple[tuple[type, ...], bool]] = {
    "schema": ((str,), False),
    "schema_version": ((int,), False),
    "system": ((dict,), True),  # system.describe(): name, class, params, coordinates, dof, ...
    "coordinates": ((str,), False),  # "canonical" (q, p) or "lagrangian" (q, q_dot)
    "state_names": ((list,), True),
    "dof": ((int,), False),
    "dt": ((float, int), False),  # time between saved states
    "integrator": ((dict,), True),  # integrator.describe() plus substeps
    "seed": ((int,), False),
    "noise_std": ((float, int), False),
    "dtype": ((str,), False),
    "recipe": ((dict,), True),  # {} when made from a system, else the recipe's description
    "hnnlab_version": ((str,), False),
    "created": ((str,), False),  # ISO 8601, UTC
    "command": ((str,), False),  # the command line (or API call) that made the file
}
# optional root attributes of version 2, JSON objects present only in files that have what they describe
INPUTS_ATTR = "inputs"  # {"names": [...], "interpolation": "zoh" | "linear", "family": {...}}
OBSERVATION_ATTR = "observation"  # {"observe": "q" | "state", "noise_std", "every", "names", "seed"}
OPTIONAL_ATTRS = (INPUTS_ATTR, OBSERVATION_ATTR)
JSON_ATTRS = frozenset([key for key, (_, is_json) in ROOT_ATTRS.items() if is_json] + list(OPTIONAL_ATTRS))
OBSERVE_MODES = ("q", "state")
SPLIT_ATTRS = ("n_traj", "n_times", "dt")
FIELDS = ("t", "state", "dxdt", "energy")
CLEAN_FIELD = "clean_state"  # the states before noise was added; present only when noise_std > 0
INPUTS_FIELD = "inputs"  # (n_traj, n_times, n_inputs), on the grid of ``state``
OBSERVED_FIELD, OBSERVED_T_FIELD = "observed", "observed_t"

ENERGY_RTOL = {"float64": 1e-8, "float32": 1e-4}
_BLOCK_ELEMENTS = 2**21  # read at most about this many numbers at once when checking values


class DatasetError(FileFormatError):
    """A dataset file that is missing, unreadable, or does not follow the spec (names file and field)."""


def open_file(path: str | os.PathLike) -> h5py.File:
    """Open ``path`` read-only as an ``h5py.File``; raise :class:`DatasetError` if it is missing,
    not a file, not HDF5, or damaged."""
    return open_read(path, what="dataset file", error=DatasetError)


def validate(path: str | os.PathLike, *, energy_rtol: float | None = None, check_values: bool = True) -> list[str]:
    """Check a file against the spec; return the problems found (empty when the file is valid).

    Args:
        path: the file.
        energy_rtol: tolerance of ``|E_stored - E(clean_state)| <= energy_rtol * max(1, |E|)`` (and the
            same for ``dxdt`` against the system's vector field); defaults by dtype (``ENERGY_RTOL``).
        check_values: also read the arrays (finite values, energy and derivatives against the
            system); ``False`` checks only the structure.
    """
    try:
        file = open_file(path)
    except DatasetError as exc:
        return [str(exc)]
    problems: list[str] = []
    with file:
        try:
            problems.extend(_validate_open(file, str(path), energy_rtol, check_values))
        except (OSError, RuntimeError, KeyError) as exc:  # h5py's errors on damaged files
            problems.append(f"{path}: the file is corrupted or truncated (HDF5 read failed: {_short(exc)})")
    return problems


def _validate_open(file: Any, name: str, energy_rtol: float | None, check_values: bool) -> Iterator[str]:
    found = read_attr(file, "schema")
    if found != SCHEMA_NAME:
        yield f"{name}: root attribute 'schema' is {found!r}, expected {SCHEMA_NAME!r} (not an hnnlab dataset)"
        return
    version = read_attr(file, "schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in READ_VERSIONS:
        yield (f"{name}: root attribute 'schema_version' is {version!r}; this hnnlab reads versions "
               f"{', '.join(map(str, READ_VERSIONS))}")
        return
    meta: dict[str, Any] = {}
    for key, (types, is_json) in ROOT_ATTRS.items():
        if key not in file.attrs:
            yield f"{name}: missing root attribute {key!r}"
            continue
        try:
            value = read_json_attr(file, key, where=name, error=DatasetError) if is_json else read_attr(file, key)
        except DatasetError as exc:
            yield str(exc)
            continue
        if not isinstance(value, types) or isinstance(value, bool):
            allowed = " or ".join(t.__name__ for t in types)
            yield f"{name}: root attribute {key!r} must be {allowed}, got {type(value).__name__} {value!r}"
            continue
        meta[key] = value
    if "dtype" in meta and meta["dtype"] not in FLOAT_DTYPES:
        yield f"{name}: root attribute 'dtype' is {meta['dtype']!r}; allowed: {', '.join(FLOAT_DTYPES)}"
    if "coordinates" in meta and meta["coordinates"] not in ("canonical", "lagrangian"):
        yield f"{name}: root attribute 'coordinates' is {meta['coordinates']!r}; allowed: canonical, lagrangian"
    dof = meta.get("dof")
    if isinstance(dof, int) and dof < 1:
        yield f"{name}: root attribute 'dof' must be >= 1, got {dof}"
        dof = None
    if dof is not None and "state_names" in meta and len(meta["state_names"]) != 2 * dof:
        yield f"{name}: root attribute 'state_names' has {len(meta['state_names'])} names, expected 2 * dof = {2 * dof}"
    noise = meta.get("noise_std")
    if isinstance(noise, float | int) and (not math.isfinite(noise) or noise < 0):
        yield f"{name}: root attribute 'noise_std' must be finite and >= 0, got {noise!r}"
    system = None
    if check_values and "system" in meta:
        try:
            system = rebuild_system(meta["system"], source=f"{name}: root attribute 'system'", error=DatasetError)
        except HnnlabError as exc:
            yield str(exc)
    for key in OPTIONAL_ATTRS:
        if key not in file.attrs:
            continue
        if version < 2:
            yield f"{name}: root attribute {key!r} needs schema_version 2, the file has version {version}"
            continue
        try:
            value = read_json_attr(file, key, where=name, error=DatasetError)
        except DatasetError as exc:
            yield str(exc)
            continue
        check = _check_inputs_attr if key == INPUTS_ATTR else _check_observation_attr
        problems = list(check(value, f"{name}: root attribute {key!r}", dof))
        yield from problems
        if not problems:
            meta[key] = value
    present = [s for s in SPLITS if s in file]
    if not present:
        yield f"{name}: no split group; expected at least one of {', '.join('/' + s for s in SPLITS)}"
    for split in present:
        where = f"{name}: /{split}"
        yield from _validate_split(file[split], where, meta, dof, noise, system, energy_rtol, check_values)


def _validate_split(group, where, meta, dof, noise, system, energy_rtol, check_values) -> Iterator[str]:
    if not isinstance(group, h5py.Group):
        yield f"{where} must be a group, found a {type(group).__name__}"
        return
    for key in SPLIT_ATTRS:
        if key not in group.attrs:
            yield f"{where}: missing attribute {key!r}"
    needs_clean = isinstance(noise, float | int) and noise > 0
    fields = FIELDS + ((CLEAN_FIELD,) if needs_clean else ())
    ok = True
    for field in fields:
        if field not in group:
            reason = " (required because noise_std > 0)" if field == CLEAN_FIELD else ""
            yield f"{where}/{field}: missing dataset{reason}"
            ok = False
        elif not isinstance(group[field], h5py.Dataset):
            yield f"{where}/{field}: must be a dataset, found a group"
            ok = False
        elif group[field].dtype.name not in FLOAT_DTYPES:
            yield f"{where}/{field}: dtype {group[field].dtype} is not allowed; allowed: {', '.join(FLOAT_DTYPES)}"
            ok = False
        elif meta.get("dtype") in FLOAT_DTYPES and field != "t" and group[field].dtype.name != meta["dtype"]:
            yield f"{where}/{field}: dtype {group[field].dtype} differs from the root attribute dtype {meta['dtype']!r}"
    if not ok:
        return
    state = group["state"]
    if state.ndim != 3:
        yield f"{where}/state: shape {state.shape} must be (n_traj, n_times, 2 * dof)"
        return
    n_traj, n_times, width = state.shape
    if dof is not None and width != 2 * dof:
        yield f"{where}/state: last dimension is {width}, expected 2 * dof = {2 * dof}"
        return
    expected = {
        "t": (n_times,),
        "dxdt": (n_traj, n_times, width),
        "energy": (n_traj, n_times),
        CLEAN_FIELD: (n_traj, n_times, width),
    }
    shapes_ok = True
    for field, shape in expected.items():
        if field in group and group[field].shape != shape:
            yield f"{where}/{field}: shape {group[field].shape} does not match state {state.shape}; expected {shape}"
            shapes_ok = False
    for key, value in (("n_traj", n_traj), ("n_times", n_times)):
        if key in group.attrs and int(group.attrs[key]) != value:
            yield f"{where}: attribute {key!r} is {int(group.attrs[key])} but state has {value}"
    if n_traj == 0 or n_times == 0:
        yield f"{where}/state: empty split (shape {state.shape}); omit the group instead"
        return
    if not shapes_ok:
        return
    t = np.asarray(group["t"][()], dtype=np.float64)
    if not np.isfinite(t).all():
        yield f"{where}/t: contains NaN or inf"
    elif n_times > 1 and not (np.diff(t) > 0).all():
        yield f"{where}/t: times must be strictly increasing"
    elif n_times > 1 and "dt" in group.attrs:
        dt = float(group.attrs["dt"])
        if not np.allclose(np.diff(t), dt, rtol=1e-6, atol=1e-12):
            yield f"{where}/t: spacing does not match the split attribute dt = {dt!r}"
    yield from _check_inputs(group, where, meta, state, t, check_values)
    yield from _check_observations(group, where, meta, state, t, check_values)
    if not check_values:
        return
    yield from _check_values(group, where, meta, system, energy_rtol, t, needs_clean)


def _check_values(group, where, meta, system, energy_rtol, t, needs_clean) -> Iterator[str]:
    dtype = group["state"].dtype.name
    rtol = energy_rtol if energy_rtol is not None else ENERGY_RTOL.get(dtype, 1e-4)
    n_traj, n_times, width = group["state"].shape
    block = max(1, _BLOCK_ELEMENTS // max(1, n_times * width))
    clean_name = CLEAN_FIELD if needs_clean else "state"
    reported: set[str] = set()
    worst_e, worst_f = 0.0, 0.0
    for start in range(0, n_traj, block):
        stop = min(n_traj, start + block)
        names = ("state", "dxdt", "energy") + ((CLEAN_FIELD,) if needs_clean else ())
        arrays = {f: group[f][start:stop] for f in names}
        inputs = group[INPUTS_FIELD][start:stop] if INPUTS_ATTR in meta and INPUTS_FIELD in group else None
        for field, array in arrays.items():
            if field not in reported and not np.isfinite(array).all():
                bad = np.argwhere(~np.isfinite(array))[0]
                bad[0] += start
                yield f"{where}/{field}: non-finite value (NaN or inf) at index {tuple(int(i) for i in bad)}"
                reported.add(field)
        if system is None or reported:
            continue
        clean = torch.from_numpy(np.asarray(arrays[clean_name], dtype=np.float64))
        with torch.no_grad():
            energy = system.energy(clean).numpy()  # (block, n_times)
            flat = clean.reshape(-1, width)
            times = torch.from_numpy(np.broadcast_to(t, (stop - start, n_times)).reshape(-1).copy())
            field = system.vector_field(times, flat)
            if inputs is not None and getattr(system, "n_inputs", 0) == inputs.shape[-1]:
                # the stored inputs replace the system's own u(t): add G(x) (u_stored - u_system)
                u = torch.from_numpy(np.asarray(inputs, dtype=np.float64)).reshape(-1, inputs.shape[-1])
                field = field + (system.input_map(flat) @ (u - system.inputs(times, flat))[..., None])[..., 0]
            field = field.reshape(clean.shape).numpy()
        scale_e = np.maximum(1.0, np.abs(energy))
        worst_e = max(worst_e, float((np.abs(arrays["energy"] - energy) / scale_e).max()))
        scale_f = np.maximum(1.0, np.abs(field))
        worst_f = max(worst_f, float((np.abs(arrays["dxdt"] - field) / scale_f).max()))
    if worst_e > rtol:
        yield (
            f"{where}/energy: does not match the system's energy of {clean_name}: max relative error "
            f"{worst_e:.3g} > tolerance {rtol:g}"
        )
    if worst_f > rtol:
        yield (
            f"{where}/dxdt: does not match the system's vector field at {clean_name}: max relative error "
            f"{worst_f:.3g} > tolerance {rtol:g}"
        )


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_inputs_attr(value: Any, where: str, dof: int | None) -> Iterator[str]:
    if not isinstance(value, dict):
        yield f"{where} must be a JSON object {{names, interpolation, family}}, got {type(value).__name__}"
        return
    for key in ("names", "interpolation", "family"):
        if key not in value:
            yield f"{where}: missing key {key!r} (needs names, interpolation, family)"
    names = value.get("names")
    if "names" in value and (not _is_str_list(names) or not names):
        yield f"{where}: 'names' must be a non-empty list of strings, got {names!r}"
    if "interpolation" in value and value["interpolation"] not in INTERPOLATIONS:
        yield (f"{where}: 'interpolation' is {value['interpolation']!r}; allowed: "
               f"{', '.join(INTERPOLATIONS)} (zero-order hold, piecewise linear)")
    if "family" in value and not isinstance(value["family"], dict):
        yield f"{where}: 'family' must be a JSON object describing how the inputs were drawn, got {value['family']!r}"


def _check_observation_attr(value: Any, where: str, dof: int | None) -> Iterator[str]:
    if not isinstance(value, dict):
        yield f"{where} must be a JSON object {{observe, noise_std, every, names, seed}}, got {type(value).__name__}"
        return
    missing = [k for k in ("observe", "noise_std", "every", "names", "seed") if k not in value]
    if missing:
        yield f"{where}: missing key(s) {', '.join(map(repr, missing))} (needs observe, noise_std, every, names, seed)"
        return
    observe, noise, every, names, seed = (value[k] for k in ("observe", "noise_std", "every", "names", "seed"))
    if observe not in OBSERVE_MODES:
        yield f"{where}: 'observe' is {observe!r}; allowed: {', '.join(OBSERVE_MODES)}"
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not math.isfinite(noise) or noise < 0:
        yield f"{where}: 'noise_std' must be a finite number >= 0, got {noise!r}"
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        yield f"{where}: 'every' must be an integer >= 1, got {every!r}"
    if isinstance(seed, bool) or not isinstance(seed, int):
        yield f"{where}: 'seed' must be an integer, got {seed!r}"
    if not _is_str_list(names):
        yield f"{where}: 'names' must be a list of strings, got {names!r}"
    elif dof is not None and observe in OBSERVE_MODES:
        expected = dof if observe == "q" else 2 * dof
        if len(names) != expected:
            yield f"{where}: 'names' has {len(names)} names; observe={observe!r} with dof = {dof} needs {expected}"


def _dataset_problem(group: Any, field: str, where: str, dtype: str) -> str | None:
    if field not in group:
        return f"{where}/{field}: missing dataset"
    if not isinstance(group[field], h5py.Dataset):
        return f"{where}/{field}: must be a dataset, found a group"
    if group[field].dtype.name != dtype:
        return f"{where}/{field}: dtype {group[field].dtype} differs from state's {dtype}"
    return None


def _first_nonfinite(where: str, field: str, array: np.ndarray) -> str | None:
    if np.isfinite(array).all():
        return None
    bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
    return f"{where}/{field}: non-finite value (NaN or inf) at index {bad}"


def _check_inputs(group, where, meta, state, t, check_values) -> Iterator[str]:
    info = meta.get(INPUTS_ATTR)
    if info is None:
        if INPUTS_FIELD in group:
            yield (f"{where}/{INPUTS_FIELD}: present but the file has no root attribute {INPUTS_ATTR!r} "
                   f"(names, interpolation, family); add it or remove the dataset")
        return
    problem = _dataset_problem(group, INPUTS_FIELD, where, state.dtype.name)
    if problem:
        yield problem
        return
    inputs = group[INPUTS_FIELD]
    expected = (state.shape[0], state.shape[1], len(info["names"]))
    if inputs.shape != expected:
        yield (f"{where}/{INPUTS_FIELD}: shape {inputs.shape} does not match the time grid of state {state.shape} "
               f"and the {len(info['names'])} input names; expected (n_traj, n_times, n_inputs) = {expected}")
        return
    if check_values:
        problem = _first_nonfinite(where, INPUTS_FIELD, inputs[()])
        if problem:
            yield problem


def _check_observations(group, where, meta, state, t, check_values) -> Iterator[str]:
    info = meta.get(OBSERVATION_ATTR)
    if info is None:
        for field in (OBSERVED_FIELD, OBSERVED_T_FIELD):
            if field in group:
                yield f"{where}/{field}: present but the file has no root attribute {OBSERVATION_ATTR!r}"
        return
    ok = True
    for field, dtype in ((OBSERVED_FIELD, state.dtype.name), (OBSERVED_T_FIELD, "float64")):
        problem = _dataset_problem(group, field, where, dtype)
        if problem:
            yield problem
            ok = False
    if not ok:
        return
    expected_t = t[:: info["every"]]
    obs_t, observed = group[OBSERVED_T_FIELD], group[OBSERVED_FIELD]
    if obs_t.shape != expected_t.shape:
        yield (f"{where}/{OBSERVED_T_FIELD}: shape {obs_t.shape}; expected {expected_t.shape}, the times "
               f"t[::every] with every = {info['every']}")
        return
    expected = (state.shape[0], expected_t.shape[0], len(info["names"]))
    if observed.shape != expected:
        yield (f"{where}/{OBSERVED_FIELD}: shape {observed.shape}; expected (n_traj, n_obs, n_obs_dims) = {expected} "
               f"({len(info['names'])} observed names)")
        return
    if not np.array_equal(np.asarray(obs_t[()], dtype=np.float64), expected_t):
        yield f"{where}/{OBSERVED_T_FIELD}: differs from t[::every] with every = {info['every']}"
    if check_values:
        for field in (OBSERVED_FIELD, OBSERVED_T_FIELD):
            problem = _first_nonfinite(where, field, group[field][()])
            if problem:
                yield problem

"""The rollout file: a written HDF5 spec (``docs/rollout_format.md``), a streaming writer and a reader.

A rollout file holds long-horizon predictions of a model (or of any vector field) on a uniform time
grid, the reference trajectories of the true system where it is known, and the metadata needed to
reproduce and audit them::

    /                      attrs: schema = "hnnlab.rollout", schema_version = 2, system, model,
                                  checkpoint, integrator, reference_integrator (JSON), dt, save_every,
                                  t0, n_traj, n_times, dof, dtype, created, hnnlab_version, command, extra,
                                  inputs (JSON {"interpolation", "n_inputs"}, only with /inputs)
    /t                     (n_times,)                 float64
    /state                 (n_traj, n_times, 2 * dof) float32 | float64, chunked along time
    /reference             (n_traj, n_times, 2 * dof) optional, same dtype and chunks
    /energy_model          (n_traj, n_times)          optional
    /first_nonfinite_step  (n_traj,)                  int64, -1 when the trajectory stayed finite
    /inputs                (n_traj, n_input_times, n_inputs) float64, optional (version 2): the inputs used
    /inputs_t              (n_input_times,)           float64, their sample times, with /inputs

:class:`RolloutWriter` streams chunks from :func:`hnnlab.rollout.iter_rollout` to disk, so memory does not
grow with the number of steps, and writes atomically. :func:`read_rollout` validates a file and loads it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor

from hnnlab import __version__
from hnnlab._hdf5 import (
    AtomicWrite,
    TrajectoryArrays,
    check_schema,
    open_read,
    raise_if_interrupted,
    read_attr,
    read_json_attr,
    write_attrs,
)
from hnnlab.errors import FileFormatError, HnnlabError, InvalidArgumentError
from hnnlab.inputs import INTERPOLATIONS, InputSignal
from hnnlab.integrators import INTEGRATORS, get_integrator
from hnnlab.systems.registry import rebuild_system

SCHEMA = "hnnlab.rollout"
SCHEMA_VERSION = 2
READ_VERSIONS = (1, 2)  # versions this hnnlab reads; version 1 files have no inputs
JSON_ATTRS = frozenset({"integrator", "system", "model", "reference_integrator", "extra", "inputs"})
DEFAULT_TIME_CHUNK = 256
# The integrator name of a rollout made by a discrete-time forecaster (an echo state network) on the data's own step:
# no vector field was integrated, so there is no integrator to rebuild (Rollout.integrator() is None).
DISCRETE_MAP = "discrete_map"
_CHUNK_CACHE_BYTES = 64 * 2**20


class RolloutFileError(FileFormatError):
    """A rollout (or other hnnlab HDF5) file that is missing, unreadable or does not follow its spec."""


@dataclass
class RolloutMetadata:
    """What produced a rollout: enough to rebuild the system and integrator and to reproduce the run.

    Attributes:
        integrator: ``integrator.describe()`` of the method that produced ``state``.
        dt: integrator step size.
        save_every: one saved state every ``save_every`` steps (``t[k] = t0 + k * save_every * dt``).
        t0: initial time.
        system: ``system.describe()`` (contains ``"class"`` and ``"params"``), ``None`` when unknown.
        model: ``model.describe()`` of the learned model, ``None`` for a rollout of the true system.
        checkpoint: path of the checkpoint the model came from.
        reference_integrator: ``describe()`` of the method that produced ``reference``.
        command: the command line that made the file.
        extra: anything else (JSON-serialisable).
    """

    integrator: dict[str, Any]
    dt: float
    save_every: int = 1
    t0: float = 0.0
    system: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    checkpoint: str | None = None
    reference_integrator: dict[str, Any] | None = None
    command: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.integrator, Mapping) or "name" not in self.integrator:
            raise InvalidArgumentError(
                f"metadata.integrator must be integrator.describe() (a dict with a 'name'), got {self.integrator!r}"
            )
        dt = self.dt
        if isinstance(dt, bool) or not isinstance(dt, int | float) or not np.isfinite(dt) or dt <= 0:
            raise InvalidArgumentError(f"metadata.dt must be a finite number > 0, got {dt!r}")
        if isinstance(self.save_every, bool) or not isinstance(self.save_every, int) or self.save_every < 1:
            raise InvalidArgumentError(f"metadata.save_every must be an integer >= 1, got {self.save_every!r}")
        for name in ("system", "model", "reference_integrator"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise InvalidArgumentError(f"metadata.{name} must be a dict (describe()) or None, got {value!r}")
        if self.system is not None and not {"class", "params"} <= set(self.system):
            raise InvalidArgumentError(
                "metadata.system must be system.describe() with keys 'class' and 'params', got keys "
                f"{sorted(self.system)}"
            )

    def time_grid(self, n_times: int) -> Tensor:
        """``t0 + k * save_every * dt`` for ``k = 0 .. n_times - 1``, float64."""
        return self.t0 + torch.arange(n_times, dtype=torch.float64) * (self.save_every * self.dt)


@dataclass
class Rollout(TrajectoryArrays):
    """A rollout file loaded into memory (see the module docstring for the layout)."""

    path: str
    t: Tensor  # (n_times,) float64
    state: Tensor  # (n_traj, n_times, 2 * dof)
    reference: Tensor | None  # (n_traj, n_times, 2 * dof)
    energy_model: Tensor | None  # (n_traj, n_times)
    first_nonfinite_step: Tensor  # (n_traj,) int64, -1 = finite
    metadata: RolloutMetadata
    inputs: InputSignal | None = None  # the inputs that drove the rollout (version 2 files that store them)
    schema_version: int = SCHEMA_VERSION
    created: str = ""
    hnnlab_version: str = ""

    @property
    def dof(self) -> int:
        return self.state.shape[2] // 2

    def system(self):
        """The analytic system rebuilt from the metadata, or ``None`` when the file names none."""
        return rebuild_system(self.metadata.system, source=repr(self.path), error=RolloutFileError)

    def integrator(self):
        """The integrator rebuilt from the metadata (``allow_nonseparable=True``: it already ran); ``None`` for a
        discrete-time forecaster's rollout (integrator name :data:`DISCRETE_MAP`)."""
        return rebuild_integrator(self.metadata.integrator, source=self.path)


class RolloutWriter:
    """Streams a batched rollout to an HDF5 file, atomically.

    The file is written under a temporary name in the target's directory (created if needed) and moved
    to ``path`` only when the ``with`` block ends without an exception (:class:`hnnlab._hdf5.AtomicWrite`);
    on failure nothing is left at ``path`` (and an existing file there is untouched). An existing ``path``
    is refused unless ``overwrite=True``.

    Usage::

        meta = RolloutMetadata(integrator=integrator.describe(), dt=dt, save_every=k, system=system.describe())
        with RolloutWriter(path, n_traj, dof, torch.float64, meta, with_reference=True) as writer:
            for chunk, ref in zip(iter_rollout(model, integrator, x0, dt, n, k),
                                  iter_rollout(system, "dopri8", x0, dt, n, k)):
                writer.append(chunk, reference=ref)  # (batch, chunk_len, 2 * dof)

    Trajectories may be written in several batches (``append(..., start=i)``). Each trajectory receives
    its saved states in time order; the time grid ``t`` is written at the end from the metadata.
    A trajectory with a non-finite state (found in the data, or reported with :meth:`mark_nonfinite`,
    e.g. from a :class:`~hnnlab.errors.NonFiniteStateError`) may stop early: its remaining states are
    NaN. Any other trajectory with fewer saved states than the longest is an error at the end.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n_traj: int,
        dof: int,
        dtype: torch.dtype = torch.float64,
        metadata: RolloutMetadata | Mapping[str, Any] | None = None,
        with_reference: bool = False,
        overwrite: bool = False,
        *,
        with_energy_model: bool = False,
        time_chunk: int = DEFAULT_TIME_CHUNK,
        inputs: InputSignal | None = None,
    ) -> None:
        if inputs is not None and (not isinstance(inputs, InputSignal) or inputs.n_traj != n_traj):
            got = f"{inputs.n_traj} trajectories" if isinstance(inputs, InputSignal) else type(inputs).__name__
            raise InvalidArgumentError(f"inputs must be an InputSignal of the n_traj = {n_traj} trajectories, "
                                       f"got {got}")
        self.inputs = inputs
        for name, value in (("n_traj", n_traj), ("dof", dof), ("time_chunk", time_chunk)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
        if dtype not in (torch.float32, torch.float64):
            raise InvalidArgumentError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if metadata is None:
            raise InvalidArgumentError("metadata is required: RolloutMetadata(integrator=..., dt=..., ...)")
        if isinstance(metadata, Mapping):
            try:
                metadata = RolloutMetadata(**metadata)
            except TypeError as exc:
                raise InvalidArgumentError(f"metadata: {exc}") from None
        self.path = Path(path)
        self._target = AtomicWrite(
            path, overwrite=overwrite, what="rollout file", error=InvalidArgumentError,
            overwrite_flag="overwrite=True (--overwrite)",
        )
        self.n_traj, self.dof, self.dtype = n_traj, dof, dtype
        self.metadata = metadata
        self.with_reference, self.with_energy_model = with_reference, with_energy_model
        self.time_chunk = time_chunk
        self._file = None
        self._cursor = np.zeros(n_traj, dtype=np.int64)  # saved states written per trajectory
        self._first_bad = np.full(n_traj, -1, dtype=np.int64)  # integrator step, -1 = finite

    # -- context manager -------------------------------------------------------------------------

    def __enter__(self) -> RolloutWriter:
        np_dtype = _np_dtype(self.dtype)
        width = 2 * self.dof
        try:
            self._file = h5py.File(self._target.begin(), "w", rdcc_nbytes=_CHUNK_CACHE_BYTES)
            chunks = (1, self.time_chunk, width)
            names = ["state"] + (["reference"] if self.with_reference else [])
            for name in names:
                self._file.create_dataset(
                    name, shape=(self.n_traj, 0, width), maxshape=(self.n_traj, None, width), dtype=np_dtype,
                    chunks=chunks, fillvalue=np.nan,
                )
            if self.with_energy_model:
                self._file.create_dataset(
                    "energy_model", shape=(self.n_traj, 0), maxshape=(self.n_traj, None), dtype=np_dtype,
                    chunks=(1, self.time_chunk), fillvalue=np.nan,
                )
        except BaseException:
            self.abort()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- writing ---------------------------------------------------------------------------------

    def append(
        self,
        states: Tensor,
        *,
        reference: Tensor | None = None,
        energy_model: Tensor | None = None,
        start: int = 0,
    ) -> None:
        """Append the next saved states ``(batch, chunk_len, 2 * dof)`` of trajectories ``start .. start + batch``.

        ``reference`` has the same shape (required when the writer was made ``with_reference``);
        ``energy_model`` is ``(batch, chunk_len)``.
        """
        if self._file is None:
            raise InvalidArgumentError("RolloutWriter.append called outside its 'with' block")
        raise_if_interrupted()  # a stop signal that h5py swallowed stops the rollout at the next chunk
        states = self._check_chunk("states", states, start)
        batch, length = states.shape[:2]
        rows = slice(start, start + batch)
        begin = int(self._cursor[start])
        if not bool((self._cursor[rows] == begin).all()):
            raise InvalidArgumentError(
                f"trajectories {start}..{start + batch - 1} have different numbers of saved states "
                f"({sorted(set(self._cursor[rows].tolist()))}); append each batch of trajectories in time order"
            )
        if self.with_reference and reference is None:
            raise InvalidArgumentError("this writer was made with_reference=True: pass reference= with each chunk")
        if not self.with_reference and reference is not None:
            raise InvalidArgumentError("reference given, but the writer was made with_reference=False")
        if self.with_energy_model and energy_model is None:
            raise InvalidArgumentError(
                "this writer was made with_energy_model=True: pass energy_model= with each chunk"
            )
        end = begin + length
        self._grow(end)
        self._file["state"][rows, begin:end] = _to_numpy(states, self.dtype)
        if reference is not None:
            reference = self._check_chunk("reference", reference, start)
            if reference.shape != states.shape:
                raise InvalidArgumentError(
                    f"reference must have the shape of states {tuple(states.shape)}, got {tuple(reference.shape)}"
                )
            self._file["reference"][rows, begin:end] = _to_numpy(reference, self.dtype)
        if energy_model is not None:
            if tuple(energy_model.shape) != (batch, length):
                raise InvalidArgumentError(
                    f"energy_model must have shape (batch, chunk_len) = {(batch, length)}, got "
                    f"{tuple(energy_model.shape)}"
                )
            if self.with_energy_model:
                self._file["energy_model"][rows, begin:end] = _to_numpy(energy_model, self.dtype)
        finite = torch.isfinite(states.detach()).all(dim=-1)  # (batch, chunk_len)
        bad_rows = torch.nonzero(~finite.all(dim=1)).flatten().tolist()
        for b in bad_rows:
            k = begin + int(torch.nonzero(~finite[b])[0])
            self._note_bad(start + b, k * self.metadata.save_every)
        self._cursor[rows] = end

    def mark_nonfinite(self, trajectory: int, step: int) -> None:
        """Record that ``trajectory`` became non-finite at integrator ``step`` (e.g. from
        :class:`~hnnlab.errors.NonFiniteStateError`); its unwritten states stay NaN."""
        if isinstance(trajectory, bool) or not isinstance(trajectory, int) or not 0 <= trajectory < self.n_traj:
            raise InvalidArgumentError(f"trajectory must be an integer in [0, {self.n_traj}), got {trajectory!r}")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise InvalidArgumentError(f"step must be an integer >= 0, got {step!r}")
        self._note_bad(trajectory, step)

    def close(self) -> None:
        """Finish the file and move it to its path (called by ``__exit__``)."""
        if self._file is None:
            return
        try:
            n_times = int(self._cursor.max())
            short = np.nonzero((self._cursor < n_times) & (self._first_bad < 0))[0]
            if n_times == 0:
                raise InvalidArgumentError(f"no states were written to rollout {str(self.path)!r}")
            if len(short):
                i = int(short[0])
                raise InvalidArgumentError(
                    f"trajectory {i} has {int(self._cursor[i])} saved states but others have {n_times}, and it "
                    "was not marked non-finite; the rollout is incomplete"
                )
            self._grow(n_times)
            f = self._file
            f.create_dataset("t", data=self.metadata.time_grid(n_times).numpy())
            f.create_dataset("first_nonfinite_step", data=self._first_bad)
            if self.inputs is not None:
                f.create_dataset("inputs", data=self.inputs.values.detach().to("cpu", torch.float64).numpy())
                f.create_dataset("inputs_t", data=self.inputs.t.numpy())
            meta = self.metadata
            attrs = {
                "schema": SCHEMA,
                "schema_version": SCHEMA_VERSION,
                "integrator": meta.integrator,
                "dt": float(meta.dt),
                "save_every": int(meta.save_every),
                "t0": float(meta.t0),
                "n_traj": self.n_traj,
                "n_times": n_times,
                "dof": self.dof,
                "dtype": str(self.dtype).removeprefix("torch."),
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "hnnlab_version": __version__,
                "extra": meta.extra,
            }
            if self.inputs is not None:
                attrs["inputs"] = {"interpolation": self.inputs.interpolation, "n_inputs": self.inputs.n_inputs}
            for name in ("system", "model", "reference_integrator"):
                if getattr(meta, name) is not None:
                    attrs[name] = getattr(meta, name)
            for name in ("checkpoint", "command"):
                if getattr(meta, name) is not None:
                    attrs[name] = str(getattr(meta, name))
            write_attrs(f, attrs, json_keys=JSON_ATTRS)
            f.close()
            self._file = None
            self._target.commit()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Discard the temporary file; nothing is written at the target path."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        self._target.discard()

    # -- internals -------------------------------------------------------------------------------

    def _check_chunk(self, name: str, x: Tensor, start: int) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != 2 * self.dof or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InvalidArgumentError(
                f"{name} must be a floating tensor (batch, chunk_len, 2 * dof = {2 * self.dof}), got {shape}"
            )
        if isinstance(start, bool) or not isinstance(start, int) or start < 0 or start + x.shape[0] > self.n_traj:
            raise InvalidArgumentError(
                f"start = {start!r} with a batch of {x.shape[0]} does not fit n_traj = {self.n_traj}"
            )
        return x

    def _grow(self, n_times: int) -> None:
        for name in ("state", "reference", "energy_model"):
            if name in self._file and self._file[name].shape[1] < n_times:
                self._file[name].resize(n_times, axis=1)

    def _note_bad(self, trajectory: int, step: int) -> None:
        current = int(self._first_bad[trajectory])
        self._first_bad[trajectory] = step if current < 0 else min(current, step)


# --------------------------------------------------------------------------------------------------
# Reading


def open_hdf5(path: str | os.PathLike[str], *, what: str = "file") -> h5py.File:
    """Open an HDF5 file read-only with a clear :class:`RolloutFileError` for the usual failures."""
    return open_read(path, what=what, error=RolloutFileError)


def read_dataset(f, name: str, *, path: str, rows: Any = None) -> np.ndarray:
    """Read dataset ``name`` (optionally a selection of its first axis) with a clear error."""
    if name not in f:
        raise RolloutFileError(f"{path!r}: missing dataset {name!r}")
    obj = f[name]
    if not hasattr(obj, "shape"):
        raise RolloutFileError(f"{path!r}: {name!r} is a group, expected a dataset")
    try:
        return obj[()] if rows is None else obj[rows]
    except (OSError, ValueError, TypeError) as exc:
        raise RolloutFileError(f"{path!r}: cannot read dataset {name!r} (truncated or corrupted file? {exc})") from None


def read_rollout(
    path: str | os.PathLike[str], *, trajectories: slice | Sequence[int] | None = None
) -> Rollout:
    """Load and validate a rollout file; ``trajectories`` selects a subset (a slice or sorted indices).

    Raises:
        RolloutFileError: a missing, non-HDF5 or truncated file, a wrong schema or version, a missing or
            inconsistent field; the message names the file and the field.
    """
    path = str(path)
    where = repr(path)
    with open_hdf5(path, what="rollout file") as f:
        schema_version = read_attr(f, "schema_version")
        if read_attr(f, "schema") == SCHEMA and (isinstance(schema_version, bool)
                                                 or schema_version not in READ_VERSIONS):
            raise RolloutFileError(f"{where}: root attribute 'schema_version' is {schema_version!r}; this hnnlab "
                                   f"reads versions {', '.join(map(str, READ_VERSIONS))}")
        check_schema(f, schema=SCHEMA, version=schema_version, kind="hnnlab rollout file", where=where,
                     error=RolloutFileError)
        rows = _rows(trajectories, path)
        state = read_dataset(f, "state", path=path, rows=rows)
        t = read_dataset(f, "t", path=path)
        first_bad = read_dataset(f, "first_nonfinite_step", path=path, rows=rows)
        reference = read_dataset(f, "reference", path=path, rows=rows) if "reference" in f else None
        energy_model = read_dataset(f, "energy_model", path=path, rows=rows) if "energy_model" in f else None
        inputs = _read_inputs(f, path, rows, schema_version)
        integrator = read_json_attr(f, "integrator", where=where, error=RolloutFileError, required=True)
        try:
            metadata = RolloutMetadata(
                integrator=integrator,
                dt=float(_required_attr(f, "dt", path)),
                save_every=int(_required_attr(f, "save_every", path)),
                t0=float(f.attrs.get("t0", 0.0)),
                system=read_json_attr(f, "system", where=where, error=RolloutFileError),
                model=read_json_attr(f, "model", where=where, error=RolloutFileError),
                checkpoint=_str_attr(f, "checkpoint"),
                reference_integrator=read_json_attr(f, "reference_integrator", where=where, error=RolloutFileError),
                command=_str_attr(f, "command"),
                extra=read_json_attr(f, "extra", where=where, error=RolloutFileError) or {},
            )
        except InvalidArgumentError as exc:
            raise RolloutFileError(f"{path!r}: invalid metadata: {exc}") from None
        created, version = _str_attr(f, "created") or "", _str_attr(f, "hnnlab_version") or ""
    if state.ndim != 3 or state.shape[-1] % 2 or not np.issubdtype(state.dtype, np.floating):
        raise RolloutFileError(
            f"{path!r}: dataset 'state' must be floating with shape (n_traj, n_times, 2 * dof), got "
            f"{state.shape} {state.dtype}"
        )
    n_traj, n_times, _ = state.shape
    if t.shape != (n_times,):
        raise RolloutFileError(f"{path!r}: dataset 't' must have shape (n_times,) = ({n_times},), got {t.shape}")
    if first_bad.shape != (n_traj,):
        raise RolloutFileError(
            f"{path!r}: dataset 'first_nonfinite_step' must have shape (n_traj,) = ({n_traj},), got {first_bad.shape}"
        )
    if reference is not None and reference.shape != state.shape:
        raise RolloutFileError(
            f"{path!r}: dataset 'reference' must have the shape of 'state' {state.shape}, got {reference.shape}"
        )
    if inputs is not None and inputs.n_traj != n_traj:
        raise RolloutFileError(
            f"{path!r}: dataset 'inputs' must have one row per trajectory (n_traj = {n_traj}), got "
            f"{tuple(inputs.values.shape)}"
        )
    if energy_model is not None and energy_model.shape != (n_traj, n_times):
        raise RolloutFileError(
            f"{path!r}: dataset 'energy_model' must have shape (n_traj, n_times) = {(n_traj, n_times)}, got "
            f"{energy_model.shape}"
        )
    return Rollout(
        path=path,
        t=torch.from_numpy(np.asarray(t, dtype=np.float64)),
        state=torch.from_numpy(state),
        reference=None if reference is None else torch.from_numpy(reference),
        energy_model=None if energy_model is None else torch.from_numpy(energy_model),
        first_nonfinite_step=torch.from_numpy(first_bad.astype(np.int64)),
        metadata=metadata,
        inputs=inputs,
        schema_version=int(schema_version),
        created=created,
        hnnlab_version=version,
    )


def _read_inputs(f, path: str, rows: Any, version: int) -> InputSignal | None:
    """The stored inputs (``/inputs``, ``/inputs_t`` and the root attribute ``inputs``), validated; ``None`` when
    the file has none. They are a version 2 feature: all three or none."""
    present = [name for name in ("inputs", "inputs_t") if name in f] + (["attribute inputs"] if "inputs" in f.attrs
                                                                         else [])
    if not present:
        return None
    if version < 2:
        raise RolloutFileError(f"{path!r}: 'inputs' needs schema_version 2, the file has version {version}")
    if len(present) < 3:
        missing = {"inputs", "inputs_t", "attribute inputs"} - set(present)
        raise RolloutFileError(
            f"{path!r}: stored inputs need the datasets 'inputs', 'inputs_t' and the root attribute 'inputs' "
            f"together; missing {', '.join(sorted(missing))}"
        )
    info = read_json_attr(f, "inputs", where=repr(path), error=RolloutFileError)
    if not isinstance(info, Mapping) or set(info) != {"interpolation", "n_inputs"}:
        raise RolloutFileError(
            f"{path!r}: root attribute 'inputs' must be a JSON object with keys 'interpolation' and 'n_inputs', got "
            f"{info!r}"
        )
    if info["interpolation"] not in INTERPOLATIONS:
        raise RolloutFileError(
            f"{path!r}: root attribute 'inputs': interpolation {info['interpolation']!r} is not one of "
            f"{', '.join(map(repr, INTERPOLATIONS))}"
        )
    values = read_dataset(f, "inputs", path=path, rows=rows)
    t = read_dataset(f, "inputs_t", path=path)
    n_inputs = info["n_inputs"]
    if (values.ndim != 3 or t.ndim != 1 or values.shape[1] != t.shape[0] or values.shape[2] != n_inputs
            or values.dtype != np.float64 or t.dtype != np.float64):
        raise RolloutFileError(
            f"{path!r}: dataset 'inputs' must be float64 (n_traj, n_input_times, n_inputs = {n_inputs!r}) on the "
            f"float64 times 'inputs_t' (n_input_times,); got {values.shape} {values.dtype} and {t.shape} {t.dtype}"
        )
    try:
        return InputSignal(torch.from_numpy(t), torch.from_numpy(values), info["interpolation"])
    except InvalidArgumentError as exc:
        raise RolloutFileError(f"{path!r}: dataset 'inputs' or 'inputs_t': {exc}") from None


def rebuild_integrator(description: Mapping[str, Any], *, source: str = "metadata"):
    """The integrator named by ``integrator.describe()``, with its constructor options (other keys of
    the description are ignored) and ``allow_nonseparable=True`` (the method already ran); ``None`` for
    :data:`DISCRETE_MAP` (a discrete-time forecaster's rollout: no integrator ran)."""
    if not isinstance(description, Mapping) or "name" not in description:
        raise RolloutFileError(f"{source!r}: integrator metadata {description!r} has no 'name'")
    if description["name"] == DISCRETE_MAP:
        return None
    try:
        cls = INTEGRATORS.get(description["name"])
        allowed = set(inspect.signature(cls).parameters) - {"self"}
        options = {k: v for k, v in description.items() if k in allowed}
        if "allow_nonseparable" in allowed:
            options["allow_nonseparable"] = True
        return get_integrator(description["name"], **options)
    except HnnlabError as exc:
        raise RolloutFileError(f"{source!r}: cannot rebuild the integrator from its metadata: {exc}") from None


def _rows(trajectories: slice | Sequence[int] | None, path: str) -> Any:
    if trajectories is None:
        return None
    if isinstance(trajectories, slice):
        return trajectories
    rows = [int(i) for i in trajectories]
    if rows != sorted(set(rows)):
        raise InvalidArgumentError(f"trajectories must be sorted distinct indices, got {list(trajectories)!r}")
    return rows


def _required_attr(f, name: str, path: str) -> Any:
    value = read_attr(f, name)
    if value is None:
        raise RolloutFileError(f"{path!r}: missing root attribute {name!r}")
    return value


def _str_attr(f, name: str) -> str | None:
    value = read_attr(f, name)
    return None if value is None else str(value)


def _np_dtype(dtype: torch.dtype) -> np.dtype:
    return np.dtype("float32") if dtype == torch.float32 else np.dtype("float64")


def _to_numpy(x: Tensor, dtype: torch.dtype) -> np.ndarray:
    return x.detach().to(device="cpu", dtype=dtype).numpy()


def metadata_dict(metadata: RolloutMetadata) -> dict[str, Any]:
    """The metadata as a plain dict (for reports)."""
    return dataclasses.asdict(metadata)

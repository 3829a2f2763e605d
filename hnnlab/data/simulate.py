"""Simulate a dataset: sample initial states, integrate them in one batch, split, add noise.

``simulate(system, n_traj, dt=..., n_steps=...)`` returns a :class:`SimulationResult` in memory;
:func:`~hnnlab.data.writer.write_dataset` writes it. Everything random is drawn, in a fixed order, from
one ``torch.Generator`` seeded with ``seed`` (initial states first, then noise), and the integration is
deterministic, so the same arguments give bit-identical arrays.
"""

from __future__ import annotations

import datetime as _datetime
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from hnnlab import __version__
from hnnlab.data.input_families import AbstractInputFamily
from hnnlab.data.io import SplitData
from hnnlab.data.schema import INPUTS_ATTR, SCHEMA_NAME, SCHEMA_VERSION, SPLITS
from hnnlab.errors import InvalidArgumentError
from hnnlab.inputs import DrivenField, InputSignal
from hnnlab.integrators import AbstractIntegrator, get_integrator
from hnnlab.rollout import iter_solve, solve
from hnnlab.systems.base import AbstractSystem, normal

DEFAULT_INTEGRATOR = "dopri8"
DEFAULT_INTEGRATOR_OPTIONS: dict[str, Any] = {"rtol": 1e-12, "atol": 1e-12}
DTYPES = {"float32": torch.float32, "float64": torch.float64}

InitialStates = Callable[[int, torch.Generator], Tensor]  # (n, generator) -> (n, 2 * dof) float64


@dataclass(frozen=True)
class SimulationResult:
    """A dataset in memory: root ``metadata`` (the spec's attributes) and ``splits`` by name."""

    metadata: dict[str, Any]
    splits: dict[str, SplitData] = field(default_factory=dict)

    def sizes(self) -> dict[str, tuple[int, int]]:
        """``{split: (n_traj, n_times)}`` for the non-empty splits."""
        return {k: (v.n_traj, v.n_times) for k, v in self.splits.items() if v.n_traj}

    def energy_spread(self) -> float:
        """Largest relative energy change along any clean trajectory, ``max |E(t) - E(0)| / max(|E(0)|, 1e-12)``.

        For a conservative system this is the ground-truth integrator's energy error.
        """
        worst = 0.0
        for split in self.splits.values():
            if split.n_traj and split.n_times > 1:
                e = split.energy.double()
                rel = (e - e[:, :1]).abs() / e[:, :1].abs().clamp_min(1e-12)
                worst = max(worst, float(rel.max()))
        return worst


def simulate(
    system: AbstractSystem,
    n_traj: int,
    *,
    dt: float,
    n_steps: int,
    integrator: str | AbstractIntegrator = DEFAULT_INTEGRATOR,
    integrator_options: Mapping[str, Any] | None = None,
    substeps: int = 1,
    noise_std: float = 0.0,
    seed: int = 0,
    splits: Sequence[float] = (0.8, 0.0, 0.2),
    dtype: torch.dtype | str = torch.float64,
    device: torch.device | str = "cpu",
    initial_states: InitialStates | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    recipe: Mapping[str, Any] | None = None,
    command: str | None = None,
    generator: torch.Generator | None = None,
    inputs: AbstractInputFamily | None = None,
) -> SimulationResult:
    """Simulate ``n_traj`` trajectories of ``system`` saved at ``t = 0, dt, ..., n_steps * dt``.

    The ground truth is integrated in float64 with ``integrator`` taking ``substeps`` steps of
    ``dt / substeps`` between saved states (an adaptive integrator such as ``dopri8`` adapts inside each
    step to its ``rtol``/``atol``). Derivatives ``dxdt`` and energies are the system's exact ones at the
    clean states; Gaussian noise of std ``noise_std`` is then added to the observed states (the clean
    ones are kept too). Trajectories are assigned to ``train, val, test`` in draw order.

    Args:
        system: the analytic system.
        n_traj: number of trajectories, ``>= 1``.
        dt: time between saved states, ``> 0``.
        n_steps: saved steps per trajectory, ``>= 0`` (``n_steps + 1`` saved times).
        integrator: ground-truth integrator (name or instance); default ``dopri8`` with
            ``rtol = atol = 1e-12``.
        integrator_options: options for a named integrator (``rtol``, ``atol``, ``tol``, ...).
        substeps: integrator steps per saved step, ``>= 1``.
        noise_std: standard deviation of the observation noise, ``>= 0``.
        seed: seed of the one generator that draws initial states and noise.
        splits: fractions ``(train, val, test)``, each ``>= 0``, summing to 1.
        dtype: stored dtype, ``float64`` or ``float32`` (integration is always float64).
        device: where to integrate (``"cpu"``, ``"cuda"``); drawing happens on the CPU.
        initial_states: a sampler ``(n, generator) -> (n, 2 * dof)`` replacing the system's own.
        batch_size: trajectories integrated per batch (default: all at once).
        progress: show progress: a bar over integration steps on a terminal, otherwise a line every 10 s.
        recipe, command: descriptions stored in the metadata.
        generator: draw from this generator instead of a fresh one seeded with ``seed`` (recipes that
            draw several parts from one stream); ``seed`` is still recorded.
        inputs: for a system with inputs (``n_inputs > 0``): the family the per-trajectory inputs are drawn from
            (:mod:`hnnlab.data.input_families`), after the initial states and before the noise. The trajectories are
            integrated with them (:class:`hnnlab.inputs.DrivenField`), the derivatives use them, and the result holds
            them (``SplitData.inputs``, the root attribute ``inputs``: dataset format version 2).
    """
    _check_int("n_traj", n_traj, 1)
    _check_int("n_steps", n_steps, 0)
    _check_int("substeps", substeps, 1)
    _check_int("seed", seed, 0)
    if batch_size is not None:
        _check_int("batch_size", batch_size, 1)
    if not _is_number(dt) or dt <= 0:
        raise InvalidArgumentError(f"dt must be a finite number > 0, got {dt!r}")
    if not _is_number(noise_std) or noise_std < 0:
        raise InvalidArgumentError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    out_dtype = resolve_dtype(dtype)
    counts = split_counts(n_traj, splits)
    if isinstance(integrator, str):
        options = dict(DEFAULT_INTEGRATOR_OPTIONS if integrator == DEFAULT_INTEGRATOR and integrator_options is None
                       else integrator_options or {})
        integ = get_integrator(integrator, **options)
    else:
        if integrator_options:
            raise InvalidArgumentError("integrator_options cannot be given together with an integrator instance")
        integ = integrator
    integ.check_compatible(system)

    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    sampler = initial_states or (lambda n, g: system.sample_initial_states(n, g, dtype=torch.float64))
    x0 = sampler(n_traj, generator).to(torch.float64)  # (n_traj, 2 * dof)
    if x0.shape != (n_traj, 2 * system.dof):
        raise InvalidArgumentError(
            f"initial states must have shape (n_traj, 2 * dof) = {(n_traj, 2 * system.dof)}, got {tuple(x0.shape)}"
        )
    x0 = x0.to(device)
    n_times = n_steps + 1
    t = torch.arange(n_times, dtype=torch.float64) * dt  # (n_times,)
    u = None
    if inputs is not None:
        u = _draw_inputs(system, inputs, n_traj, t, generator)  # (n_traj, n_times, n_inputs) float64
    step = dt / substeps
    batch = batch_size or n_traj
    bar = bool(progress) and sys.stderr.isatty()  # a bar on a terminal, plain lines in a log or a pipe
    total = n_steps * substeps
    lines = None
    if progress and not bar:
        from hnnlab.evaluate import _ProgressLines

        lines = _ProgressLines(total * n_traj, "simulate", unit="trajectory-steps")
    parts = []
    with torch.no_grad():
        for i in range(0, n_traj, batch):
            xb = x0[i : i + batch]
            field = system if u is None else DrivenField(
                system, InputSignal(t, u[i : i + batch].to(device), inputs.interpolation))
            if lines is None:
                parts.append(solve(field, integ, xb, step, total, substeps, on_nonfinite="raise", progress=bar,
                                   description="simulate").ys)
                continue
            chunks = []  # the same loop, streamed, to report how far it is
            for chunk in iter_solve(field, integ, xb, step, total, substeps, on_nonfinite="raise", progress=False,
                                    chunk_size=max(2, -(-(n_steps + 1) // 20))):
                chunks.append(chunk)
                saved = sum(c.shape[1] for c in chunks) - 1
                lines.update(i * total + xb.shape[0] * saved * substeps)
            parts.append(torch.cat(chunks, dim=1))
        clean = torch.cat(parts).cpu()  # (n_traj, n_times, 2 * dof), float64
    dxdt, energy = exact_derivatives_and_energy(system, t, clean, u)
    noisy = clean + noise_std * normal(clean.shape, generator) if noise_std > 0 else None

    metadata = make_metadata(
        system, dt=float(dt), integrator={**integ.describe(), "substeps": substeps}, seed=seed,
        noise_std=float(noise_std), dtype=out_dtype, recipe=recipe, command=command,
    )
    if inputs is not None:
        metadata[INPUTS_ATTR] = {"names": system.input_names(), "interpolation": inputs.interpolation,
                                 "family": inputs.describe()}
    result_splits: dict[str, SplitData] = {}
    start = 0
    for name, count in zip(SPLITS, counts, strict=True):
        rows = slice(start, start + count)
        start += count

        def cast(x: Tensor, rows: slice = rows) -> Tensor:
            return x[rows].to(out_dtype).contiguous()

        result_splits[name] = SplitData(
            t=t,
            state=cast(noisy if noisy is not None else clean),
            dxdt=cast(dxdt),
            energy=cast(energy),
            clean_state=cast(clean) if noisy is not None else None,
            dt=float(dt) if n_times > 1 else 0.0,
            inputs=cast(u) if u is not None else None,
        )
    return SimulationResult(metadata=metadata, splits=result_splits)


def exact_derivatives_and_energy(
    system: AbstractSystem, t: Tensor, states: Tensor, inputs: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The system's ``dx/dt`` ``(n_traj, n_times, 2 * dof)`` and energy ``(n_traj, n_times)`` at ``states``, with
    the inputs ``(n_traj, n_times, n_inputs)`` at the same times where given."""
    n_traj, n_times, width = states.shape
    times = t.expand(n_traj, n_times).reshape(-1)
    with torch.no_grad():
        flat = states.reshape(-1, width)
        if inputs is None:
            dxdt = system.vector_field(times, flat).reshape(states.shape)
        else:
            u = inputs.reshape(n_traj * n_times, -1).to(states)
            dxdt = system.field_with_inputs(times, flat, u).reshape(states.shape)
        energy = system.energy(states)
    return dxdt, energy


def _draw_inputs(
    system: AbstractSystem, family: AbstractInputFamily, n_traj: int, t: Tensor, generator: torch.Generator,
) -> Tensor:
    """The inputs of every trajectory ``(n_traj, n_times, n_inputs)``, drawn from ``family``; refused for a system
    that takes none."""
    if not isinstance(family, AbstractInputFamily):
        raise InvalidArgumentError(
            f"inputs must be an input family (hnnlab.data.input_families.get_input_family), got {type(family).__name__}"
        )
    if system.n_inputs < 1:
        raise InvalidArgumentError(
            f"system {system.describe()['name']!r} takes no inputs (n_inputs = 0); input families need a system "
            "with an input map, e.g. spring_damper_chain"
        )
    return family.draw(n_traj, t, system.n_inputs, generator)


def make_metadata(
    system: AbstractSystem,
    *,
    dt: float,
    integrator: dict[str, Any],
    seed: int,
    noise_std: float,
    dtype: torch.dtype,
    recipe: Mapping[str, Any] | None,
    command: str | None,
) -> dict[str, Any]:
    """The root attributes of the spec, in its order."""
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "system": system.describe(),
        "coordinates": system.coordinates,
        "state_names": system.state_names(),
        "dof": system.dof,
        "dt": dt,
        "integrator": integrator,
        "seed": seed,
        "noise_std": noise_std,
        "dtype": str(dtype).removeprefix("torch."),
        "recipe": dict(recipe or {}),
        "hnnlab_version": __version__,
        "created": creation_time(),
        "command": command or "hnnlab.data.simulate(...)",
    }


def creation_time() -> str:
    """UTC time in ISO 8601; ``SOURCE_DATE_EPOCH`` fixes it for byte-reproducible files."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        _datetime.datetime.fromtimestamp(int(epoch), _datetime.UTC)
        if epoch and epoch.isdigit()
        else _datetime.datetime.now(_datetime.UTC)
    )
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def split_counts(n_traj: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Trajectories per split ``(train, val, test)``: rounded fractions, the test split takes the rest."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise InvalidArgumentError(
            f"splits must be three fractions (train, val, test), each >= 0, summing to 1; got {fractions!r}"
        )
    n_train = round(fractions[0] * n_traj)
    n_val = min(n_traj - n_train, round(fractions[1] * n_traj))
    return n_train, n_val, n_traj - n_train - n_val


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if dtype in DTYPES.values():
        return dtype  # type: ignore[return-value]
    raise InvalidArgumentError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")

"""Families of random inputs ``u(t)`` for driven systems: what a dataset's inputs are drawn from.

Each family draws, from one ``torch.Generator``, the samples ``(n_traj, n_times, n_inputs)`` of every trajectory's
inputs on the saved time grid, and names the interpolation that the simulation and the stored file use between
samples (:class:`hnnlab.inputs.InputSignal`), so that the stored samples and their rule are exactly the inputs the
trajectories were integrated with:

- ``sinusoids`` (:class:`Sinusoids`): ``u_i(t) = (amplitude / n_terms) sum_j sin(omega_ij t + phi_ij)``, each
  frequency ``omega_ij`` uniform in ``frequency = (low, high)`` (rad per time unit) and each phase uniform in
  ``[0, 2 pi)``, per trajectory and input; sampled on the grid and interpolated linearly (keep the grid fine
  against ``high``: the integrated input is the piecewise-linear interpolant of the samples).
- ``steps`` (:class:`Steps`): piecewise-constant levels uniform in ``[-amplitude, amplitude]``, switching at
  ``n_switches`` sample times drawn uniformly without replacement among the interior ones, per trajectory and
  input; a zero-order hold.

``get_input_family("sinusoids", n_terms=2)`` builds one (unknown names and parameters are refused with the allowed
ones); ``family.describe()`` is the ``family`` entry of the dataset's root attribute ``inputs``.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError


@dataclass(frozen=True)
class AbstractInputFamily(abc.ABC):
    """A distribution of input signals; subclasses are frozen dataclasses of their parameters."""

    name: ClassVar[str] = ""
    interpolation: ClassVar[str] = "zoh"

    @abc.abstractmethod
    def draw(self, n_traj: int, t: Tensor, n_inputs: int, generator: torch.Generator) -> Tensor:
        """Samples ``(n_traj, n_times, n_inputs)`` float64 on the grid ``t`` ``(n_times,)``."""

    def describe(self) -> dict[str, Any]:
        """``{"name": ..., parameters...}`` (JSON-ready), with the interpolation."""
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return {"name": self.name, "interpolation": self.interpolation, **params}


@dataclass(frozen=True)
class Sinusoids(AbstractInputFamily):
    """Sums of ``n_terms`` sinusoids with random frequencies and phases (see the module docstring)."""

    name: ClassVar[str] = "sinusoids"
    interpolation: ClassVar[str] = "linear"
    n_terms: int = 3
    amplitude: float = 1.0
    frequency: tuple[float, float] = (0.5, 2.0)

    def __post_init__(self) -> None:
        _require_int(self, "n_terms", self.n_terms)
        _require_number(self, "amplitude", self.amplitude)
        object.__setattr__(self, "frequency", _interval(self, "frequency", self.frequency))

    def draw(self, n_traj: int, t: Tensor, n_inputs: int, generator: torch.Generator) -> Tensor:
        low, high = self.frequency
        shape = (n_traj, 1, n_inputs, self.n_terms)
        omega = low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)
        phase = 2 * math.pi * torch.rand(shape, generator=generator, dtype=torch.float64)
        tt = t.to(torch.float64)[None, :, None, None]  # (1, n_times, 1, 1)
        return (self.amplitude / self.n_terms) * torch.sin(omega * tt + phase).sum(-1)  # (n_traj, n_times, n_inputs)


@dataclass(frozen=True)
class Steps(AbstractInputFamily):
    """Piecewise-constant random levels with ``n_switches`` random switching times (see the module docstring)."""

    name: ClassVar[str] = "steps"
    interpolation: ClassVar[str] = "zoh"
    n_switches: int = 4
    amplitude: float = 1.0

    def __post_init__(self) -> None:
        _require_int(self, "n_switches", self.n_switches, minimum=0)
        _require_number(self, "amplitude", self.amplitude)

    def draw(self, n_traj: int, t: Tensor, n_inputs: int, generator: torch.Generator) -> Tensor:
        n_times = t.numel()
        switches = min(self.n_switches, max(n_times - 1, 0))
        levels = self.amplitude * (2 * torch.rand((n_traj, n_inputs, switches + 1), generator=generator,
                                                  dtype=torch.float64) - 1)
        # which level each sample holds: the number of switching times at or before it
        keys = torch.rand((n_traj, n_inputs, max(n_times - 1, 0)), generator=generator, dtype=torch.float64)
        chosen = keys.argsort(dim=-1)[..., :switches] + 1  # switching sample indices in 1..n_times-1
        jump = torch.zeros((n_traj, n_inputs, n_times), dtype=torch.long)
        jump.scatter_(-1, chosen, 1)
        index = jump.cumsum(-1)  # (n_traj, n_inputs, n_times) in 0..switches
        return levels.gather(-1, index).transpose(1, 2).contiguous()  # (n_traj, n_times, n_inputs)


INPUT_FAMILIES: dict[str, type[AbstractInputFamily]] = {cls.name: cls for cls in (Sinusoids, Steps)}


def get_input_family(name: str, **params: Any) -> AbstractInputFamily:
    """The family ``name`` with ``params``; a clear error for an unknown name or parameter."""
    if name not in INPUT_FAMILIES:
        raise InvalidArgumentError(
            f"unknown input family {name!r}; known: {', '.join(sorted(INPUT_FAMILIES))}"
        )
    cls = INPUT_FAMILIES[name]
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise InvalidArgumentError(
            f"input family {name!r} has no parameter {unknown[0]!r}; its parameters: {', '.join(allowed)}"
        )
    return cls(**params)


def _require_int(owner: object, key: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"input family {owner.name!r}: {key} must be an integer >= {minimum}, got {value!r}")


def _require_number(owner: object, key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"input family {owner.name!r}: {key} must be a finite number >= 0, got {value!r}")


def _interval(owner: object, key: str, value: object) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise InvalidArgumentError(
            f"input family {owner.name!r}: {key} must be two numbers (low, high) with 0 <= low <= high, got {value!r}"
        )
    return low, high

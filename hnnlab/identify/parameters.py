"""Learnable physical parameters of an analytic system (grey-box systems).

A :class:`ParameterSpec` says how one scalar parameter (the pendulum's ``g``, a spring's ``k``) is
mapped between an unconstrained value ``u`` (what an optimiser or an ensemble filter moves) and its
physical value ``theta``:

    "bounded"  (lo < theta < hi):  theta = lo + (hi - lo) sigmoid(u)
    "positive" (theta > 0):        theta = exp(u)
    "free":                        theta = u

:func:`with_parameters` returns a copy of a system whose parameters are tensors, a scalar (gradient
fitting) or one value per trajectory ``(batch, 1)`` (an ensemble): the system's own vector field then
broadcasts them over the batch, so every analytic system whose formulas are elementwise in its
parameters becomes a grey-box system without a line of its own.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError
from hnnlab.fields import AbstractRowField, AbstractSeparableField
from hnnlab.systems.base import AbstractSystem

TRANSFORMS = ("positive", "bounded", "free")


def scalar_parameters(system: AbstractSystem) -> list[str]:
    """Names of the system's scalar (float) dataclass parameters, the ones that can be learned."""
    return [f.name for f in dataclasses.fields(system)
            if isinstance(getattr(system, f.name), float) and not isinstance(getattr(system, f.name), bool)]


@dataclass(frozen=True)
class ParameterSpec:
    """One learnable parameter.

    Args:
        name: the system's attribute (``"g"``).
        init: starting physical value.
        transform: ``"positive"`` (default), ``"bounded"`` (needs ``bounds``) or ``"free"``.
        bounds: ``(lo, hi)`` with ``lo < init < hi`` for ``"bounded"``.
    """

    name: str
    init: float
    transform: str = "positive"
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise InvalidArgumentError(
                f"parameter {self.name!r}: transform must be one of {', '.join(TRANSFORMS)}, got {self.transform!r}"
            )
        if not isinstance(self.init, int | float) or isinstance(self.init, bool) or not math.isfinite(self.init):
            raise InvalidArgumentError(f"parameter {self.name!r}: initial value must be a finite number, "
                                       f"got {self.init!r}")
        if self.transform == "bounded":
            if self.bounds is None or len(self.bounds) != 2 or not self.bounds[0] < self.bounds[1]:
                raise InvalidArgumentError(f"parameter {self.name!r}: bounded needs bounds (lo, hi) with lo < hi, "
                                           f"got {self.bounds!r}")
            lo, hi = self.bounds
            if not lo < self.init < hi:
                raise InvalidArgumentError(f"parameter {self.name!r}: initial value {self.init!r} lies outside its "
                                           f"bounds ({lo!r}, {hi!r}); choose an initial value strictly inside")
        elif self.bounds is not None:
            raise InvalidArgumentError(f"parameter {self.name!r}: bounds are only allowed with transform "
                                       f"'bounded', got transform {self.transform!r}")
        if self.transform == "positive" and self.init <= 0:
            raise InvalidArgumentError(f"parameter {self.name!r}: a positive parameter needs an initial value > 0, "
                                       f"got {self.init!r}")

    def to_physical(self, u: Tensor) -> Tensor:
        """``theta(u)``, elementwise."""
        if self.transform == "positive":
            return torch.exp(u)
        if self.transform == "bounded":
            lo, hi = self.bounds  # type: ignore[misc]
            return lo + (hi - lo) * torch.sigmoid(u)
        return u

    def to_unconstrained(self, theta: Tensor) -> Tensor:
        """``u(theta)``, the inverse of :meth:`to_physical`."""
        if self.transform == "positive":
            return torch.log(theta)
        if self.transform == "bounded":
            lo, hi = self.bounds  # type: ignore[misc]
            s = (theta - lo) / (hi - lo)
            return torch.log(s) - torch.log1p(-s)
        return theta

    def dtheta_du(self, u: Tensor) -> Tensor:
        """Derivative of the transform, for carrying a standard deviation from ``u`` to ``theta``."""
        if self.transform == "positive":
            return torch.exp(u)
        if self.transform == "bounded":
            lo, hi = self.bounds  # type: ignore[misc]
            s = torch.sigmoid(u)
            return (hi - lo) * s * (1 - s)
        return torch.ones_like(u)


def make_specs(
    system: AbstractSystem,
    names: Sequence[str],
    *,
    init: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> list[ParameterSpec]:
    """Specs for ``names`` of ``system``: initial values from ``init`` (default: the system's own values),
    ``"bounded"`` where ``bounds`` has the name, else ``"positive"`` for a positive value and ``"free"`` otherwise.

    Raises:
        InvalidArgumentError: an unknown or repeated name (the message lists the system's parameters), an
            ``init`` or ``bounds`` entry for a parameter not being learned, or an initial value outside its bounds.
    """
    allowed = scalar_parameters(system)
    init, bounds = dict(init or {}), dict(bounds or {})
    if not names:
        raise InvalidArgumentError(f"no parameters to identify; {system.name} has: {', '.join(allowed)}")
    for name in names:
        if name not in allowed:
            raise InvalidArgumentError(f"unknown parameter {name!r} of system {system.name!r}; "
                                       f"its scalar parameters are: {', '.join(allowed)}")
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"parameters must not repeat, got {list(names)!r}")
    for kind, given in (("init", init), ("bounds", bounds)):
        extra = sorted(set(given) - set(names))
        if extra:
            raise InvalidArgumentError(f"{kind} given for {', '.join(map(repr, extra))}, which is not among the "
                                       f"parameters to identify ({', '.join(names)})")
    specs = []
    for name in names:
        value = float(init.get(name, getattr(system, name)))
        if name in bounds:
            specs.append(ParameterSpec(name, value, "bounded", tuple(float(b) for b in bounds[name])))  # type: ignore[arg-type]
        else:
            specs.append(ParameterSpec(name, value, "positive" if getattr(system, name) > 0 else "free"))
    return specs


def with_parameters(system: AbstractSystem, values: Mapping[str, Tensor | float]) -> AbstractSystem:
    """A shallow copy of ``system`` whose named parameters are ``values`` (scalars or ``(batch, 1)`` tensors).

    The copy skips the system's constructor checks (they take numbers, not batches); the values come from a
    :class:`ParameterSpec` transform, which keeps them in range.
    """
    copied = copy.copy(system)
    for name, value in values.items():
        object.__setattr__(copied, name, value)
    return copied


class RowParameterField(AbstractRowField):
    """``system`` with its own parameter values in every row of a batch: row ``i`` is trajectory ``rows[i]`` of
    the batch the field was built for, whose parameters are ``values[rows[i]]`` (``values``: ``(batch, n_params)``).

    A row field (:class:`~hnnlab.fields.AbstractRowField`), so the rollout loop, which steps only the rows that are
    still finite once some have blown up, keeps every row on its own parameters (an ensemble member, a shooting
    window with its own copy of the parameters). Declares the system's ``dof``, coordinates and conservativeness;
    :func:`row_parameter_field` returns the separable form for a separable system, so splitting methods accept it.
    """

    has_energy = False

    def __init__(self, system: AbstractSystem, names: Sequence[str], values: Tensor,
                 rows: Tensor | None = None) -> None:
        self.system, self.names, self.values, self.rows = system, list(names), values, rows
        self.dof = system.dof
        self.coordinates = system.coordinates
        self.conservative = system.conservative

    def _system(self) -> AbstractSystem:
        values = self.values if self.rows is None else self.values[self.rows.to(self.values.device)]
        return with_parameters(self.system, {name: values[:, i : i + 1] for i, name in enumerate(self.names)})

    def __call__(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self._system()(t, x)

    def bind(self, rows: Tensor | None, t: float, dt: float) -> RowParameterField:
        return type(self)(self.system, self.names, self.values, rows)

    def restrict(self, rows: Tensor) -> RowParameterField:
        current = self.rows if self.rows is not None else torch.arange(self.values.shape[0])
        return type(self)(self.system, self.names, self.values, current[rows.to(current.device)])

    def jumps_at(self, t: float, dt: float) -> bool:
        return False


class _SeparableRowParameterField(RowParameterField, AbstractSeparableField):
    """:class:`RowParameterField` of a separable system: its two halves, row by row."""

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self._system().dq_dt(t, x)

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self._system().dp_dt(t, x)


def row_parameter_field(system: AbstractSystem, names: Sequence[str], values: Tensor) -> RowParameterField:
    """``system`` with parameters ``names`` set row by row to ``values`` ``(batch, len(names))``
    (:class:`RowParameterField`; separable when the system is)."""
    cls = _SeparableRowParameterField if isinstance(system, AbstractSeparableField) else RowParameterField
    return cls(system, names, values)

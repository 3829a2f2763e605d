"""The vector-field protocol shared by analytic systems and learned models.

Everything hnnlab integrates is a vector field ``f(t, x) -> dx/dt`` on states ``(..., 2 * dof)``.
Systems (:class:`hnnlab.systems.base.AbstractSystem`) and models (:class:`hnnlab.models.base.AbstractModel`)
declare what they are as class attributes, and readers (integrators, the rollout loop, the audit) read
them, never probe for them:

- ``dof``: degrees of freedom (an ``int``; the state has ``2 * dof`` entries);
- ``coordinates``: ``"canonical"`` for ``(q, p)``, ``"lagrangian"`` for ``(q, q_dot)``;
- ``is_separable``: ``H = T(p) + V(q)``;
- ``conservative``: whether the exact flow conserves the field's energy;
- ``energy(x)``: the energy of states ``(..., 2 * dof)``, shape ``(...,)`` (``None`` for a field that has none,
  with ``has_energy = False``);
- ``n_inputs``: the number of external inputs ``u(t)`` the field takes (0 for an autonomous or closed-form driven
  field); a field with inputs provides ``field_with_inputs(t, x, u)``, and :class:`hnnlab.inputs.DrivenField`
  binds it to per-trajectory inputs.

A field that differs between the trajectories of a batch (per-trajectory inputs) is an :class:`AbstractRowField`:
whoever steps a subset of the rows of a batch (the rollout loop's live rows, the adaptive methods' unfinished rows)
restricts it to those rows with :func:`restrict_rows`, and the loop binds it to each step with :func:`bind_step`;
for every other field both are the identity.

Separability is a type: a separable field is an :class:`AbstractSeparableField`, which provides the two halves
``dq_dt(t, x)`` and ``dp_dt(t, x)`` (the drift depends on ``p`` only, the kick on ``q`` only), so splitting
methods evaluate only the half they need and reuse the last kick's force as the next step's first.

A plain callable ``f(t, x)`` is accepted wherever a field is: it declares nothing, so it is treated as a
general (non-separable) field whose structure is unknown (:func:`declared_separable` returns ``None``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor

VectorFieldFn = Callable[[Tensor | float, Tensor], Tensor]  # f(t, x: (..., 2 * dof)) -> (..., 2 * dof)
HalfField = Callable[[Tensor | float, Tensor], Tensor]  # (t, x: (..., 2 * dof)) -> (..., dof)
COORDINATES: tuple[str, ...] = ("canonical", "lagrangian")


class AbstractVectorField(abc.ABC):
    """A vector field ``dx/dt = f(t, x)`` that declares its structure (see the module docstring).

    Subclasses set the class attributes and implement ``__call__`` (models through ``nn.Module.forward``),
    and ``dof`` (a class attribute, an instance attribute or a property).
    """

    coordinates: ClassVar[str] = "canonical"
    is_separable: ClassVar[bool] = False
    conservative: ClassVar[bool] = True
    has_energy: ClassVar[bool] = True
    n_inputs: ClassVar[int] = 0
    dof: int

    def energy(self, x: Tensor) -> Tensor | None:
        """Energy of states ``(..., 2 * dof)``, shape ``(...,)``; ``None`` when ``has_energy`` is ``False``."""
        return None


class AbstractSeparableField(AbstractVectorField):
    """A field of a separable ``H = T(p) + V(q)``: ``dq/dt = dT/dp`` depends on ``p`` only and
    ``dp/dt = -dV/dq`` on ``q`` only, each available on its own."""

    is_separable: ClassVar[bool] = True

    @abc.abstractmethod
    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        """The coordinate half of the field at states ``(..., 2 * dof)``, shape ``(..., dof)``."""

    @abc.abstractmethod
    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        """The momentum half of the field at states ``(..., 2 * dof)``, shape ``(..., dof)``."""


class AbstractRowField(AbstractVectorField):
    """A field whose value depends on which trajectory a row of the batch is, and on the step being taken
    (:class:`hnnlab.inputs.DrivenField`, a field driven by per-trajectory inputs).

    Row ``i`` of a batch given to it is trajectory ``rows[i]`` of the batch it was built for. The rollout loop binds
    it to each step with :meth:`bind` (the whole-batch rows it steps, the step's interval), and an integrator that
    evaluates a subset of its rows restricts it with :meth:`restrict`.
    """

    @abc.abstractmethod
    def bind(self, rows: Tensor | None, t: float, dt: float) -> AbstractRowField:
        """The field for the step ``[t, t + dt]`` of the trajectories ``rows`` ``(n,)`` of the batch it was built
        for (``None``: all of them, in order)."""

    @abc.abstractmethod
    def restrict(self, rows: Tensor) -> AbstractRowField:
        """The same field on the rows ``rows`` ``(m,)`` of the batches it is given now."""

    @abc.abstractmethod
    def jumps_at(self, t: float, dt: float) -> bool:
        """Whether the field may jump at time ``t`` (within ``1e-6 dt``): a step that starts there must not reuse
        a field value computed before it (first-same-as-last)."""


def bind_step(f: Any, rows: Tensor | None, t: float, dt: float) -> Any:
    """``f`` for the step ``[t, t + dt]`` of the whole-batch rows ``rows`` (:meth:`AbstractRowField.bind`); ``f``
    itself for any other field."""
    return f.bind(rows, t, dt) if isinstance(f, AbstractRowField) else f


def restrict_rows(f: Any, rows: Tensor) -> Any:
    """``f`` on the rows ``rows`` of its current batch (:meth:`AbstractRowField.restrict`); ``f`` itself for any
    other field."""
    return f.restrict(rows) if isinstance(f, AbstractRowField) else f


def jumps_at(f: Any, t: float, dt: float) -> bool:
    """Whether ``f`` may jump at ``t`` (:meth:`AbstractRowField.jumps_at`); ``False`` for any other field."""
    return isinstance(f, AbstractRowField) and f.jumps_at(t, dt)


def declared_separable(f: Any) -> bool | None:
    """``f``'s declared separability: ``True`` or ``False`` for a field of the protocol, ``None`` for a plain
    callable (which declares nothing)."""
    if isinstance(f, AbstractSeparableField):
        return True
    if isinstance(f, AbstractVectorField):
        return False
    return None


def declared_dof(f: Any) -> int | None:
    """``f.dof`` for a field of the protocol, ``None`` for a plain callable."""
    return f.dof if isinstance(f, AbstractVectorField) else None


def describe_field(f: Any) -> str:
    """A short name of ``f`` for error messages."""
    if isinstance(f, AbstractVectorField):
        return type(f).__name__
    return f"the vector field {getattr(f, '__qualname__', None) or type(f).__name__}"


def split_field(f: Any) -> tuple[HalfField, HalfField]:
    """``(dq_dt, dp_dt)`` for ``f``: a separable field's own (cheaper) halves, else slices of ``f``."""
    if isinstance(f, AbstractSeparableField):
        return f.dq_dt, f.dp_dt

    def dq_dt(t: Tensor | float, x: Tensor) -> Tensor:
        return f(t, x)[..., : x.shape[-1] // 2]

    def dp_dt(t: Tensor | float, x: Tensor) -> Tensor:
        return f(t, x)[..., x.shape[-1] // 2 :]

    return dq_dt, dp_dt


class _Tally:
    """A count of field evaluations shared by a counted field and the fields bound or restricted from it."""

    def __init__(self) -> None:
        self.evaluations = 0.0


class _CountedField:
    """``f`` with a count of its evaluations, in whole-field units (a half counts ``0.5``)."""

    def __init__(self, f: Any, tally: _Tally | None = None) -> None:
        self.f = f
        self.tally = tally or _Tally()

    @property
    def evaluations(self) -> float:
        return self.tally.evaluations

    def __call__(self, t: Tensor | float, x: Tensor) -> Tensor:
        self.tally.evaluations += 1.0
        return self.f(t, x)


class _CountedSeparableField(_CountedField, AbstractSeparableField):
    """:class:`_CountedField` for a separable field, keeping its halves and declarations."""

    def __init__(self, f: AbstractSeparableField, tally: _Tally | None = None) -> None:
        super().__init__(f, tally)
        self.dof = f.dof

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        self.tally.evaluations += 0.5
        return self.f.dq_dt(t, x)

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        self.tally.evaluations += 0.5
        return self.f.dp_dt(t, x)


class _CountedRowField(_CountedField, AbstractRowField):
    """:class:`_CountedField` for a row field: its bound and restricted forms count into the same tally."""

    def __init__(self, f: AbstractRowField, tally: _Tally | None = None) -> None:
        super().__init__(f, tally)
        self.dof = f.dof

    def bind(self, rows: Tensor | None, t: float, dt: float) -> _CountedRowField:
        return _CountedRowField(self.f.bind(rows, t, dt), self.tally)

    def restrict(self, rows: Tensor) -> _CountedRowField:
        return _CountedRowField(self.f.restrict(rows), self.tally)

    def jumps_at(self, t: float, dt: float) -> bool:
        return self.f.jumps_at(t, dt)


def counted(f: Any) -> _CountedField:
    """A wrapper of ``f`` that counts its evaluations (``.evaluations``) and keeps its separability (and, for a row
    field, its binding to rows and steps)."""
    if isinstance(f, AbstractRowField):
        return _CountedRowField(f)
    return _CountedSeparableField(f) if isinstance(f, AbstractSeparableField) else _CountedField(f)

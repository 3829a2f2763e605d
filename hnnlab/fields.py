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
  with ``has_energy = False``).

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


class _CountedField:
    """``f`` with a count of its evaluations, in whole-field units (a half counts ``0.5``)."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.evaluations = 0.0

    def __call__(self, t: Tensor | float, x: Tensor) -> Tensor:
        self.evaluations += 1.0
        return self.f(t, x)


class _CountedSeparableField(_CountedField, AbstractSeparableField):
    """:class:`_CountedField` for a separable field, keeping its halves and declarations."""

    def __init__(self, f: AbstractSeparableField) -> None:
        super().__init__(f)
        self.dof = f.dof

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        self.evaluations += 0.5
        return self.f.dq_dt(t, x)

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        self.evaluations += 0.5
        return self.f.dp_dt(t, x)


def counted(f: Any) -> _CountedField:
    """A wrapper of ``f`` that counts its evaluations (``.evaluations``) and keeps its separability."""
    return _CountedSeparableField(f) if isinstance(f, AbstractSeparableField) else _CountedField(f)

"""Base class for time integrators and the checks shared by all of them.

An integrator advances states ``x`` of shape ``(..., 2 * dof)`` by one step of size ``dt`` for a
vector field ``f(t, x) -> dx/dt``. Each declares, as class attributes, its ``order``, whether it is
``symplectic``, ``explicit`` and ``symmetric`` (time-reversible), and whether it
``requires_separable`` ``H = T(p) + V(q)`` to be symplectic. A separable-only method paired with a
vector field that declares ``is_separable = False`` is refused before any step runs, unless the
integrator was built with ``allow_nonseparable=True`` (then it warns once).

Vector fields may expose ``dq_dt(t, x)`` and ``dp_dt(t, x)`` (systems and separable models do); the
split (kick/drift) methods then evaluate only the half they need.
"""

from __future__ import annotations

import abc
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor

from hnnlab.errors import IncompatibleIntegratorError, InvalidArgumentError

VectorField = Callable[[Tensor | float, Tensor], Tensor]  # f(t, x: (..., 2 * dof)) -> (..., 2 * dof)
HalfField = Callable[[Tensor | float, Tensor], Tensor]  # (t, x: (..., 2 * dof)) -> (..., dof)


class AbstractIntegrator(abc.ABC):
    """A one-step method ``x_{n+1} = step(f, t_n, x_n, dt)``.

    Subclasses implement :meth:`_step` (a pure function of its arguments, differentiable, batched,
    dtype- and device-agnostic) and declare the class attributes below.
    """

    name: ClassVar[str] = ""
    order: ClassVar[int]
    symplectic: ClassVar[bool]
    explicit: ClassVar[bool]
    symmetric: ClassVar[bool]
    requires_separable: ClassVar[bool]
    adaptive: ClassVar[bool] = False

    def __init__(self, *, allow_nonseparable: bool = False) -> None:
        self.allow_nonseparable = allow_nonseparable

    @abc.abstractmethod
    def _step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        """One step without argument checks (rollouts check once, then call this)."""

    def _steps(self, f: VectorField, t0: float, x: Tensor, dt: float, n_steps: int) -> Iterator[Tensor]:
        """The states after steps ``1 .. n_steps`` from ``x`` at time ``t0``, one at a time (the kernel of
        :func:`hnnlab.rollout.rollout`; no argument checks).

        Gives the same states as calling :meth:`_step` ``n_steps`` times; a method overrides it only to
        reuse work between consecutive steps (leapfrog reuses its last force evaluation).
        """
        for k in range(n_steps):
            x = self._step(f, t0 + k * dt, x, dt)
            yield x

    def step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        """Advance ``x`` (``(..., 2 * dof)``) from time ``t`` by ``dt > 0``; returns the new state.

        ``dt`` is a Python number (a one-element tensor is converted to one); the step is differentiable
        with respect to ``x`` and anything ``f`` depends on.
        """
        check_dt(dt)
        dt = float(dt)
        if not isinstance(x, Tensor) or x.ndim == 0 or x.shape[-1] % 2 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InvalidArgumentError(
                f"x must be a floating tensor of shape (..., 2 * dof), coordinates then momenta; got {shape}"
            )
        self.check_compatible(f)
        return self._step(f, t, x, dt)

    def check_compatible(self, f: Any) -> None:
        """Refuse (or, with ``allow_nonseparable``, warn about) a separable-only method on a
        vector field that declares itself non-separable."""
        if not self.requires_separable:
            return
        separable = declared_separable(f)
        if separable is not False:
            return
        what = describe_field(f)
        message = (
            f"integrator {self.name!r} is symplectic only for a separable H = T(p) + V(q), but {what} "
            f"declares is_separable=False. Use one of the non-separable methods: "
            f"{', '.join(nonseparable_names())}, or pass allow_nonseparable=True to accept a "
            "non-symplectic result."
        )
        if not self.allow_nonseparable:
            raise IncompatibleIntegratorError(message)
        warnings.warn(message.replace("Use one of", "Proceeding anyway; consider"), stacklevel=3)

    def describe(self) -> dict[str, Any]:
        """Self-description for dataset and rollout metadata."""
        return {
            "name": self.name,
            "order": self.order,
            "symplectic": self.symplectic,
            "explicit": self.explicit,
            "symmetric": self.symmetric,
            "requires_separable": self.requires_separable,
            "adaptive": self.adaptive,
            **self.options(),
        }

    def options(self) -> dict[str, Any]:
        """Constructor options (tolerances, iteration caps) beyond ``allow_nonseparable``."""
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


def check_dt(dt: Any) -> None:
    """Raise a clear error unless ``dt`` is a finite number > 0."""
    if isinstance(dt, Tensor):
        if dt.numel() != 1:
            raise InvalidArgumentError(f"dt must be a positive scalar, got a tensor of shape {tuple(dt.shape)}")
        dt = float(dt)
    if isinstance(dt, bool) or not isinstance(dt, int | float) or not math.isfinite(dt) or dt <= 0:
        raise InvalidArgumentError(f"dt must be a finite number > 0, got {dt!r}")


def _owner(f: Any) -> Any:
    """The object that carries metadata for ``f``: ``f`` itself or, for a bound method, its instance."""
    return getattr(f, "__self__", None) if not hasattr(f, "is_separable") else f


def declared_separable(f: Any) -> bool | None:
    """``f``'s declared separability: True, False, or None when it declares nothing."""
    owner = _owner(f)
    value = getattr(owner, "is_separable", None)
    return None if value is None else bool(value)


def describe_field(f: Any) -> str:
    owner = _owner(f)
    if owner is None:
        return f"the vector field {getattr(f, '__qualname__', repr(f))}"
    return f"{type(owner).__name__}"


def split_field(f: VectorField) -> tuple[HalfField, HalfField]:
    """``(dq_dt, dp_dt)`` for ``f``: its own (cheaper) halves where it has them, else slices of ``f``.

    ``f`` has its own halves when it defines ``dq_dt`` and ``dp_dt`` (systems, models), or when it is
    the bound ``vector_field`` method of such an object.
    """
    owner = f
    if not hasattr(f, "dq_dt") and getattr(f, "__name__", None) in ("vector_field", "__call__"):
        owner = getattr(f, "__self__", None)
    if hasattr(owner, "dq_dt") and hasattr(owner, "dp_dt"):
        return owner.dq_dt, owner.dp_dt

    def dq_dt(t: Tensor | float, x: Tensor) -> Tensor:
        return f(t, x)[..., : x.shape[-1] // 2]

    def dp_dt(t: Tensor | float, x: Tensor) -> Tensor:
        return f(t, x)[..., x.shape[-1] // 2 :]

    return dq_dt, dp_dt


def nonseparable_names() -> list[str]:
    from hnnlab.integrators.registry import INTEGRATORS

    classes = {name: INTEGRATORS.get(name) for name in INTEGRATORS.names()}
    return [name for name, cls in classes.items() if cls.symplectic and not cls.requires_separable]


def join_state(q: Tensor, p: Tensor) -> Tensor:
    return torch.cat([q, p], dim=-1)

"""Lagrangian neural network: accelerations from a learned ``L(q, q_dot)``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from hnnlab.dynamics import check_backend, euler_lagrange_accelerations, lagrangian_energy
from hnnlab.errors import InvalidArgumentError
from hnnlab.models.base import AbstractModel
from hnnlab.models.mlp import scalar_output
from hnnlab.models.registry import register_model

SOLVE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def resolve_solve_dtype(solve_dtype: str | None) -> torch.dtype | None:
    """The dtype named by ``solve_dtype`` (``None``: the state's own), else a clear error."""
    if solve_dtype is not None and solve_dtype not in SOLVE_DTYPES:
        raise InvalidArgumentError(
            f"solve_dtype must be None or one of {', '.join(map(repr, SOLVE_DTYPES))}, got {solve_dtype!r}"
        )
    return None if solve_dtype is None else SOLVE_DTYPES[solve_dtype]


@register_model("lnn")
class LNN(AbstractModel):
    """Lagrangian neural network (Cranmer et al. 2020): a network ``L_theta(q, q_dot)`` and the
    Euler-Lagrange equations

        ``q_dd = (d2L/dq_dot2)^-1 (dL/dq - d2L/(dq_dot dq) q_dot)``,  ``dx/dt = (q_dot, q_dd)``,

    with energy ``E = q_dot . dL/dq_dot - L``. The Hessian blocks are computed for the whole batch at
    once (autograd over the ``dof`` velocity rows, or ``torch.func``), and the linear system is solved,
    never inverted.

    The mass matrix ``d2L/dq_dot2`` of a network need not be invertible. An exactly singular one raises
    :class:`~hnnlab.errors.InvalidArgumentError`; ``regularization = eps > 0`` solves
    ``(d2L/dq_dot2 + eps I) q_dd = ...`` instead (a Tikhonov shift that biases ``q_dd`` by ``O(eps)``).
    In float32 the mass matrix is often ill-conditioned: ``solve_dtype="float64"`` solves in float64
    (the result keeps the state's dtype).

    Args:
        dof: degrees of freedom; states are ``(q, q_dot)``, ``(..., 2 * dof)``.
        hidden, activation, orthogonal_init: the default network ``MLP(2 * dof, hidden, 1, ...)``
            (Cranmer et al.: 3 x 600 softplus).
        solve_dtype: ``None`` (the state's dtype), ``"float32"`` or ``"float64"``.
        regularization: ``eps >= 0`` added to the diagonal of the mass matrix.
        net: a module mapping ``(..., 2 * dof)`` to ``(...,)`` or ``(..., 1)`` used as ``L`` (with
            ``backend="func"`` it must also map a single state ``(2 * dof,)`` to a scalar).
        backend: ``"autograd"`` or ``"func"`` (``vmap(jacrev(grad(L)))``, compilable with ``torch.compile``).
    """

    name: ClassVar[str] = "lnn"
    coordinates: ClassVar[str] = "lagrangian"
    is_separable: ClassVar[bool] = False

    def __init__(
        self,
        dof: int,
        hidden: Sequence[int] = (600, 600, 600),
        activation: str = "softplus",
        orthogonal_init: bool = False,
        solve_dtype: str | None = None,
        regularization: float = 0.0,
        net: nn.Module | None = None,
        backend: str = "autograd",
    ) -> None:
        super().__init__(dof)
        architecture = {"hidden": hidden, "activation": activation, "orthogonal_init": orthogonal_init}
        if isinstance(regularization, bool) or not isinstance(regularization, int | float) or not (
            math.isfinite(regularization) and regularization >= 0
        ):
            raise InvalidArgumentError(f"regularization must be a finite number >= 0, got {regularization!r}")
        check_backend(backend)
        self.solve_dtype = resolve_solve_dtype(solve_dtype)
        self.regularization = float(regularization)
        self.backend = backend
        self.net = self.network(net, 2 * self.dof, 1, architecture)

    def lagrangian(self, x: Tensor) -> Tensor:
        """``L_theta`` of states ``(..., 2 * dof)``, shape ``(...,)``."""
        return scalar_output(self.net(x), x, what="the Lagrangian network")

    def accelerations(self, x: Tensor) -> Tensor:
        """``q_dd`` of states ``(..., 2 * dof)``, shape ``(..., dof)``."""
        return euler_lagrange_accelerations(
            self.lagrangian, self.check_state(x), solve_dtype=self.solve_dtype,
            regularization=self.regularization, backend=self.backend,
        )

    def energy(self, x: Tensor) -> Tensor:
        return lagrangian_energy(self.lagrangian, self.check_state(x))

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        x = self.check_state(x)
        return torch.cat([x[..., self.dof :], self.accelerations(x)], dim=-1)

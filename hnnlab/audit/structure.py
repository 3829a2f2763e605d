"""Geometric structure of a one-step map: symplecticity, phase-space volume, time reversibility.

For a Hamiltonian flow in canonical coordinates ``x = (q, p)`` the exact time-``dt`` map ``phi`` is
symplectic: its Jacobian ``J = d phi / dx`` satisfies ``J^T Omega J = Omega`` with
``Omega = [[0, I], [-I, 0]]``, hence ``det J = 1`` (Liouville). A symplectic integrator keeps this
exactly (to round-off); RK4 and other non-symplectic methods do not. A symmetric method applied to a
reversible ``H(q, -p) = H(q, p)`` is time-reversible: ``R phi^N R phi^N x = x`` with ``R (q, p) = (q, -p)``.

The Jacobian is built with reverse-mode autograd, one backward pass per state component over the whole
batch (samples are independent, so ``d sum_b y_b[i] / d x_b`` is row ``i`` of sample ``b``'s
Jacobian). The graph is kept through the step (``create_graph`` inside the field), which is the
general path for vector fields that themselves call ``torch.autograd.grad`` (HNNs, Lagrangian models).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError
from hnnlab.integrators.base import AbstractIntegrator, VectorField, check_dt

StepMap = Callable[[Tensor], Tensor]  # (batch, 2 * dof) -> (batch, 2 * dof)


def one_step_map(f: VectorField, integrator: AbstractIntegrator, dt: float, *, t: float = 0.0) -> StepMap:
    """``x -> integrator.step(f, t, x, dt)`` without the compatibility check (the audit measures what
    the pair does, compatible or not)."""
    check_dt(dt)
    dt = float(dt)

    def step(x: Tensor) -> Tensor:
        return integrator._step(f, t, x, dt)

    return step


def step_jacobian(step: StepMap, x: Tensor) -> Tensor:
    """Per-sample Jacobian ``J[b, i, j] = d step(x)[b, i] / d x[b, j]``, shape ``(batch, 2 * dof, 2 * dof)``."""
    if x.ndim != 2 or x.shape[-1] % 2:
        raise InvalidArgumentError(f"x must have shape (batch, 2 * dof), got {tuple(x.shape)}")
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        y = step(x_in)  # (batch, 2 * dof)
        if y.shape != x.shape:
            raise InvalidArgumentError(f"the step map must return shape {tuple(x.shape)}, got {tuple(y.shape)}")
        rows = []
        for i in range(y.shape[-1]):
            (g,) = torch.autograd.grad(y[:, i].sum(), x_in, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(x_in) if g is None else g)
    return torch.stack(rows, dim=1).detach()  # (batch, 2 * dof, 2 * dof)


def canonical_form(dof: int, *, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> Tensor:
    """``Omega = [[0, I], [-I, 0]]``, ``(2 * dof, 2 * dof)``."""
    eye = torch.eye(dof, dtype=dtype, device=device)
    zero = torch.zeros(dof, dof, dtype=dtype, device=device)
    return torch.cat([torch.cat([zero, eye], dim=1), torch.cat([-eye, zero], dim=1)], dim=0)


def symplecticity_error(jacobian: Tensor) -> Tensor:
    """``||J^T Omega J - Omega||_F`` per sample, ``(batch,)``."""
    omega = canonical_form(jacobian.shape[-1] // 2, dtype=jacobian.dtype, device=jacobian.device)
    defect = jacobian.transpose(-1, -2) @ omega @ jacobian - omega
    return torch.linalg.matrix_norm(defect, ord="fro")


def volume_error(jacobian: Tensor) -> Tensor:
    """``|det J - 1|`` per sample, ``(batch,)``: the relative change of phase-space volume in one step."""
    return (torch.linalg.det(jacobian) - 1).abs()


def flip_momenta(x: Tensor) -> Tensor:
    """``R (q, p) = (q, -p)`` (velocities for Lagrangian states)."""
    dof = x.shape[-1] // 2
    return torch.cat([x[..., :dof], -x[..., dof:]], dim=-1)


def reversibility_error(step: StepMap, x0: Tensor, n_steps: int) -> Tensor:
    """``|| R phi^N R phi^N x0 - x0 ||`` (Euclidean norm over the state) per sample, ``(batch,)``.

    Exact (to round-off) for a symmetric method on a reversible, autonomous system.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise InvalidArgumentError(f"reversibility steps must be an integer >= 1, got {n_steps!r}")
    with torch.no_grad():
        x = x0.detach()
        for _ in range(n_steps):
            x = step(x)
        x = flip_momenta(x)
        for _ in range(n_steps):
            x = step(x)
        x = flip_momenta(x)
        err = (x - x0).norm(dim=-1)
    return torch.where(torch.isfinite(err), err, torch.inf)

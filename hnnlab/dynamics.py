"""From scalar functions to vector fields: Hamilton's and the Euler-Lagrange equations.

States are laid out as ``x = (q, p)`` (canonical) or ``x = (q, q_dot)`` (Lagrangian), shape
``(..., 2 * dof)``, coordinates first. These functions are shared by the analytic systems and by the
learned models so that both obey exactly the same equations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError

ScalarFn = Callable[[Tensor], Tensor]  # (..., 2 * dof) -> (...,)
Backend = Literal["autograd", "func"]
BACKENDS: tuple[str, ...] = ("autograd", "func")


def check_backend(backend: object) -> None:
    """Raise a clear error unless ``backend`` is ``"autograd"`` or ``"func"``."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(
            f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}, got {backend!r}"
        )


def split_state(x: Tensor) -> tuple[Tensor, Tensor]:
    """Split ``(..., 2 * dof)`` into coordinates and momenta (or velocities), each ``(..., dof)``."""
    dof = x.shape[-1] // 2
    return x[..., :dof], x[..., dof:]


def symplectic_gradient(dH: Tensor) -> Tensor:
    """Apply ``Omega^-1``: ``(dH/dq, dH/dp) -> (dH/dp, -dH/dq)``."""
    dH_dq, dH_dp = split_state(dH)
    return torch.cat([dH_dp, -dH_dq], dim=-1)


def input_gradient(
    fn: ScalarFn, x: Tensor, *, create_graph: bool | None = None, backend: Backend = "autograd"
) -> Tensor:
    """``d fn(x).sum() / dx`` for a batch of independent samples, shape of ``x``.

    Works under ``torch.no_grad`` (gradient mode is enabled locally). With ``create_graph=None`` the
    graph is kept when gradients are enabled by the caller and ``x`` or the parameters of ``fn`` need
    it (training), and dropped otherwise (rollouts, evaluation).

    ``backend="func"`` uses ``torch.func.grad`` instead of ``torch.autograd.grad(create_graph=True)``:
    the same numbers, but a form that ``torch.compile`` can compile (double backward included).
    """
    check_backend(backend)
    grad_enabled_outside = torch.is_grad_enabled()
    if backend == "func":
        grad = torch.func.grad(lambda z: fn(z).sum())(x)
        keep = grad_enabled_outside and create_graph is not False
        return grad if keep else grad.detach()
    with torch.enable_grad():
        x_in, value, create_graph = _traced(fn, x, create_graph, grad_enabled_outside)
        (grad,) = torch.autograd.grad(value.sum(), x_in, create_graph=create_graph)
    return grad if create_graph else grad.detach()


def hamiltonian_vector_field(
    hamiltonian: ScalarFn, x: Tensor, *, create_graph: bool | None = None, backend: Backend = "autograd"
) -> Tensor:
    """``dx/dt = (dH/dp, -dH/dq)`` by automatic differentiation of ``hamiltonian``."""
    return symplectic_gradient(input_gradient(hamiltonian, x, create_graph=create_graph, backend=backend))


def _traced(
    fn: ScalarFn, x: Tensor, create_graph: bool | None, grad_enabled_outside: bool
) -> tuple[Tensor, Tensor, bool]:
    """``fn`` evaluated (under ``torch.enable_grad``, by the caller) on ``x`` as a leaf that requires grad (``x``
    itself when it already does and gradients are enabled outside): the input, the value, and whether the
    derivatives keep their graph: as asked, or, for ``create_graph=None``, when gradients are enabled outside
    and ``x`` or the parameters of ``fn`` need it."""
    # ``x`` itself only where gradients flow to it: under ``torch.no_grad`` a view of a leaf that requires grad
    # still reports ``requires_grad`` but is not in any graph (differentiating with respect to it fails).
    x_in = x if x.requires_grad and grad_enabled_outside else x.detach().requires_grad_(True)
    value = fn(x_in)
    if create_graph is None:
        create_graph = grad_enabled_outside and (x.requires_grad or _has_parameters_graph(value, x_in))
    return x_in, value, create_graph


def _has_parameters_graph(value: Tensor, x_in: Tensor) -> bool:
    """Whether ``value`` depends on leaves other than ``x_in`` (i.e. trainable parameters)."""
    stack = [value.grad_fn]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if type(node).__name__ == "AccumulateGrad":
            if node.variable is not x_in:
                return True
            continue
        stack.extend(n for n, _ in node.next_functions)
    return False


def euler_lagrange_accelerations(
    lagrangian: ScalarFn,
    x: Tensor,
    *,
    create_graph: bool | None = None,
    solve_dtype: torch.dtype | None = None,
    regularization: float = 0.0,
    backend: Backend = "autograd",
) -> Tensor:
    """Accelerations ``q_dd`` from the Euler-Lagrange equations of ``L(q, q_dot)``.

    ``q_dd = (d2L/dq_dot2)^-1 (dL/dq - d2L/(dq_dot dq) q_dot)``, batched, never a per-sample loop:

    - ``backend="autograd"``: the ``dof`` rows of the Hessian that belong to the velocities are built
      with one backward pass each over the whole batch;
    - ``backend="func"``: ``vmap(jacrev(grad(L)))`` over the samples; ``lagrangian`` must then also
      accept a single state ``(2 * dof,)`` (anything written with ``[..., i]`` and ``sum(-1)`` does).
      This form compiles with ``torch.compile``.

    The linear system is solved (never inverted), optionally in ``solve_dtype`` (e.g. float64) and
    with ``regularization * I`` added to the mass matrix.

    Raises:
        InvalidArgumentError: if the mass matrix ``d2L/dq_dot2`` is singular for some sample.
    """
    check_backend(backend)
    grad_enabled_outside = torch.is_grad_enabled()
    dof = x.shape[-1] // 2
    if backend == "func":
        dL, hess = _lagrangian_derivatives_func(lagrangian, x)
        create_graph = grad_enabled_outside and create_graph is not False
        if not create_graph:
            dL, hess = dL.detach(), hess.detach()
    else:
        with torch.enable_grad():
            x_in, L, create_graph = _traced(lagrangian, x, create_graph, grad_enabled_outside)
            (dL,) = torch.autograd.grad(L.sum(), x_in, create_graph=True)
            # Row i of the Hessian of L with respect to x, restricted to the rows of q_dot.
            rows = [
                torch.autograd.grad(dL[..., dof + i].sum(), x_in, create_graph=create_graph, retain_graph=True)[0]
                for i in range(dof)
            ]
        hess = torch.stack(rows, dim=-2)  # (..., dof, 2 * dof): d/dx of dL/dq_dot_i
    q_dd = solve_euler_lagrange(
        dL[..., :dof], hess, x[..., dof:], solve_dtype=solve_dtype, regularization=regularization
    )
    return q_dd if create_graph else q_dd.detach()


def _lagrangian_derivatives_func(lagrangian: ScalarFn, x: Tensor) -> tuple[Tensor, Tensor]:
    """``dL/dx`` ``(..., 2 * dof)`` and the velocity rows of the Hessian ``(..., dof, 2 * dof)``
    with ``torch.func`` (vmap over the flattened batch)."""
    dof = x.shape[-1] // 2
    grad_L = torch.func.grad(lagrangian)  # (2 * dof,) -> (2 * dof,)

    def velocity_gradient(xi: Tensor) -> tuple[Tensor, Tensor]:
        g = grad_L(xi)
        return g[dof:], g

    flat = x.reshape(-1, x.shape[-1])  # (batch, 2 * dof)
    hess, dL = torch.func.vmap(torch.func.jacrev(velocity_gradient, has_aux=True))(flat)
    return dL.reshape(x.shape), hess.reshape(*x.shape[:-1], dof, 2 * dof)


def solve_euler_lagrange(
    dL_dq: Tensor,
    hess_rows: Tensor,
    q_dot: Tensor,
    *,
    solve_dtype: torch.dtype | None = None,
    regularization: float = 0.0,
) -> Tensor:
    """Solve ``M q_dd = dL/dq - C q_dot`` for ``q_dd`` ``(..., dof)``.

    ``hess_rows`` ``(..., dof, 2 * dof)`` holds ``d/dx (dL/dq_dot_i)``: its first ``dof`` columns are
    ``C = d2L/(dq_dot dq)``, its last ``dof`` columns the mass matrix ``M = d2L/dq_dot2``. The solve
    runs in ``solve_dtype`` when given (the result is cast back), with ``regularization * I`` added
    to ``M``.

    Raises:
        InvalidArgumentError: if ``M`` (after regularisation) is singular for some sample.
    """
    dof = q_dot.shape[-1]
    mixed = hess_rows[..., :dof]  # (..., dof, dof): d2L / (dq_dot_i dq_j)
    mass = hess_rows[..., dof:]  # (..., dof, dof): d2L / (dq_dot_i dq_dot_j)
    rhs = dL_dq - (mixed @ q_dot.unsqueeze(-1)).squeeze(-1)  # (..., dof)
    out_dtype = rhs.dtype
    if solve_dtype is not None:
        mass, rhs = mass.to(solve_dtype), rhs.to(solve_dtype)
    if regularization:
        mass = mass + regularization * torch.eye(dof, dtype=mass.dtype, device=mass.device)
    q_dd, info = torch.linalg.solve_ex(mass, rhs.unsqueeze(-1))
    if bool((info != 0).any()):
        bad = int(torch.nonzero(info.reshape(-1))[0])
        raise InvalidArgumentError(
            f"the mass matrix d2L/dq_dot2 is singular for sample {bad} of the batch (regularization = "
            f"{regularization!r}); the Lagrangian must be strictly convex in the velocities: pass "
            "regularization > 0 to add regularization * I to the mass matrix"
        )
    return q_dd.squeeze(-1).to(out_dtype)


def lagrangian_vector_field(lagrangian: ScalarFn, x: Tensor, **kwargs) -> Tensor:
    """``dx/dt = (q_dot, q_dd)`` for a Lagrangian state ``x = (q, q_dot)``."""
    q_dd = euler_lagrange_accelerations(lagrangian, x, **kwargs)
    return torch.cat([x[..., x.shape[-1] // 2 :], q_dd], dim=-1)


def lagrangian_energy(lagrangian: ScalarFn, x: Tensor, *, create_graph: bool | None = None) -> Tensor:
    """Energy ``E = q_dot . dL/dq_dot - L``, shape ``(...,)``.

    ``create_graph`` as in :func:`input_gradient`: by default the result keeps its graph (to ``x`` and
    to the parameters of ``lagrangian``) when gradients are enabled and something needs it.
    """
    grad_enabled_outside = torch.is_grad_enabled()
    dof = x.shape[-1] // 2
    with torch.enable_grad():
        x_in, L, create_graph = _traced(lagrangian, x, create_graph, grad_enabled_outside)
        (dL,) = torch.autograd.grad(L.sum(), x_in, create_graph=create_graph)
        E = (x_in[..., dof:] * dL[..., dof:]).sum(-1) - L
    return E if create_graph else E.detach()


def check_state(x: Tensor, *, name: str = "x0", dof: int | None = None) -> None:
    """Raise a clear error if ``x`` is not a finite floating state of shape ``(..., 2 * dof)``."""
    if not isinstance(x, Tensor):
        raise InvalidArgumentError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64):
        raise InvalidArgumentError(f"{name} must have a floating dtype (float32 or float64), got {x.dtype}")
    if x.ndim == 0 or x.shape[-1] % 2:
        raise InvalidArgumentError(
            f"{name} must have shape (..., 2 * dof) with coordinates then momenta, got shape {tuple(x.shape)}"
        )
    if dof is not None and x.shape[-1] != 2 * dof:
        raise InvalidArgumentError(
            f"{name} must have last dimension 2 * dof = {2 * dof}, got shape {tuple(x.shape)}"
        )
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite)[0].tolist()
        raise InvalidArgumentError(f"{name} contains a non-finite value (NaN or inf) at index {tuple(bad)}")

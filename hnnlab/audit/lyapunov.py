"""Lyapunov spectra of the discrete flow an integrator makes of a vector field.

The method is Benettin et al. (1980)'s: ``k`` tangent vectors ``Q`` (``(batch, 2 * dof, k)``, orthonormal)
are carried along a trajectory by the tangent map of the flow, ``Q <- D phi(x) Q``, and re-orthonormalised
every ``renorm_every`` steps by a QR factorisation ``D phi Q = Q' R``; the ``i``-th exponent is the time
average of ``log |R_ii|``. The flow here is the integrator's own ``renorm_every``-step map, so ``D phi`` is
the exact Jacobian of the discrete flow (no variational equations, no finite differences), computed as
batched Jacobian-vector products through :func:`hnnlab.rollout.solve`:

    y = phi(X),   g(u) = (dy/dX)^T u,   D phi V = d (g(u) . V) / du,

the "double vector-Jacobian product" form of a JVP, with ``X`` the trajectory's states repeated once per
tangent vector (the vector field is row-wise, so each row's Jacobian is its own). It works for every field
hnnlab integrates: analytic systems and learned models whose vector fields call ``torch.autograd.grad``.

For a Hamiltonian flow the spectrum comes in pairs ``+l, -l`` and sums to zero (a symplectic integrator keeps
both properties exactly for its own discrete flow, the sum to round-off); a regular orbit has all exponents
tending to zero as the horizon grows; a chaotic one a positive largest exponent ``l1`` whose inverse is the
Lyapunov time.
"""

from __future__ import annotations

import math
import sys
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError
from hnnlab.integrators.base import AbstractIntegrator, VectorField
from hnnlab.integrators.registry import get_integrator
from hnnlab.rollout import PROGRESS_MIN_STEPS, Status, _Bar, _start, check_count, solve


@dataclass
class LyapunovSpectrum:
    """The result of :func:`lyapunov_spectrum_solution`.

    Attributes:
        exponents: ``(batch, n_exponents)`` in descending order, in the dtype of ``x0``; NaN for a trajectory
            whose state or tangent vectors turned non-finite.
        status: ``(batch,)`` int8 codes of :class:`hnnlab.rollout.Status`.
        first_bad_step: ``(batch,)`` int64, the first step (counted from the start of the transient, 1 = the
            first) of the segment in which the trajectory turned non-finite or its implicit solve failed; ``-1``
            where it is ok.
        time: the averaging time ``n_steps * dt``.
    """

    exponents: Tensor
    status: Tensor
    first_bad_step: Tensor
    time: float

    @property
    def ok(self) -> Tensor:
        return self.status == Status.OK


class LyapunovWarning(UserWarning):
    """Some trajectories of a Lyapunov-spectrum computation turned non-finite; their exponents are NaN."""


def lyapunov_spectrum(f: VectorField, x0: Tensor, *, dt: float, n_steps: int, **options: Any) -> Tensor:
    """The Lyapunov spectrum of the discrete flow of ``integrator`` on ``f`` from each state of ``x0``.

    Args:
        f: the vector field (a system, a model, or any row-wise callable ``f(t, x)``).
        x0: initial states ``(batch, 2 * dof)`` (or ``(2 * dof,)``).
        dt: step size, ``> 0``.
        n_steps: steps averaged over, ``>= 1`` (after the transient).
        options: those of :func:`lyapunov_spectrum_solution`: ``integrator`` (default ``"yoshida4"``; it must be
            able to step ``f``: a separable-only method on a field that is not separable is refused before any
            step), ``n_exponents`` (how many of the largest, ``1..2 * dof``, default all), ``renorm_every`` (steps
            between QR re-orthonormalisations, default 1), ``transient_steps`` (run first, not averaged, default
            0: the trajectory settles and the tangent vectors align with the Lyapunov directions), ``t0``
            (initial time) and ``progress`` (a bar on long runs in a terminal by default).

    Returns:
        ``(batch, n_exponents)`` (``(n_exponents,)`` for an unbatched ``x0``), descending, per unit time, in
        the dtype of ``x0``. A trajectory that turns non-finite gets NaN exponents and a
        :class:`LyapunovWarning` names it; :func:`lyapunov_spectrum_solution` returns the statuses too.
    """
    result = lyapunov_spectrum_solution(f, x0, dt=dt, n_steps=n_steps, **options)
    bad = (~result.ok.reshape(-1)).nonzero().flatten().tolist()
    if bad:
        steps = result.first_bad_step.reshape(-1)[bad].tolist()
        shown = ", ".join(f"{i} (step {s})" for i, s in zip(bad[:10], steps[:10], strict=True))
        warnings.warn(
            f"{len(bad)} of {result.status.numel()} trajectories turned non-finite or failed to step: {shown}"
            f"{', ...' if len(bad) > 10 else ''}; their exponents are NaN",
            LyapunovWarning,
            stacklevel=2,
        )
    return result.exponents


def lyapunov_spectrum_solution(
    f: VectorField,
    x0: Tensor,
    *,
    dt: float,
    n_steps: int,
    integrator: AbstractIntegrator | str = "yoshida4",
    n_exponents: int | None = None,
    renorm_every: int = 1,
    transient_steps: int = 0,
    t0: float = 0.0,
    progress: bool | None = None,
) -> LyapunovSpectrum:
    """:func:`lyapunov_spectrum` with the per-trajectory status (see :class:`LyapunovSpectrum`); the arguments are
    documented there."""
    unbatched = isinstance(x0, Tensor) and x0.ndim == 1
    x0 = x0[None] if unbatched else x0
    integrator = _validate(f, x0, dt, n_steps, integrator, n_exponents, renorm_every, transient_steps)
    batch, dim = x0.shape
    k = dim if n_exponents is None else n_exponents
    dt, t0 = float(dt), float(t0)

    status = torch.zeros(batch, dtype=torch.int8)
    first_bad = torch.full((batch,), -1, dtype=torch.long)
    x = x0.detach()
    # Initial tangent vectors: the first k columns of the identity, (batch, dim, k).
    q = torch.eye(dim, k, dtype=x0.dtype, device=x0.device).expand(batch, dim, k).clone()
    log_r = torch.zeros(batch, k, dtype=torch.float64, device=x0.device)
    live = torch.ones(batch, dtype=torch.bool)  # on CPU, like status
    total = transient_steps + n_steps
    show = progress if progress is not None else (total >= PROGRESS_MIN_STEPS and sys.stderr.isatty())
    done = 0
    with _Bar(total, "Lyapunov spectrum") if show else nullcontext(None) as bar:
        while done < total and bool(live.any()):
            # Segments of renorm_every steps; the transient's last segment ends where the averaging starts.
            end = transient_steps if done < transient_steps else total
            steps = min(renorm_every, end - done)
            rows = live.nonzero().flatten()
            x_next, tangent, seg_status = _tangent_map(f, integrator, x[rows.to(x.device)], q[rows.to(q.device)],
                                                       t0 + done * dt, dt, steps)
            # A finite state with non-finite tangent vectors is as bad as a non-finite state.
            finite = (torch.isfinite(tangent).flatten(1).all(1) & torch.isfinite(x_next).all(1)).cpu()
            seg_status = torch.where((seg_status == Status.OK) & ~finite,
                                     torch.tensor(int(Status.NONFINITE), dtype=torch.int8), seg_status)
            _mark(status, first_bad, rows, seg_status, torch.full((len(rows),), done + 1, dtype=torch.long))
            good = seg_status == Status.OK
            if bool(good.any()):
                keep = rows[good].to(x.device)
                q_new, r = torch.linalg.qr(tangent[good.to(tangent.device)])
                diag = torch.diagonal(r, dim1=-2, dim2=-1)  # (n_good, k)
                # Signs fixed so that the columns keep their orientation (QR is unique up to them).
                sign = torch.where(diag < 0, -1.0, 1.0).to(q_new.dtype)
                q = q.index_put((keep,), q_new * sign[:, None, :])
                if done >= transient_steps:
                    log_r = log_r.index_put((keep,), log_r[keep] + diag.abs().log().to(torch.float64))
                x = x.index_put((keep,), x_next[good.to(x_next.device)])
            live = status == Status.OK
            done += steps
            if bar is not None:
                bar.update(done)

    exponents = (log_r / (n_steps * dt)).to(x0.dtype)
    exponents = torch.sort(exponents, dim=-1, descending=True).values
    exponents[~(status == Status.OK).to(exponents.device)] = math.nan
    if unbatched:
        exponents, status, first_bad = exponents[0], status[0], first_bad[0]
    return LyapunovSpectrum(exponents=exponents, status=status, first_bad_step=first_bad, time=n_steps * dt)


def _tangent_map(
    f: VectorField, integrator: AbstractIntegrator, x: Tensor, q: Tensor, t: float, dt: float, steps: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """The state after ``steps`` steps from ``x`` ``(n, dim)``, the tangent vectors ``D phi q`` ``(n, dim, k)``
    and the segment's per-trajectory status ``(n,)``."""
    n, dim, k = q.shape
    with torch.enable_grad():
        xs = x.detach()[:, None, :].expand(n, k, dim).reshape(n * k, dim).requires_grad_(True)
        sol = solve(f, integrator, xs, dt, steps, steps, t0=t, description="tangent map")
        y = sol.ys[:, -1]  # (n * k, dim)
        status = sol.status.view(n, k).max(dim=1).values  # a trajectory is bad if any of its copies is
        finite = torch.isfinite(y)
        y_safe = torch.where(finite, y, torch.zeros_like(y))
        u = torch.zeros_like(y, requires_grad=True)
        (g,) = torch.autograd.grad(y_safe, xs, grad_outputs=u, create_graph=True)  # (dy/dx)^T u
        v = q.transpose(1, 2).reshape(n * k, dim)  # copy j of trajectory i carries column j of q_i
        (jv,) = torch.autograd.grad(g, u, grad_outputs=v.detach())  # (dy/dx) v
    tangent = jv.detach().view(n, k, dim).transpose(1, 2)  # (n, dim, k)
    x_next = y.detach().view(n, k, dim)[:, 0]
    return x_next, tangent, status


def _mark(status: Tensor, first_bad: Tensor, rows: Tensor, new: Tensor, step: Tensor) -> None:
    """Record the first failure of each of ``rows`` (whole-batch ``status`` and ``first_bad``, in place)."""
    newly = (new != Status.OK) & (status[rows] == Status.OK)
    status[rows[newly]] = new[newly]
    first_bad[rows[newly]] = step[newly]


def _validate(
    f: VectorField, x0: Tensor, dt: float, n_steps: int, integrator: AbstractIntegrator | str,
    n_exponents: int | None, renorm_every: int, transient_steps: int,
) -> AbstractIntegrator:
    """Check every argument before any step: the state, step, field and integrator as the one loop checks them
    (:func:`hnnlab.rollout.solve` validates the same way before its first step), then this function's own."""
    check_count("n_steps", n_steps, minimum=1)
    check_count("renorm_every", renorm_every, minimum=1)
    check_count("transient_steps", transient_steps, minimum=0)
    integrator = _start(f, integrator, x0, dt, 0, 1, 0.0, "mask", 1, 1, False).integrator
    dim = x0.shape[-1]
    if n_exponents is not None and (
        isinstance(n_exponents, bool) or not isinstance(n_exponents, int) or not 1 <= n_exponents <= dim
    ):
        raise InvalidArgumentError(f"n_exponents must be an integer in 1..{dim} (2 * dof), got {n_exponents!r}")
    return integrator


# ---------------------------------------------------------------------------------------------------------------
# The audit's Lyapunov section
# ---------------------------------------------------------------------------------------------------------------

DEFAULT_LYAPUNOV_STEPS = 2000
DEFAULT_PERTURBATION = 1e-4  # the perturbed-initial-state floor's eps (Finzi et al. 2020's code uses 1e-4)
CHAOS_E_FOLDINGS = 10.0  # chaotic when l1 * T > this: finite-time l1 of a regular orbit decays like log(T) / T


@dataclass
class LyapunovAudit:
    """The audit's ``lyapunov`` section (medians over the audited initial states, 25-75 % in ``*_iqr``).

    ``chaotic`` is ``l1 * averaging_time > CHAOS_E_FOLDINGS`` for the reference system (the finite-time ``l1``
    of a regular orbit decays like ``log(T) / T``, so a few e-foldings over the window are not chaos). For a
    regular system the prediction time is not limited by chaos, ``lyapunov_time`` is ``None`` and the times in
    Lyapunov units are ``None``; the note says so.
    """

    reference_l1: float
    reference_l1_iqr: tuple[float, float]
    lyapunov_time: float | None
    chaotic: bool
    averaging_time: float
    n_states: int
    integrator: str
    dt: float
    model_l1: float | None = None
    model_l1_iqr: tuple[float, float] | None = None
    vpt_lyapunov: float | None = None
    vpt_lyapunov_iqr: tuple[float, float] | None = None
    floor_vpt: float | None = None
    floor_vpt_lyapunov: float | None = None
    perturbation: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        return asdict(self)


def _median_iqr(x: Tensor) -> tuple[float, tuple[float, float]]:
    x = x[torch.isfinite(x)].to(torch.float64)
    if x.numel() == 0:
        return math.nan, (math.nan, math.nan)
    q = torch.quantile(x, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return float(q[1]), (float(q[0]), float(q[2]))


def spectrum_integrator(f: VectorField) -> str:
    """The integrator the audit uses for a field's spectrum: Yoshida-4 for a separable field, else 4th-order
    Gauss-Legendre (both symplectic, so the discrete flow's spectrum keeps the Hamiltonian pairing)."""
    from hnnlab.fields import declared_separable

    return "yoshida4" if declared_separable(f) else "gauss_legendre4"


def perturbed_floor(system: VectorField, truth: Tensor, dt: float, eps: float, generator: torch.Generator) -> Tensor:
    """The true system started from ``x_0 + eps N(0, I)`` (``x_0 = truth[:, 0]``), rolled out on ``truth``'s grid
    of step ``dt`` with dopri8 at ``rtol = atol = 1e-12``: ``(n_traj, n_times, 2 * dof)``, float64. What a perfect
    model whose initial state is known to ``eps`` predicts (Finzi et al. 2020's floor)."""
    from hnnlab.rollout import rollout

    x0 = truth[:, 0].to(torch.float64)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        return rollout(system, get_integrator("dopri8", rtol=1e-12, atol=1e-12), x0 + eps * noise, dt,
                       truth.shape[1] - 1)


def perturbed_floor_vpt(
    system: VectorField, reference: Tensor, t: Tensor, *, perturbation: float = DEFAULT_PERTURBATION,
    vpt_threshold: float, generator: torch.Generator | None = None,
) -> Tensor:
    """Valid prediction time of :func:`perturbed_floor` against ``reference`` ``(n, n_times, 2 * dof)`` on the
    uniform grid ``t``."""
    from hnnlab.audit.metrics import valid_prediction_time

    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    states = perturbed_floor(system, reference, float(t[1] - t[0]), perturbation, generator)
    vpt, _ = valid_prediction_time(states, reference.to(torch.float64), t, threshold=vpt_threshold)
    return vpt


def lyapunov_audit(
    system: VectorField,
    x0: Tensor,
    *,
    dt: float,
    model: VectorField | None = None,
    model_integrator: AbstractIntegrator | str | None = None,
    vpt: Tensor | None = None,
    reference: Tensor | None = None,
    t: Tensor | None = None,
    vpt_threshold: float | None = None,
    n_steps: int = DEFAULT_LYAPUNOV_STEPS,
    renorm_every: int = 10,
    perturbation: float = DEFAULT_PERTURBATION,
) -> LyapunovAudit:
    """The Lyapunov section of an audit from the audited initial states ``x0`` ``(n, 2 * dof)``.

    The reference system's largest exponent ``l1`` (its own discrete flow at step ``dt``, averaged over
    ``n_steps``), the learned ``model``'s ``l1`` (with the integrator it was rolled out with), the valid
    prediction times ``vpt`` ``(n,)`` in Lyapunov times ``vpt * l1``, and, with the ``reference`` trajectories on
    the grid ``t``, the perturbed-initial-state floor (:func:`perturbed_floor_vpt`).
    """
    from hnnlab.audit.metrics import DEFAULT_VPT_THRESHOLD

    x0 = x0.detach().to(torch.float64)
    integrator = spectrum_integrator(system)
    l1 = lyapunov_spectrum(system, x0, dt=dt, n_steps=n_steps, integrator=integrator, n_exponents=1,
                           renorm_every=renorm_every)[:, 0]
    averaging_time = n_steps * float(dt)
    l1_median, l1_iqr = _median_iqr(l1)
    chaotic = bool(l1_median * averaging_time > CHAOS_E_FOLDINGS)
    audit = LyapunovAudit(
        reference_l1=l1_median, reference_l1_iqr=l1_iqr, lyapunov_time=1.0 / l1_median if chaotic else None,
        chaotic=chaotic, averaging_time=averaging_time, n_states=int(x0.shape[0]), integrator=integrator,
        dt=float(dt),
    )
    if model is not None:
        params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
        dtype = params[0].dtype if params else torch.float64
        model_l1 = lyapunov_spectrum(model, x0.to(dtype), dt=dt, n_steps=n_steps,
                                     integrator=model_integrator or spectrum_integrator(model), n_exponents=1,
                                     renorm_every=renorm_every)[:, 0]
        audit.model_l1, audit.model_l1_iqr = _median_iqr(model_l1.to(torch.float64))
    floor = None
    if reference is not None and t is not None:
        threshold = DEFAULT_VPT_THRESHOLD if vpt_threshold is None else vpt_threshold
        floor = perturbed_floor_vpt(system, reference, t, perturbation=perturbation, vpt_threshold=threshold)
        audit.floor_vpt, _ = _median_iqr(floor)
        audit.perturbation = perturbation
    if chaotic:
        if vpt is not None:
            audit.vpt_lyapunov, audit.vpt_lyapunov_iqr = _median_iqr(vpt.to(torch.float64) * l1)
        if floor is not None:
            audit.floor_vpt_lyapunov, _ = _median_iqr(floor * l1)
        audit.note = (f"chaotic: l1 = {l1_median:.3g} (Lyapunov time {1 / l1_median:.3g}); no model can follow a "
                      "trajectory for more than a few Lyapunov times")
    else:
        audit.note = (f"regular: l1 = {l1_median:.3g} is below {CHAOS_E_FOLDINGS:g} e-foldings over the averaging "
                      f"time {averaging_time:g}; the prediction time is not limited by chaos")
    return audit

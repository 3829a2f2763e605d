"""The exact Kalman filter for linear systems, the reference the ensemble filter is checked against.

For a linear vector field ``dx/dt = A x`` every integrator's step is a linear map, so the discrete model is

    x_{k+1} = F x_k + w_k,  w_k ~ N(0, Q),     y_k = H x_k + v_k,  v_k ~ N(0, R),

with ``F`` the map of the integrator as run between observation times (:func:`transition_matrix`, read off
the one loop by propagating the unit vectors). :func:`kalman_filter` returns the exact filtered means and
covariances (Kalman 1960; Joseph-form covariance update).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError
from hnnlab.integrators import AbstractIntegrator, get_integrator
from hnnlab.rollout import solve
from hnnlab.systems.base import AbstractSystem


def transition_matrix(system: AbstractSystem, integrator: str | AbstractIntegrator, dt: float, n_steps: int,
                      *, rtol: float = 1e-10) -> Tensor:
    """``F`` ``(2 dof, 2 dof)``: the state after ``n_steps`` steps of ``dt`` is ``F x`` for a linear system.

    Raises:
        InvalidArgumentError: the map is not linear (``F (a + b) != F a + F b`` on a probe), so the exact
            Kalman filter does not apply.
    """
    integ = get_integrator(integrator) if isinstance(integrator, str) else integrator
    integ.check_compatible(system)
    n = 2 * system.dof
    eye = torch.eye(n, dtype=torch.float64)
    probe = torch.linspace(0.3, 1.1, n, dtype=torch.float64)[None]
    with torch.no_grad():
        ys = solve(system, integ, torch.cat([eye, probe, 2 * probe]), dt, n_steps, n_steps, progress=False).ys
    f = ys[:n, -1].T  # column j is the image of e_j
    for x, image in ((probe[0], ys[n, -1]), (2 * probe[0], ys[n + 1, -1])):
        if not torch.allclose(f @ x, image, rtol=rtol, atol=rtol * float(image.abs().max())):
            raise InvalidArgumentError(f"system {system.name!r} is not linear in its state (the step map fails "
                                       "F(a + b) = F a + F b), so the exact Kalman filter does not apply; use the "
                                       "ensemble Kalman filter")
    return f


def kalman_filter(f: Tensor, h: Tensor, q: Tensor, r: Tensor, x0: Tensor, p0: Tensor,
                  ys: Tensor) -> tuple[Tensor, Tensor]:
    """Filtered means ``(n_obs, n)`` and covariances ``(n_obs, n, n)`` of ``x_k`` given ``y_0..y_k``.

    Args:
        f: transition ``(n, n)``; h: observation ``(m, n)``; q: process noise ``(n, n)``; r: observation noise
            ``(m, m)``; x0, p0: prior mean ``(n,)`` and covariance ``(n, n)`` of ``x_0``; ys: ``(n_obs, m)``.
        The first observation updates the prior directly (no forecast before it).
    """
    n, m = f.shape[0], h.shape[0]
    if f.shape != (n, n) or h.shape != (m, n) or q.shape != (n, n) or r.shape != (m, m):
        raise InvalidArgumentError(f"Kalman shapes: F (n, n), H (m, n), Q (n, n), R (m, m); got F {tuple(f.shape)}, "
                                   f"H {tuple(h.shape)}, Q {tuple(q.shape)}, R {tuple(r.shape)}")
    if x0.shape != (n,) or p0.shape != (n, n) or ys.ndim != 2 or ys.shape[1] != m:
        raise InvalidArgumentError(f"Kalman shapes: x0 ({n},), P0 ({n}, {n}), ys (n_obs, {m}); got x0 "
                                   f"{tuple(x0.shape)}, P0 {tuple(p0.shape)}, ys {tuple(ys.shape)}")
    x, p = x0, p0
    eye = torch.eye(n, dtype=f.dtype)
    means, covs = [], []
    for k in range(ys.shape[0]):
        if k > 0:
            x, p = f @ x, f @ p @ f.T + q
        s = h @ p @ h.T + r
        gain = torch.linalg.solve(s, h @ p).T  # P H^T S^-1
        x = x + gain @ (ys[k] - h @ x)
        a = eye - gain @ h
        p = a @ p @ a.T + gain @ r @ gain.T
        means.append(x)
        covs.append(p)
    return torch.stack(means), torch.stack(covs)

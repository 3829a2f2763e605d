"""A prior for the unobserved initial state, from the observations themselves.

Positions-only data (``observe="q"``) carries momentum only through how the positions move. The initial positions
and velocities are estimated by a least-squares quadratic through the first few observations of each trajectory,
and the momenta are then the ones for which the system's own ``dq/dt = dH/dp`` gives those velocities, found by
Gauss-Newton on ``|dq/dt(q0, p) - qdot0|^2`` (exact in one step for ``H = p^T M^-1 p / 2 + V(q)``; a few steps
for a non-separable ``H``). Nothing here is specific to one system.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError
from hnnlab.systems.base import AbstractSystem


def initial_state_prior(
    system: AbstractSystem,
    obs_t: Tensor,
    obs: Tensor,
    observe_index: Sequence[int],
    *,
    n_fit: int = 5,
    newton_steps: int = 5,
) -> Tensor:
    """Estimate the states at ``obs_t[0]``, ``(n_traj, 2 * dof)``, from observations ``(n_traj, n_obs, m)``.

    With the full state observed, the first observation is returned. With positions only, the momenta are
    inferred as described in the module docstring from the first ``n_fit`` observation times (at least 3).
    """
    dof = system.dof
    index = list(observe_index)
    obs = obs.to(torch.float64)
    if index == list(range(2 * dof)):
        return obs[:, 0].clone()
    if index != list(range(dof)):
        raise InvalidArgumentError(f"observe_index must be the positions {list(range(dof))} or the full state "
                                   f"{list(range(2 * dof))}, got {index}")
    q0, qdot0 = position_fit(obs_t, obs, n_fit=n_fit)
    t0 = torch.as_tensor(float(obs_t[0]), dtype=torch.float64)
    p = torch.zeros_like(q0)

    for _ in range(newton_steps):
        with torch.enable_grad():
            p_leaf = p.detach().requires_grad_(True)
            qdot = system(t0, torch.cat([q0, p_leaf], dim=-1))[..., :dof]  # (n_traj, dof)
            # per-trajectory Jacobians d qdot / d p (n_traj, dof, dof): rows are independent, one backward per row
            jac = torch.stack([torch.autograd.grad(qdot[:, i].sum(), p_leaf, retain_graph=i < dof - 1)[0]
                               for i in range(dof)], dim=1)
        residual = qdot.detach() - qdot0  # (n_traj, dof)
        if float(residual.abs().max()) < 1e-12:
            break
        p = p - torch.linalg.lstsq(jac, residual[..., None]).solution[..., 0]
    return torch.cat([q0, p], dim=-1).detach()


def position_fit(obs_t: Tensor, obs: Tensor, *, n_fit: int = 5) -> tuple[Tensor, Tensor]:
    """Positions and velocities at ``obs_t[0]``, each ``(n_traj, dof)`` (float64), from a least-squares quadratic
    ``q(t0 + s) = q0 + qdot0 s + c s^2`` through the first ``n_fit`` (at least 3) observed positions
    ``obs (n_traj, n_obs, dof)``. Its error is O(dt^2) on exact data; noise ``sigma`` enters the velocity as about
    ``sigma / (the fit's time span)``. For a Lagrangian model the state ``(q0, qdot0)`` is the prior itself."""
    n_obs = obs.shape[1]
    if n_obs < 3:
        raise InvalidArgumentError(f"inferring velocities from positions needs at least 3 observation times, "
                                   f"got {n_obs}")
    k = min(max(n_fit, 3), n_obs)
    dof = obs.shape[2]
    s = (obs_t[:k] - obs_t[0]).to(torch.float64)
    basis = torch.stack([torch.ones_like(s), s, s**2], dim=1)  # (k, 3)
    coef = torch.linalg.lstsq(basis, obs[:, :k].to(torch.float64).permute(1, 0, 2).reshape(k, -1)).solution
    return coef[0].reshape(-1, dof), coef[1].reshape(-1, dof)  # (n_traj, dof) each

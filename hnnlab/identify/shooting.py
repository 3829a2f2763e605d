"""The multiple-shooting least-squares objective, written once for any vector field.

Observations ``y_k = H x(t_k) + eps`` at evenly spaced times ``t_0 .. t_{n-1}`` of ``n_traj`` trajectories are cut
into windows of ``length`` observation intervals starting at ``s_0 = 0 < s_1 < ... < s_{J-1}`` (``s_j = j * length``;
the last window ends at the last observation and may overlap the one before). Each window ``j`` of trajectory ``i``
has its own initial state ``X_ij`` (fitted, like the field's parameters), is rolled out by
:func:`hnnlab.rollout.solve` over its ``length`` intervals, and owns the observations ``s_j <= k < s_{j+1}`` (the last
window: up to the end), so each observation counts once. The residuals are

    r_obs[i, j, k]  = H x_ij(t_{s_j + k}) - y_i(t_{s_j + k})          (owned observations only, else 0)
    r_gap[i, j]     = sqrt(lambda) (x_ij(t_{s_{j+1}}) - X_{i, j+1})    (continuity between windows, soft)

and the objective is ``|r_obs|^2 + |r_gap|^2``. Short windows keep the problem close to convex (a wrong parameter
cannot push a short rollout far from its data); the continuity term makes the windows one trajectory again as
``lambda`` grows (``lambda = 0``: independent windows, still a consistent estimate, less efficient).

All windows of all trajectories are one batch of one solve, so the field must be autonomous (``f(t, x)`` must not
depend on ``t``: every window is started at ``t = 0``); a field that declares inputs or, for a model,
``time_dependent`` is refused. The field's own parameters are whatever the caller makes
learnable: a grey-box system's physical parameters (:mod:`hnnlab.identify.gradient`) or a network's weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError
from hnnlab.fields import AbstractVectorField
from hnnlab.integrators import AbstractIntegrator
from hnnlab.rollout import solve


@dataclass(frozen=True)
class Windows:
    """How ``n_obs`` evenly spaced observations are cut into shooting windows.

    Attributes:
        n_obs: observation times.
        length: observation intervals per window (each window has ``length + 1`` saved times).
        starts: first observation index of each window, ``(n_windows,)`` ints.
        owned: ``(n_windows, length + 1)`` bool, the window's saved times whose observations it owns.
        gap_offset: for each window but the last, the offset (in intervals) of the next window's start.
        index: ``(n_windows, length + 1)`` the observation index of each saved time.
    """

    n_obs: int
    length: int
    starts: tuple[int, ...]

    @classmethod
    def make(cls, n_obs: int, length: int) -> Windows:
        """Windows of ``length`` intervals over ``n_obs`` observations (``2 <= length <= n_obs - 1``)."""
        if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= n_obs - 1:
            raise InvalidArgumentError(f"the window length must be an integer between 1 and the number of "
                                       f"observation intervals ({n_obs - 1}), got {length!r}")
        starts = list(range(0, n_obs - length, length))
        if not starts or starts[-1] + length < n_obs - 1:
            starts.append(n_obs - 1 - length)
        return cls(n_obs, length, tuple(starts))

    @property
    def n_windows(self) -> int:
        return len(self.starts)

    @property
    def index(self) -> Tensor:
        return torch.tensor(self.starts)[:, None] + torch.arange(self.length + 1)  # (n_windows, length + 1)

    @property
    def owned(self) -> Tensor:
        ends = [*self.starts[1:], self.n_obs]  # window j owns [s_j, s_{j+1}); the last owns up to the end
        return torch.stack([(self.index[j] < ends[j]) for j in range(self.n_windows)])  # (n_windows, length + 1)

    @property
    def gap_offset(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.starts[:-1], self.starts[1:], strict=True))


def check_observations(obs_t: Tensor, obs: Tensor, observe_index: Sequence[int], dof: int) -> float:
    """Refuse malformed observations; return the interval between observation times."""
    index = list(observe_index)
    if not index or any(not 0 <= i < 2 * dof for i in index) or len(set(index)) != len(index):
        raise InvalidArgumentError(f"observe_index must list distinct state components in 0..{2 * dof - 1}, got "
                                   f"{index}")
    if obs.ndim != 3 or obs_t.ndim != 1 or obs.shape[1] != obs_t.shape[0] or obs.shape[2] != len(index):
        raise InvalidArgumentError(f"observations must have shape (n_traj, n_obs = {obs_t.shape[0]}, n_observed = "
                                   f"{len(index)}), got {tuple(obs.shape)}")
    if obs_t.shape[0] < 3:
        raise InvalidArgumentError(f"multiple shooting needs at least 3 observation times, got {obs_t.shape[0]}")
    if not bool(torch.isfinite(obs).all()):
        raise InvalidArgumentError("the observations hold non-finite values (NaN or inf)")
    gaps = torch.diff(obs_t.double())
    if not bool((gaps > 0).all()) or float(gaps.max() - gaps.min()) > 1e-9 * float(gaps.abs().max()):
        raise InvalidArgumentError("observation times must be increasing and evenly spaced")
    return float(gaps.mean())


def window_observations(obs: Tensor, windows: Windows) -> Tensor:
    """The observations seen by each window, ``(n_traj, n_windows, length + 1, n_observed)``."""
    return obs[:, windows.index]


def rollout_windows(field, integrator: AbstractIntegrator | str, x0: Tensor, dt_obs: float,  # noqa: ANN001
                    windows: Windows, substeps: int) -> Tensor:
    """Roll each window's initial state ``x0 (n_traj, n_windows, 2 dof)`` over its ``length`` intervals with
    ``substeps`` integrator steps each: the saved states ``(n_traj, n_windows, length + 1, 2 dof)``, differentiable
    in ``x0`` and in the field's parameters. ``field`` is any vector field (one batch row per window)."""
    _check_autonomous(field)
    n_traj, n_windows, d = x0.shape
    sol = solve(field, integrator, x0.reshape(n_traj * n_windows, d), dt_obs / substeps, windows.length * substeps,
                substeps, on_nonfinite="mask", progress=False)
    return sol.ys.reshape(n_traj, n_windows, windows.length + 1, d)


def _check_autonomous(field) -> None:  # noqa: ANN001 - any vector field
    """Refuse a field that declares inputs or a dependence on time: every window starts at ``t = 0``."""
    from hnnlab.models.base import AbstractModel

    inputs = field.n_inputs if isinstance(field, AbstractVectorField) else 0
    if inputs or (isinstance(field, AbstractModel) and field.time_dependent):
        what = f"n_inputs = {inputs}" if inputs else "a field that depends on time"
        raise InvalidArgumentError(f"multiple shooting starts every window at t = 0 and feeds no inputs; "
                                   f"{type(field).__name__} has {what}")


def shooting_residuals(ys: Tensor, x0: Tensor, y: Tensor, windows: Windows, observe_index: Sequence[int],
                       continuity_weight: float) -> tuple[Tensor, Tensor]:
    """The residuals of the module docstring from the window rollouts.

    Args:
        ys: window rollouts ``(n_traj, n_windows, length + 1, 2 dof)`` (:func:`rollout_windows`).
        x0: the windows' initial states ``(n_traj, n_windows, 2 dof)``.
        y: :func:`window_observations`, ``(n_traj, n_windows, length + 1, n_observed)``.
        continuity_weight: ``lambda >= 0``.

    Returns:
        ``r_obs (n_traj, n_windows, length + 1, n_observed)`` (zero where a window does not own the observation)
        and ``r_gap (n_traj, n_windows - 1, 2 dof)``.
    """
    owned = windows.owned.to(ys.device)[None, :, :, None]
    r_obs = torch.where(owned, ys[..., list(observe_index)] - y, torch.zeros((), dtype=ys.dtype, device=ys.device))
    offsets = torch.tensor(windows.gap_offset, dtype=torch.long, device=ys.device)
    ends = ys[:, torch.arange(windows.n_windows - 1, device=ys.device), offsets]  # (n_traj, n_windows - 1, 2 dof)
    r_gap = math.sqrt(continuity_weight) * (ends - x0[:, 1:])
    return r_obs, r_gap


def shooting_loss(field, integrator: AbstractIntegrator | str, x0: Tensor, obs: Tensor,  # noqa: ANN001
                  dt_obs: float, windows: Windows, observe_index: Sequence[int], *, substeps: int = 1,
                  continuity_weight: float = 100.0) -> Tensor:
    """The objective ``(|r_obs|^2 + |r_gap|^2) / n_owned``, a scalar to minimise by gradient over ``x0`` and the
    field's parameters (neural models: any torch optimiser). ``obs`` is ``(n_traj, n_obs, n_observed)``."""
    ys = rollout_windows(field, integrator, x0, dt_obs, windows, substeps)
    r_obs, r_gap = shooting_residuals(ys, x0, window_observations(obs, windows), windows, observe_index,
                                      continuity_weight)
    n_owned = int(windows.owned.sum()) * obs.shape[0] * obs.shape[2]
    return ((r_obs**2).sum() + (r_gap**2).sum()) / n_owned

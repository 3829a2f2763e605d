"""Conservation and accuracy metrics: pure functions on batches of trajectories.

Conventions: ``t`` is ``(n_times,)``; states are ``(n_traj, n_times, 2 * dof)``; scalar series (energy,
invariants, errors) are ``(n_traj, n_times)``. A trajectory that turns non-finite is measured on its
finite prefix only (times before its first non-finite state); :func:`first_nonfinite_index` says where
that prefix ends. Reductions are computed in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError

DEFAULT_VPT_THRESHOLD = 0.01
DEFAULT_DRIFT_RATIO = 1.0
DEFAULT_ENERGY_FLOOR = 1e-12


def first_nonfinite_index(states: Tensor) -> Tensor:
    """Index of the first saved time whose state has a NaN or inf, per trajectory; ``-1`` when none.

    ``states`` is ``(n_traj, n_times, ...)``; returns ``(n_traj,)`` int64.
    """
    bad = ~torch.isfinite(states).reshape(states.shape[0], states.shape[1], -1).all(dim=-1)  # (n_traj, n_times)
    any_bad = bad.any(dim=1)
    first = bad.to(torch.int8).argmax(dim=1)  # first True (0 when none)
    return torch.where(any_bad, first, torch.full_like(first, -1)).to(torch.int64)


def finite_prefix_mask(states: Tensor) -> Tensor:
    """``(n_traj, n_times)`` bool: ``True`` before each trajectory's first non-finite state."""
    first = first_nonfinite_index(states)
    n_times = states.shape[1]
    stop = torch.where(first < 0, torch.full_like(first, n_times), first)
    return torch.arange(n_times, device=states.device)[None, :] < stop[:, None]


def relative_deviation(series: Tensor, *, floor: float = DEFAULT_ENERGY_FLOOR) -> Tensor:
    """Signed relative change ``(E(t) - E(0)) / max(|E(0)|, floor)`` of ``(n_traj, n_times)`` series, float64.

    ``floor`` only matters when ``E(0)`` is (nearly) zero, where a relative error is not defined.
    """
    e = series.to(torch.float64)
    scale = e[:, :1].abs().clamp_min(floor)
    return (e - e[:, :1]) / scale


def relative_energy_error(energy: Tensor, *, floor: float = DEFAULT_ENERGY_FLOOR) -> Tensor:
    """``|E(t) - E(0)| / max(|E(0)|, floor)``, ``(n_traj, n_times)`` float64."""
    return relative_deviation(energy, floor=floor).abs()


@dataclass(frozen=True)
class DriftFit:
    """Least-squares line ``e(t) ~ a + b (t - t_0)`` through a signed relative deviation, per trajectory.

    Attributes (each ``(n_traj,)`` float64):
        rate: the slope ``b`` (relative change per unit time).
        drift: ``b * (t_last - t_0)``: the change the trend accumulates over the (finite) horizon.
        oscillation: ``max_t |e(t) - (a + b (t - t_0))|``: the bounded part, around the trend.
        drifting: ``|drift| > ratio * oscillation`` and ``|drift| > floor`` (bool).
        determined: at least three finite points were available (else the other fields are NaN/False).
    """

    rate: Tensor
    drift: Tensor
    oscillation: Tensor
    drifting: Tensor
    determined: Tensor


PERSISTENT_FRACTION = 0.5


def secular_drift(
    deviation: Tensor,
    t: Tensor,
    mask: Tensor | None = None,
    *,
    ratio: float = DEFAULT_DRIFT_RATIO,
    floor: float = 0.0,
) -> DriftFit:
    """Separate a secular drift from a bounded oscillation in ``deviation`` ``(n_traj, n_times)``.

    A line is fitted by least squares to the points where ``mask`` is ``True`` (default: all finite
    points). The verdict is *drifting* when the trend's change over the horizon exceeds ``ratio`` times
    the largest deviation from the trend, and ``floor`` (a round-off allowance). A symplectic method on
    a smooth Hamiltonian leaves residuals of the size of its bounded error and a slope that averages
    out over many periods; a non-symplectic method or a dissipative system leaves a trend that grows
    with the horizon while the residual does not.
    """
    e = deviation.to(torch.float64)
    tt = t.to(dtype=torch.float64, device=e.device)[None, :].expand_as(e)
    w = torch.isfinite(e) if mask is None else (mask & torch.isfinite(e))
    w = w.to(torch.float64)
    e0 = torch.where(w > 0, e, torch.zeros_like(e))
    n = w.sum(dim=1)
    safe_n = n.clamp_min(1)
    t_mean = (w * tt).sum(dim=1) / safe_n
    e_mean = (w * e0).sum(dim=1) / safe_n
    dt_ = (tt - t_mean[:, None]) * w
    sxx = (dt_**2).sum(dim=1)
    sxy = (dt_ * (e0 - e_mean[:, None])).sum(dim=1)
    determined = (n >= 3) & (sxx > 0)
    rate = torch.where(determined, sxy / sxx.clamp_min(torch.finfo(torch.float64).tiny), torch.nan)
    t_first = torch.where(w > 0, tt, torch.inf).amin(dim=1)
    t_last = torch.where(w > 0, tt, -torch.inf).amax(dim=1)
    drift = rate * (t_last - t_first)
    fitted = e_mean[:, None] + rate[:, None] * (tt - t_mean[:, None])
    resid = torch.where(w > 0, (e0 - fitted).abs(), torch.zeros_like(e0))
    oscillation = torch.where(determined, resid.amax(dim=1), torch.nan)
    drifting = determined & (drift.abs() > ratio * oscillation) & (drift.abs() > floor)
    # Persistent change: over the second half of the horizon the deviation never returns near zero.
    t_half = t_first + 0.5 * (t_last - t_first)
    late = (w > 0) & (tt >= t_half[:, None])
    late_min = torch.where(late, e0.abs(), torch.inf).amin(dim=1)
    overall_max = torch.where(w > 0, e0.abs(), torch.zeros_like(e0)).amax(dim=1)
    persistent = determined & late.any(dim=1) & (late_min > PERSISTENT_FRACTION * overall_max) & (late_min > floor)
    drifting = drifting | persistent
    return DriftFit(rate=rate, drift=drift, oscillation=oscillation, drifting=drifting, determined=determined)


def default_drift_floor(dtype: torch.dtype) -> float:
    """Round-off allowance for the drift verdict: ``1000 * eps`` of the dtype the series was computed in."""
    return 1000.0 * torch.finfo(dtype).eps


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max over time of ``x`` where ``mask``, per trajectory (NaN for an empty mask)."""
    x = x.to(torch.float64)
    out = torch.where(mask, x, -torch.inf).amax(dim=1)
    return torch.where(mask.any(dim=1), out, torch.nan)


def masked_rms(x: Tensor, mask: Tensor) -> Tensor:
    """Root mean square over time of ``x`` where ``mask``, per trajectory (NaN for an empty mask)."""
    x = torch.where(mask, x.to(torch.float64), 0.0)
    n = mask.sum(dim=1)
    return torch.where(n > 0, (x**2).sum(dim=1).div(n.clamp_min(1)).sqrt(), torch.nan)


def invariant_error(series: Tensor) -> Tensor:
    """Absolute change ``|I(t) - I(0)|`` of an invariant ``(n_traj, n_times)``, float64.

    Absolute, not relative: momenta are often zero by construction (centre-of-mass frames).
    """
    s = series.to(torch.float64)
    return (s - s[:, :1]).abs()


def mse(prediction: Tensor, reference: Tensor, mask: Tensor | None = None) -> float:
    """Mean squared error over trajectories, times (where ``mask``) and state components."""
    _check_pair(prediction, reference)
    sq = ((prediction.to(torch.float64) - reference.to(torch.float64)) ** 2).mean(dim=-1)  # (n_traj, n_times)
    if mask is None:
        mask = torch.isfinite(sq)
    mask = mask & torch.isfinite(sq)
    n = int(mask.sum())
    return float(torch.where(mask, sq, 0.0).sum() / n) if n else math.nan


def relative_error_series(prediction: Tensor, reference: Tensor) -> Tensor:
    """``rel(t) = |pred - true| / (|pred| + |true|)`` with Euclidean norms over the state, ``(n_traj, n_times)``.

    ``rel`` lies in ``[0, 1]``; it is ``0`` where both states are zero and ``1`` where the prediction is
    not finite (the worst value), so that a blown-up trajectory counts as fully wrong.
    """
    _check_pair(prediction, reference)
    p, r = prediction.to(torch.float64), reference.to(torch.float64)
    num = (p - r).norm(dim=-1)
    den = p.norm(dim=-1) + r.norm(dim=-1)
    rel = torch.where(den > 0, num / den.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    finite = torch.isfinite(p).all(dim=-1)
    return torch.where(finite, rel, 1.0)


def geometric_mean_relative_error(prediction: Tensor, reference: Tensor, *, skip_initial: bool = True) -> Tensor:
    """Finzi et al. (2020): geometric mean over time of :func:`relative_error_series`, per trajectory.

    Returns ``(n_traj,)``; :func:`geometric_mean` of it is the dataset's figure. With ``skip_initial``
    the initial time is left out (the prediction starts from the reference state, ``rel = 0``).
    """
    rel = relative_error_series(prediction, reference)
    if skip_initial and rel.shape[1] > 1:
        rel = rel[:, 1:]
    return rel.log().mean(dim=1).exp()


def geometric_mean(x: Tensor) -> float:
    """``exp(mean(log x))`` (``0`` if any entry is ``0``)."""
    return float(x.to(torch.float64).log().mean().exp())


def normalized_error(prediction: Tensor, reference: Tensor) -> Tensor:
    """Normalised squared error ``(n_traj, n_times)`` used by the valid prediction time::

        err(t) = mean_d (pred_d(t) - ref_d(t))^2 / mean_{t', d} ref_d(t')^2

    i.e. the MSE over state components at time ``t`` divided by the mean square of that trajectory's
    reference over the whole horizon. Non-finite predictions give ``inf``.
    """
    _check_pair(prediction, reference)
    p, r = prediction.to(torch.float64), reference.to(torch.float64)
    sq = ((p - r) ** 2).mean(dim=-1)
    scale = (r**2).mean(dim=(1, 2))[:, None]  # (n_traj, 1)
    err = sq / scale.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(torch.isfinite(err), err, torch.inf)


def valid_prediction_time(
    prediction: Tensor, reference: Tensor, t: Tensor, *, threshold: float = DEFAULT_VPT_THRESHOLD
) -> tuple[Tensor, Tensor]:
    """Valid prediction time per trajectory: ``t_k - t_0`` for the first ``k`` with
    :func:`normalized_error` ``> threshold``.

    Returns ``(vpt, censored)``, both ``(n_traj,)``: a trajectory that never passes the threshold gets
    the whole horizon ``t_last - t_0`` and ``censored = True`` (its true VPT is at least that).
    """
    if not (isinstance(threshold, int | float) and threshold > 0 and math.isfinite(threshold)):
        raise InvalidArgumentError(f"vpt threshold must be a finite number > 0, got {threshold!r}")
    err = normalized_error(prediction, reference)
    tt = t.to(torch.float64)
    if tt.shape != (err.shape[1],):
        raise InvalidArgumentError(f"t must have shape (n_times,) = ({err.shape[1]},), got {tuple(t.shape)}")
    over = err > threshold  # (n_traj, n_times)
    crossed = over.any(dim=1)
    first = over.to(torch.int8).argmax(dim=1)
    vpt = torch.where(crossed, tt[first] - tt[0], tt[-1] - tt[0])
    return vpt, ~crossed


def _check_pair(prediction: Tensor, reference: Tensor) -> None:
    if prediction.shape != reference.shape or prediction.ndim != 3:
        raise InvalidArgumentError(
            "prediction and reference must both have shape (n_traj, n_times, 2 * dof), got "
            f"{tuple(prediction.shape)} and {tuple(reference.shape)}"
        )

"""Audit plots (matplotlib, Agg backend): energy error against time, phase portraits, prediction vs reference.

Each ``*_figure`` function draws one figure and returns it (tests inspect it); the matching ``*_plot``
function writes it as a PNG and returns the path; :func:`write_plots` draws all that the data allows.

What every figure does, so that it can be read at any horizon and batch size:

- **Log axes never see an exact zero.** The errors are zero at ``t = 0`` by definition, so the first saved
  time is left out of log-scale panels; a later value below the floor ``eps / 4`` of the states' dtype
  (round-off: a difference that small is not resolved) is drawn at the floor, and the axis limits are set
  from the finite values, never below the floor.
- **Many trajectories are summarised**: with more than :data:`MAX_TRAJ_LINES` trajectories a panel shows
  the median across trajectories, the 10-90 % band and the worst trajectory (the audit's ``max``);
  phase portraits show the first :data:`MAX_TRAJ_LINES` trajectories.
- **Long series are decimated without aliasing**: a series longer than :data:`MAX_DRAW_POINTS` is cut into
  buckets and each bucket contributes its minimum and its maximum in time order, so an oscillation faster
  than the pixel grid is drawn as the band it fills, not as a stride's beat pattern.
- **Sparse saves are drawn as points**: a time series whose samples zigzag (most samples are local extrema)
  or a phase portrait whose consecutive saves are far apart on the orbit is drawn with markers, not with
  straight lines between far-apart samples.
- **Reference and prediction are told apart**: the reference is grey, thicker and underneath; the
  prediction is coloured on top; both are in the legend.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

MAX_TRAJ_LINES = 3  # trajectories drawn individually; more are summarised by median and percentile band
MAX_DOF_PANELS = 4
MAX_DRAW_POINTS = 2000  # points drawn per series (pairs of bucket minimum and maximum beyond)
BAND = (0.1, 0.9)  # the percentile band across trajectories
DPI = 120
TIME_LABEL = "t (system time units)"
ENERGY_ERROR_LABEL = "|E(t) - E(0)| / |E(0)|"
REFERENCE_STYLE = {"color": "0.45", "lw": 3.0, "zorder": 2}
PREDICTION_COLORS = ("tab:blue", "tab:orange", "tab:green")
ENERGY_TITLES = {"system": "true energy (system)", "model": "learned energy (model)"}
WINDOW_PERIODS = 6  # oscillations shown per window of a long time series
MIN_WINDOW = 40  # samples
ZIGZAG_FRACTION = 0.25  # more local extrema than this fraction of samples: undersampled, drawn as points
PHASE_JUMP = 0.1  # median step over the orbit's extent above this: undersampled, drawn as points
_STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def log_floor(dtype: torch.dtype = torch.float64) -> float:
    """The smallest value drawn on a log axis for data computed from states of ``dtype``: ``eps / 4``."""
    return torch.finfo(dtype).eps / 4


# -- drawing primitives ---------------------------------------------------------------------------------


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


def decimate(t: np.ndarray, y: np.ndarray, max_points: int = MAX_DRAW_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``(t, y)`` reduced to at most about ``max_points`` points for drawing, without aliasing.

    Short series are returned as they are. A longer one is cut into ``max_points // 2`` buckets of
    consecutive samples; each bucket contributes its minimum and its maximum (NaN ignored), in the order
    they occur, so the drawn line covers every value the full series reaches in that bucket. A bucket with
    no finite value gives one NaN (a gap).
    """
    n = len(y)
    if n <= max_points:
        return t, y
    k = math.ceil(n / max(max_points // 2, 1))
    nb = math.ceil(n / k)
    pad = nb * k - n
    yy = np.concatenate([y, np.full(pad, np.nan)]).reshape(nb, k)
    finite = np.isfinite(yy)
    lo = np.argmin(np.where(finite, yy, np.inf), axis=1)
    hi = np.argmax(np.where(finite, yy, -np.inf), axis=1)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    base = np.arange(nb) * k
    idx = np.stack([base + first, base + second], axis=1).reshape(-1)
    empty = np.repeat(~finite.any(axis=1), 2)
    idx = np.minimum(idx, n - 1)
    tt, vals = t[idx].copy(), y[idx].copy()
    vals[empty] = np.nan
    return tt, vals


def _bucket_band(
    t: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_points: int = MAX_DRAW_POINTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A band ``lo <= y <= hi`` reduced for drawing: per bucket, the smallest ``lo`` and the largest ``hi``,
    held over the bucket's first and last time."""
    n = len(t)
    if n <= max_points:
        return t, lo, hi
    k = math.ceil(n / max(max_points // 2, 1))
    nb = math.ceil(n / k)
    pad = nb * k - n

    def blocks(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.full(pad, np.nan)]).reshape(nb, k)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN buckets give NaN (a gap)
        blo, bhi = np.nanmin(blocks(lo), axis=1), np.nanmax(blocks(hi), axis=1)
    starts = np.arange(nb) * k
    ends = np.minimum(starts + k - 1, n - 1)
    tt = np.stack([t[starts], t[ends]], axis=1).reshape(-1)
    return tt, np.repeat(blo, 2), np.repeat(bhi, 2)


def _zigzags(y: np.ndarray) -> bool:
    """Whether a series is undersampled: more than :data:`ZIGZAG_FRACTION` of its samples are local extrema."""
    d = np.diff(y[np.isfinite(y)])
    d = d[d != 0]
    if len(d) < 8:
        return False
    turns = np.count_nonzero(np.sign(d[1:]) != np.sign(d[:-1]))
    return turns > ZIGZAG_FRACTION * len(d)


def _marker_size(lw: float) -> float:
    """Marker size of a series drawn as points, from the line width it would have had."""
    return 1.2 + 1.3 * lw


def _draw_series(ax: Any, t: np.ndarray, y: np.ndarray, *, sparse: bool | None = None, **style: Any) -> None:
    """One time series: a line (decimated when long), or markers when it is undersampled and short."""
    if sparse is None:
        sparse = _zigzags(y)
    if sparse and len(y) <= MAX_DRAW_POINTS:
        lw = style.pop("lw", 1.0)
        ax.plot(t, y, ls="none", marker="o", ms=_marker_size(lw), mew=0, **style)
        return
    tt, yy = decimate(t, y)
    ax.plot(tt, yy, **style)


def _clip_log(values: np.ndarray, floor: float) -> tuple[np.ndarray, bool]:
    """Values for a log axis: non-finite stay NaN (gaps), values below ``floor`` (zeros included) are drawn
    at ``floor``; also whether anything was raised to the floor."""
    v = np.where(np.isfinite(values), values, np.nan)
    with np.errstate(invalid="ignore"):
        low = v < floor
    return np.where(low, floor, v), bool(low.any())


def _set_log_limits(ax: Any, arrays: list[np.ndarray], floor: float) -> None:
    """Log y axis with limits from the finite values (whole decades), never below ``floor``."""
    ax.set_yscale("log")
    finite = [a[np.isfinite(a)] for a in arrays]
    values = np.concatenate(finite) if finite else np.empty(0)
    values = values[values > 0]
    if values.size == 0:
        lo, hi = floor, 1.0
    else:
        lo = max(floor, 10.0 ** math.floor(math.log10(values.min())))
        hi = 10.0 ** math.ceil(math.log10(values.max()))
        if hi <= lo * 10:
            hi = lo * 100
    ax.set_ylim(lo, hi)


def _floor_note(ax: Any, floor: float) -> None:
    ax.text(0.01, 0.01, f"values < {floor:.1e} (eps/4) drawn at it", transform=ax.transAxes,
            fontsize=8, color="0.35", va="bottom", ha="left")


def _log_summary(
    ax: Any, t: np.ndarray, values: np.ndarray, floor: float, *, color: str, what: str
) -> list[np.ndarray]:
    """Errors ``(n_traj, n_times)`` (t = 0 already dropped) on a log axis: each trajectory when there are
    at most :data:`MAX_TRAJ_LINES`, else the median, the 10-90 % band and the worst trajectory. Returns the
    arrays drawn (for the axis limits)."""
    clipped, raised = _clip_log(values, floor)
    drawn: list[np.ndarray] = []
    if clipped.shape[0] <= MAX_TRAJ_LINES:
        for i in range(clipped.shape[0]):
            c = PREDICTION_COLORS[i % len(PREDICTION_COLORS)] if clipped.shape[0] > 1 else color
            _draw_series(ax, t, clipped[i], sparse=False, color=c, lw=1.2, label=f"{what}, trajectory {i}")
            drawn.append(clipped[i])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN times (every trajectory blown up): gaps
            q = np.nanquantile(clipped, [BAND[0], 0.5, BAND[1]], axis=0)
            worst = np.nanmax(clipped, axis=0)
        tb, lo, hi = _bucket_band(t, q[0], q[2])
        ax.fill_between(tb, lo, hi, color=color, alpha=0.25, lw=0,
                        label=f"{round(100 * BAND[0])}-{round(100 * BAND[1])} % of {clipped.shape[0]} trajectories")
        _draw_series(ax, t, q[1], sparse=False, color=color, lw=1.6, label="median")
        _draw_series(ax, t, worst, sparse=False, color="black", lw=0.9, ls="--", label="worst trajectory")
        drawn += [lo, hi, worst]
    if raised and any(np.any(a == floor) for a in drawn):  # only when a drawn curve touches the floor
        _floor_note(ax, floor)
    return drawn


def _drop_first(t: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave out the first saved time (where an error against the initial state is zero by definition)."""
    return t[1:], values[:, 1:]


# -- figures --------------------------------------------------------------------------------------------


def energy_error_figure(
    t: Tensor, errors: dict[str, Tensor], *, title: str = "Relative energy error", floor: float | None = None
):
    """``|E(t) - E(0)| / |E(0)|`` against ``t`` on a log scale, one panel per energy (``"system"``,
    ``"model"``); ``errors`` maps a label to ``(n_traj, n_times)``. ``floor``: the smallest value drawn
    (default :func:`log_floor` of float64). Returns the figure."""
    plt = _pyplot()
    floor = log_floor() if floor is None else float(floor)
    tt = _numpy(t)
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(1, len(errors), figsize=(6.2 * len(errors), 4.3), squeeze=False)
        for ax, (label, err) in zip(axes[0], errors.items(), strict=True):
            t1, e1 = _drop_first(tt, _numpy(err))
            drawn = _log_summary(ax, t1, e1, floor, color="tab:blue", what="relative error")
            _set_log_limits(ax, drawn, floor)
            ax.set_xlim(tt[0], tt[-1])
            ax.set_xlabel(TIME_LABEL)
            ax.set_ylabel(ENERGY_ERROR_LABEL)
            ax.set_title(f"{title}: {ENERGY_TITLES.get(label, label)}")
            ax.grid(True, which="major", alpha=0.35)
            ax.legend(loc="best", framealpha=0.85)
        fig.tight_layout()
    return fig


def energy_error_plot(
    t: Tensor,
    errors: dict[str, Tensor],
    path: str | os.PathLike[str],
    *,
    title: str = "Relative energy error",
    floor: float | None = None,
) -> Path:
    """:func:`energy_error_figure` written to ``path`` (PNG); returns the path."""
    return save_figure(energy_error_figure(t, errors, title=title, floor=floor), path)


def _phase_sparse(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether consecutive saves are far apart on the orbit (median step > :data:`PHASE_JUMP` of its extent)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return True
    extent = math.hypot(np.ptp(x), np.ptp(y))
    if extent == 0:
        return True
    return float(np.median(np.hypot(np.diff(x), np.diff(y)))) > PHASE_JUMP * extent


def sparse_saves(
    states: Tensor, t: Tensor, field: Any = None, *, n_traj: int = MAX_TRAJ_LINES
) -> list[bool]:
    """Per degree of freedom: whether consecutive saves of the first ``n_traj`` trajectories lie far apart
    on their orbit in ``(q_i, p_i)``, so that lines between them would be polygons, zigzags or (at a save
    interval close to a multiple of the period) smooth-looking false slow waves.

    With the true ``field`` (the system, ``f(t, x)``), the distance travelled between saves is estimated as
    ``|f_i(x)| * (t_{k+1} - t_k)``, which sees aliasing that no test on the samples alone can; without it,
    the straight distance between consecutive saves is used. Far apart: the median over the saves exceeds
    :data:`PHASE_JUMP` times the extent of the orbit.
    """
    x = states[:n_traj].detach().to("cpu", torch.float64)
    dof = x.shape[-1] // 2
    xn = x.numpy()
    speed = None
    if field is not None and x.shape[1] > 1:
        with torch.no_grad():
            v = field(float(t[0]), x)  # an autonomous field's speed at every saved state
        dt = torch.diff(t.detach().to("cpu", torch.float64)).numpy()
        speed = (v.detach().to("cpu", torch.float64).numpy(), dt)
    out = []
    for i in range(dof):
        sparse = False
        for b in range(xn.shape[0]):
            q, p = xn[b, :, i], xn[b, :, dof + i]
            if speed is None:
                sparse |= _phase_sparse(q, p)
                continue
            ok = np.isfinite(q) & np.isfinite(p)
            extent = math.hypot(np.ptp(q[ok]), np.ptp(p[ok])) if ok.sum() > 1 else 0.0
            v, dt = speed
            arc = np.hypot(v[b, :-1, i], v[b, :-1, dof + i]) * dt
            arc = arc[np.isfinite(arc)]
            if extent > 0 and arc.size:
                sparse |= float(np.median(arc)) > PHASE_JUMP * extent
        out.append(bool(sparse))
    return out


def _sparse_dofs(states: Tensor, reference: Tensor | None, t: Tensor | None, field: Any) -> list[bool]:
    """:func:`sparse_saves` of the prediction (with the field when given) or of the reference."""
    dof = states.shape[-1] // 2
    if t is None:
        t = torch.arange(states.shape[1], dtype=torch.float64)
        field = None
    flags = sparse_saves(states, t, field)
    if reference is not None:
        flags = [a or b for a, b in zip(flags, sparse_saves(reference, t), strict=True)]
    if field is not None:
        flags = [a or b for a, b in zip(flags, sparse_saves(states, t), strict=True)]
    return flags[:dof]


def phase_portrait_figure(
    states: Tensor,
    *,
    reference: Tensor | None = None,
    state_names: list[str] | None = None,
    t: Tensor | None = None,
    field: Any = None,
):
    """``q_i`` against ``p_i`` (or ``qdot_i``) per degree of freedom (up to :data:`MAX_DOF_PANELS`), for the
    first :data:`MAX_TRAJ_LINES` trajectories: the reference grey and underneath, the prediction coloured.
    Saves far apart on the orbit (:func:`sparse_saves`; ``t`` and the true ``field`` make that test see
    aliasing) are drawn as points. Returns the figure."""
    plt = _pyplot()
    dof = states.shape[-1] // 2
    panels = min(dof, MAX_DOF_PANELS)
    names = state_names or [f"q{i}" for i in range(dof)] + [f"p{i}" for i in range(dof)]
    x = _numpy(states)
    r = None if reference is None else _numpy(reference)
    n = min(MAX_TRAJ_LINES, x.shape[0])
    sparse_dof = _sparse_dofs(states, reference, t, field)
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(1, panels, figsize=(5.0 * panels, 5.0), squeeze=False, layout="constrained")
        for i, ax in enumerate(axes[0]):
            sparse = sparse_dof[i]
            for b in range(n):
                color = PREDICTION_COLORS[b % len(PREDICTION_COLORS)]
                if r is not None:
                    _draw_phase(ax, r[b, :, i], r[b, :, dof + i], sparse, label="reference" if b == 0 else None,
                                **REFERENCE_STYLE)
                _draw_phase(ax, x[b, :, i], x[b, :, dof + i], sparse, color=color, lw=1.0, zorder=3,
                            label=f"prediction, trajectory {b}")
            ax.set_xlabel(names[i])
            ax.set_ylabel(names[dof + i])
            note = "\n(saves far apart on the orbit: drawn as points)" if sparse else ""
            ax.set_title(f"Phase portrait ({names[i]}, {names[dof + i]}){note}")
            ax.grid(True, alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=2, markerscale=1.5)  # never hides an orbit
        if dof > panels:
            fig.suptitle(f"first {panels} of {dof} degrees of freedom")
    return fig


def _draw_phase(ax: Any, x: np.ndarray, y: np.ndarray, sparse: bool, **style: Any) -> None:
    if sparse:
        lw = style.pop("lw", 1.0)
        ax.plot(x, y, ls="none", marker="o", ms=_marker_size(lw), mew=0, **style)
    else:
        ax.plot(x, y, **style)


def phase_portrait_plot(
    states: Tensor,
    path: str | os.PathLike[str],
    *,
    reference: Tensor | None = None,
    state_names: list[str] | None = None,
    t: Tensor | None = None,
    field: Any = None,
) -> Path:
    """:func:`phase_portrait_figure` written to ``path`` (PNG); returns the path."""
    fig = phase_portrait_figure(states, reference=reference, state_names=state_names, t=t, field=field)
    return save_figure(fig, path)


def _window(series: list[np.ndarray], n: int) -> int:
    """Samples per time window of the component panels: about :data:`WINDOW_PERIODS` oscillations of the
    fastest component (counted by its local extrema), at least :data:`MIN_WINDOW`; ``n`` (the whole
    series, one window) when that would cover more than a quarter of it."""
    rate = 0.0
    for y in series:
        d = np.diff(y[np.isfinite(y)])
        d = d[d != 0]
        if len(d) > 1:
            rate = max(rate, np.count_nonzero(np.sign(d[1:]) != np.sign(d[:-1])) / len(d))
    if rate == 0:
        return n
    w = max(MIN_WINDOW, round(2 * WINDOW_PERIODS / rate))
    return n if 4 * w > n else w


def prediction_vs_reference_figure(
    t: Tensor,
    states: Tensor,
    reference: Tensor,
    *,
    trajectory: int = 0,
    state_names: list[str] | None = None,
    floor: float | None = None,
    field: Any = None,
):
    """Each state component of one trajectory against time (reference grey underneath, prediction coloured
    on top), and underneath, on a log scale over the whole horizon, the error norm ``|pred - ref|`` of every
    trajectory (median and 10-90 % band when there are more than :data:`MAX_TRAJ_LINES`).

    When the horizon holds many oscillations, the component panels show two windows of about
    :data:`WINDOW_PERIODS` oscillations each, the start and the end of the horizon (shaded in the error
    panel), where the two curves can be told apart. Returns the figure."""
    plt = _pyplot()
    floor = log_floor() if floor is None else float(floor)
    width = states.shape[-1]
    names = state_names or [f"x{i}" for i in range(width)]
    shown = min(width, 2 * MAX_DOF_PANELS)
    tt = _numpy(t)
    x, r = _numpy(states), _numpy(reference)
    n = len(tt)
    w = _window([r[trajectory, :, i] for i in range(shown)] + [x[trajectory, :, i] for i in range(shown)], n)
    windows = [slice(0, n)] if w >= n else [slice(0, w), slice(n - w, n)]
    # Saves far apart on a degree of freedom's orbit (q_i, p_i) alias into smooth-looking slow waves in
    # time: the phase-space step gives it away, so both of its panels are drawn as points.
    half = width // 2
    sparse_dof = _sparse_dofs(states[trajectory : trajectory + 1], reference[trajectory : trajectory + 1], t, field)
    with plt.rc_context(_STYLE):
        fig = plt.figure(figsize=(9.0, 1.75 * (shown + 1) + 1.2), layout="constrained")
        grid = fig.add_gridspec(shown + 1, len(windows))
        for col, window in enumerate(windows):
            first = None
            for i in range(shown):
                ax = fig.add_subplot(grid[i, col], sharex=first)
                first = first or ax
                ref_i, pred_i, t_w = r[trajectory, window, i], x[trajectory, window, i], tt[window]
                sparse = sparse_dof[i % half] or _zigzags(ref_i) or _zigzags(pred_i)
                _draw_series(ax, t_w, ref_i, sparse=sparse, label="reference", **REFERENCE_STYLE)
                _draw_series(ax, t_w, pred_i, sparse=sparse, color=PREDICTION_COLORS[0], lw=1.0, zorder=3,
                             label="prediction")
                ax.set_xlim(t_w[0], t_w[-1])
                ax.grid(True, alpha=0.3)
                if col == 0:
                    ax.set_ylabel(names[i])
                if i == 0:
                    part = "" if len(windows) == 1 else (" start" if col == 0 else " end")
                    ax.set_title(f"trajectory {trajectory} of {x.shape[0]}{part}", fontsize=10)
                if i < shown - 1:
                    ax.tick_params(labelbottom=False)
                else:
                    ax.set_xlabel(TIME_LABEL)
        err = np.linalg.norm(x - r, axis=-1)  # (n_traj, n_times)
        t1, e1 = _drop_first(tt, err)
        ax = fig.add_subplot(grid[-1, :])
        drawn = _log_summary(ax, t1, e1, floor, color="tab:red", what="|pred - ref|")
        _set_log_limits(ax, drawn, floor)
        if len(windows) > 1:
            for window in windows:
                ax.axvspan(tt[window][0], tt[window][-1], color="0.85", zorder=0)
        ax.set_ylabel("|pred - ref|")
        ax.set_xlabel(TIME_LABEL)
        ax.set_xlim(tt[0], tt[-1])
        ax.set_title("error norm over the whole horizon" + (" (windows above shaded)" if len(windows) > 1 else ""),
                     fontsize=10)
        ax.grid(True, which="major", alpha=0.35)
        ax.legend(loc="lower right", framealpha=0.85, fontsize=8)
        handles, labels = first.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper right", ncol=2, markerscale=1.5)
        note = "\n(saves far apart on the orbit: drawn as points)" if any(sparse_dof) else ""
        fig.suptitle(f"Prediction vs reference{note}")
    return fig


def prediction_vs_reference_plot(
    t: Tensor,
    states: Tensor,
    reference: Tensor,
    path: str | os.PathLike[str],
    *,
    trajectory: int = 0,
    state_names: list[str] | None = None,
    floor: float | None = None,
    field: Any = None,
) -> Path:
    """:func:`prediction_vs_reference_figure` written to ``path`` (PNG); returns the path."""
    fig = prediction_vs_reference_figure(
        t, states, reference, trajectory=trajectory, state_names=state_names, floor=floor, field=field
    )
    return save_figure(fig, path)


def write_plots(
    directory: str | os.PathLike[str],
    t: Tensor,
    states: Tensor,
    *,
    reference: Tensor | None = None,
    energy_errors: dict[str, Tensor] | None = None,
    state_names: list[str] | None = None,
    system: Any = None,
) -> dict[str, Path]:
    """Draw every plot the data allows into ``directory`` (created if missing); returns name -> path.

    Names: ``energy_error`` (when ``energy_errors`` is non-empty), ``phase_portrait``,
    ``prediction_vs_reference`` (when ``reference`` is given). Log-scale floors follow ``states.dtype``.
    ``system``: the true system, whose vector field tells saves far apart on the orbit (drawn as points)
    even where the samples alias into smooth slow waves (:func:`sparse_saves`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    floor = log_floor(states.dtype) if states.dtype.is_floating_point else log_floor()
    paths: dict[str, Path] = {}
    if energy_errors:
        paths["energy_error"] = energy_error_plot(t, energy_errors, directory / "energy_error.png", floor=floor)
    paths["phase_portrait"] = phase_portrait_plot(
        states, directory / "phase_portrait.png", reference=reference, state_names=state_names, t=t, field=system
    )
    if reference is not None:
        paths["prediction_vs_reference"] = prediction_vs_reference_plot(
            t, states, reference, directory / "prediction_vs_reference.png", state_names=state_names, floor=floor,
            field=system,
        )
    return paths


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG: to a hidden temporary beside ``path``, moved onto it when complete (an
    interrupted write leaves no half-written PNG)."""
    plt = _pyplot()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path

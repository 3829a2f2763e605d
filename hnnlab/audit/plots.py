"""Audit plots (matplotlib, Agg backend): energy error against time, phase portraits, prediction vs reference.

Each function draws one figure, writes a PNG into a directory and returns its path; :func:`write_plots`
draws all that the data allows.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

MAX_LINES = 8  # trajectories drawn per figure
MAX_DOF_PANELS = 4


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def energy_error_plot(
    t: Tensor, errors: dict[str, Tensor], path: str | os.PathLike[str], *, title: str = "relative energy error"
) -> Path:
    """``|E(t) - E(0)| / |E(0)|`` against ``t`` on a log scale, one panel per energy (``"system"``, ``"model"``).

    ``errors`` maps a label to ``(n_traj, n_times)``; up to :data:`MAX_LINES` trajectories and the median.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(errors), figsize=(5.5 * len(errors), 4), squeeze=False)
    tt = t.detach().cpu().double().numpy()
    for ax, (label, err) in zip(axes[0], errors.items(), strict=True):
        e = err.detach().cpu().double()
        tiny = torch.finfo(torch.float64).tiny
        for i in range(min(MAX_LINES, e.shape[0])):
            ax.plot(tt[1:], e[i, 1:].clamp_min(tiny).numpy(), lw=0.8, alpha=0.6)
        if e.shape[0] > 1:
            ax.plot(tt[1:], e[:, 1:].nanmedian(dim=0).values.clamp_min(tiny).numpy(), "k", lw=1.6, label="median")
            ax.legend(loc="lower right")
        ax.set_yscale("log")
        ax.set_xlabel("t")
        ax.set_ylabel("|E(t) - E(0)| / |E(0)|")
        ax.set_title(f"{title} ({label})")
        ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def phase_portrait_plot(
    states: Tensor,
    path: str | os.PathLike[str],
    *,
    reference: Tensor | None = None,
    state_names: list[str] | None = None,
) -> Path:
    """``q_i`` against ``p_i`` (or ``q_dot_i``) per degree of freedom; the reference dashed where given."""
    plt = _pyplot()
    dof = states.shape[-1] // 2
    panels = min(dof, MAX_DOF_PANELS)
    names = state_names or [f"q{i}" for i in range(dof)] + [f"p{i}" for i in range(dof)]
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 4.2), squeeze=False)
    x = states.detach().cpu().double().numpy()
    r = None if reference is None else reference.detach().cpu().double().numpy()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ax in enumerate(axes[0]):
        for b in range(min(MAX_LINES, x.shape[0])):
            c = colors[b % len(colors)]
            ax.plot(x[b, :, i], x[b, :, dof + i], color=c, lw=0.8, label="prediction" if b == 0 else None)
            if r is not None:
                ax.plot(r[b, :, i], r[b, :, dof + i], color=c, lw=0.8, ls="--", alpha=0.7,
                        label="reference" if b == 0 else None)
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[dof + i])
        ax.set_title(f"phase portrait ({names[i]}, {names[dof + i]})")
        if r is not None and i == 0:
            ax.legend(loc="upper right")
    return _save(fig, path)


def prediction_vs_reference_plot(
    t: Tensor,
    states: Tensor,
    reference: Tensor,
    path: str | os.PathLike[str],
    *,
    trajectory: int = 0,
    state_names: list[str] | None = None,
) -> Path:
    """Each state component of one trajectory against time (prediction solid, reference dashed), and the
    error norm ``|pred - ref|`` on a log scale underneath."""
    plt = _pyplot()
    width = states.shape[-1]
    names = state_names or [f"x{i}" for i in range(width)]
    shown = min(width, 2 * MAX_DOF_PANELS)
    fig, axes = plt.subplots(shown + 1, 1, figsize=(8, 1.6 * (shown + 1) + 0.6), sharex=True)
    tt = t.detach().cpu().double().numpy()
    x = states[trajectory].detach().cpu().double()
    r = reference[trajectory].detach().cpu().double()
    for i in range(shown):
        axes[i].plot(tt, x[:, i].numpy(), lw=1.0, label="prediction")
        axes[i].plot(tt, r[:, i].numpy(), lw=1.0, ls="--", label="reference")
        axes[i].set_ylabel(names[i])
    axes[0].legend(loc="upper right")
    axes[0].set_title(f"prediction vs reference (trajectory {trajectory})")
    err = (x - r).norm(dim=-1).clamp_min(torch.finfo(torch.float64).tiny)
    axes[-1].plot(tt, err.numpy(), "k", lw=1.0)
    axes[-1].set_yscale("log")
    axes[-1].set_ylabel("|pred - ref|")
    axes[-1].set_xlabel("t")
    return _save(fig, path)


def write_plots(
    directory: str | os.PathLike[str],
    t: Tensor,
    states: Tensor,
    *,
    reference: Tensor | None = None,
    energy_errors: dict[str, Tensor] | None = None,
    state_names: list[str] | None = None,
) -> dict[str, Path]:
    """Draw every plot the data allows into ``directory`` (created if missing); returns name -> path.

    Names: ``energy_error`` (when ``energy_errors`` is non-empty), ``phase_portrait``,
    ``prediction_vs_reference`` (when ``reference`` is given).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if energy_errors:
        paths["energy_error"] = energy_error_plot(t, energy_errors, directory / "energy_error.png")
    paths["phase_portrait"] = phase_portrait_plot(
        states, directory / "phase_portrait.png", reference=reference, state_names=state_names
    )
    if reference is not None:
        paths["prediction_vs_reference"] = prediction_vs_reference_plot(
            t, states, reference, directory / "prediction_vs_reference.png", state_names=state_names
        )
    return paths


def _save(fig, path: str | os.PathLike[str]) -> Path:
    plt = _pyplot()
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

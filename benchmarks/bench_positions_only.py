"""Benchmark: HNN, separable HNN and LNN learned from noisy positions only, against the same models on clean states.

Data: the greydanus-pendulum setting (g = 6; 45 saved times over 3 s), ``--n-train`` training and ``--n-test`` test
trajectories. Two trainings per model, the same objective (:func:`hnnlab.identify.shooting_loss`: rollouts of windows
of ``--window`` observation intervals, ``--substeps`` integrator steps each), the same optimiser (Adam) and steps:

- **positions only**: the positions observed with Gaussian noise ``--noise``; each window's initial state is a
  latent variable trained with the network, started from a quadratic fit through its first five positions (the
  velocity as the momentum for the HNNs: the momentum's scale is not observable, and the network learns its
  Hamiltonian in that gauge);
- **clean states**: the full clean states observed, each window started at its clean state (not trained).

Score (the same for both): each test trajectory's initial state is fitted to its first ``--fit-times`` noisy
positions with the network frozen (L-BFGS on the state alone), the model is rolled out over the whole 3 s, and its
positions are compared with the clean ones (RMS over trajectories and times). The clean-state models are also
scored from the clean initial state (what they were trained on). Writes
``benchmarks/results/bench_positions_only.{md,csv}``.

    .venv/bin/python benchmarks/bench_positions_only.py [--steps 2500] [--lnn-steps 800] [--models ...]

About 20 minutes on one core.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from hnnlab.data.observations import make_observations
from hnnlab.data.simulate import simulate
from hnnlab.identify import Windows, shooting_loss
from hnnlab.identify.prior import position_fit
from hnnlab.models import HNN, LNN, SeparableHNN
from hnnlab.rollout import solve
from hnnlab.systems.registry import get_system

try:
    from benchmarks import _common
except ImportError:  # run as a script from benchmarks/
    import _common

MOMENTUM_SCALE = 0.5  # p = m l^2 q_dot of the pendulum (m = 0.5, l = 1): the gauge of the true momenta
# name -> (constructor, integrator of its rollouts)
MODELS = {
    "hnn": (lambda: HNN(1, hidden=(64, 64)), "rk4"),
    "separable_hnn": (lambda: SeparableHNN(1, hidden=(64, 64)), "leapfrog"),
    # 0.3 added to the mass matrix d2L/dq_dot2 (the pendulum's is m l^2 = 0.5): an untrained network's is near zero,
    # its accelerations huge, and with 1e-3 rollout training stalled (loss 24 on clean states after 400 steps)
    "lnn": (lambda: LNN(1, hidden=(64, 64), regularization=0.3), "rk4"),
}


def pendulum_data(n_train: int, n_test: int, noise: float, seed: int) -> dict:
    """Clean states ``(n, 45, 2)``, noisy positions ``(n, 45, 1)`` and times of both splits, float32; for the LNN
    the clean states in ``(q, q_dot)`` too."""
    system = get_system("pendulum")
    splits = {}
    for name, n, s in (("train", n_train, seed), ("test", n_test, seed + 100)):
        split = simulate(system, n, dt=3.0 / 44, n_steps=44, seed=s, splits=(1.0, 0.0, 0.0)).splits["train"]
        _, obs, _ = make_observations(split.state, split.t, observe="q", noise_std=noise, every=1,
                                      state_names=system.state_names(), dof=1,
                                      generator=torch.Generator().manual_seed(s + 1))
        velocity = split.state.clone()
        velocity[..., 1:] = split.state[..., 1:] / (system.m * system.l**2)  # q_dot = p / (m l^2)
        splits[name] = {"canonical": split.state.float(), "lagrangian": velocity.float(), "obs": obs.float()}
    splits["dt"] = 3.0 / 44
    return splits


def latent_starts(obs: torch.Tensor, dt: float, starts: list[int]) -> torch.Tensor:
    """``(n, len(starts), 2)``: ``(q, q_dot)`` from a quadratic fit through five positions from each start."""
    t = torch.arange(obs.shape[1], dtype=torch.float64) * dt
    out = [torch.cat(position_fit(t[s:], obs[:, s:]), dim=-1) for s in starts]
    return torch.stack(out, dim=1).float()


def train(model, integrator: str, data: dict, mode: str, windows: Windows, steps: int, substeps: int,
          lr: float) -> tuple[torch.nn.Module, float, float]:
    """Adam on the multiple-shooting loss; returns the model, the final loss and the seconds."""
    train_split, dt = data["train"], data["dt"]
    if mode == "positions":
        obs, index = train_split["obs"], [0]
        x0 = latent_starts(obs, dt, list(windows.starts)).requires_grad_(True)
        params = [*model.parameters(), x0]
    else:
        obs, index = train_split[model.coordinates], [0, 1]
        x0 = obs[:, list(windows.starts)]  # the clean window starts, fixed
        params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    start = time.perf_counter()
    for step in range(steps):
        loss = shooting_loss(model, integrator, x0, obs, dt, windows, index, substeps=substeps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % max(1, steps // 10) == 0:
            print(f"  {type(model).__name__} ({mode}): step {step + 1}/{steps}, loss {loss.item():.3e}",
                  file=sys.stderr, flush=True)
    return model, loss.item(), time.perf_counter() - start


def score(model, integrator: str, data: dict, fit_times: int, substeps: int, from_clean: bool,  # noqa: ANN001
          momentum_scale: float = 1.0) -> float:
    """RMS position error over the test trajectories' 3 s, from a fitted (or the clean) initial state. The fit
    starts from the quadratic fit's ``(q, momentum_scale * q_dot)``: the model's own gauge (``m l^2`` for a model
    trained on the true momenta, 1 for one whose momenta were latent with that start)."""
    test, dt = data["test"], data["dt"]
    clean = test["canonical"]
    n_times = clean.shape[1]
    if from_clean:
        x0 = test[model.coordinates][:, 0]
    else:
        window = Windows.make(fit_times, fit_times - 1)
        x0 = latent_starts(test["obs"], dt, [0]) * torch.tensor([1.0, momentum_scale])  # (n, 1, 2)
        x0 = x0.requires_grad_(True)
        weights = list(model.parameters()) if isinstance(model, torch.nn.Module) else []  # a system has none
        for p in weights:
            p.requires_grad_(False)
        optimizer = torch.optim.LBFGS([x0], lr=1.0, max_iter=200, tolerance_grad=1e-9, tolerance_change=1e-12,
                                      line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = shooting_loss(model, integrator, x0, test["obs"][:, :fit_times], dt, window, [0],
                                 substeps=substeps)
            loss.backward()
            return loss

        optimizer.step(closure)
        for p in weights:
            p.requires_grad_(True)
        x0 = x0.detach()[:, 0]
    with torch.no_grad():
        ys = solve(model, integrator, x0, dt / substeps, (n_times - 1) * substeps, substeps).ys  # (n, 45, 2)
    return float(((ys[..., 0] - clean[..., 0]) ** 2).mean().sqrt())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--n-train", type=int, default=25)
    parser.add_argument("--n-test", type=int, default=25)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=2500, help="Adam steps per training of the HNNs")
    parser.add_argument("--lnn-steps", type=int, default=800,
                        help="Adam steps per LNN training (a step costs about 7x an HNN's: a Hessian per evaluation)")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam's learning rate for the HNNs")
    parser.add_argument("--lnn-lr", type=float, default=3e-3,
                        help="Adam's learning rate for the LNN (with 1e-2 its network collapsed: loss flat at 39)")
    parser.add_argument("--window", type=int, default=5, help="observation intervals per shooting window")
    parser.add_argument("--substeps", type=int, default=2, help="integrator steps per observation interval")
    parser.add_argument("--fit-times", type=int, default=10, help="test positions the initial state is fitted to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "bench_positions_only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = pendulum_data(args.n_train, args.n_test, args.noise, args.seed)
    windows = Windows.make(45, args.window)
    rows = []
    started = time.perf_counter()
    for name in args.models:
        make, integrator = MODELS[name]
        for mode in ("positions", "clean"):
            torch.manual_seed(args.seed)
            steps, lr = (args.lnn_steps, args.lnn_lr) if name == "lnn" else (args.steps, args.lr)
            row = {"model": name, "integrator": integrator, "trained_on": mode, "steps": steps, "final_loss": None,
                   "train_seconds": None, "position_rmse_fitted_start": None, "position_rmse_clean_start": None,
                   "error": None}
            try:  # a model that fails (a singular LNN mass matrix) is a row, not the end of the run
                model, row["final_loss"], row["train_seconds"] = train(make(), integrator, data, mode, windows,
                                                                       steps, args.substeps, lr)
                scale = MOMENTUM_SCALE if mode == "clean" and model.coordinates == "canonical" else 1.0
                row["position_rmse_fitted_start"] = score(model, integrator, data, args.fit_times, args.substeps,
                                                          False, scale)
                if mode == "clean":
                    row["position_rmse_clean_start"] = score(model, integrator, data, args.fit_times,
                                                             args.substeps, True)
            except Exception as exc:  # noqa: BLE001
                row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            print(f"{name} ({mode}): {row}", file=sys.stderr, flush=True)
    truth = get_system("pendulum")  # the floor: the true field, its start fitted the same way
    rows.append({"model": "true pendulum (floor)", "integrator": "rk4", "trained_on": "-", "steps": None,
                 "final_loss": None,
                 "train_seconds": None,
                 "position_rmse_fitted_start": score(truth, "rk4", data, args.fit_times, args.substeps, False,
                                                     MOMENTUM_SCALE),
                 "position_rmse_clean_start": score(truth, "rk4", data, args.fit_times, args.substeps, True)})
    header = (f"Pendulum (g = 6), {args.n_train} training and {args.n_test} test trajectories x 45 times over 3 s; "
              f"positions-only training data with noise {args.noise:g}; windows of {args.window} intervals, "
              f"{args.substeps} substeps, Adam (lr {args.lr:g}, LNN {args.lnn_lr:g}), networks 64-64; test initial "
              f"states fitted to the first {args.fit_times} noisy positions. Total "
              f"{time.perf_counter() - started:.0f} s; torch {torch.__version__}, {torch.get_num_threads()} "
              f"thread(s), {platform.processor() or platform.machine()}.")
    trained_on = {"positions": "positions only (noisy)", "clean": "full clean states", "-": "-"}
    def number(value, spec: str) -> str:  # noqa: ANN001
        return "" if value is None else format(value, spec)

    table = [[r["model"], r["integrator"], trained_on[r["trained_on"]], number(r["steps"], "d"),
              number(r["final_loss"], ".2e"), number(r["position_rmse_fitted_start"], ".4f"),
              number(r["position_rmse_clean_start"], ".4f"), number(r["train_seconds"], ".0f"),
              r.get("error") or ""] for r in rows]
    md = (f"# bench_positions_only\n\n{header}\n\n"
          + _common.markdown_table(["model", "integrator", "trained on", "Adam steps", "final training loss",
                                    "test position RMSE, start fitted to positions",
                                    "test position RMSE, clean start", "training seconds", "failure"], table)
          + "\n")
    paths = _common.write_results(args.out, md, rows)
    print(f"wrote {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    main()

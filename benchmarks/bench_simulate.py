"""Benchmark: generating pendulum trajectories, hnnlab's batched simulation vs a solve_ivp loop.

Target (the data-format issue): 1,000 pendulum trajectories of 1,000 steps at the same accuracy, at
least 50x faster than a per-trajectory ``scipy.integrate.solve_ivp`` loop (how the published code
generates data). Both sides use the same tolerances; accuracy is measured, not assumed: the max
absolute error of every method against a tighter reference (DOP853 at rtol = atol = 1e-13) on the
trajectories the baseline ran.

The loop's time is linear in the number of trajectories; by default it runs on ``--baseline-traj``
of them (the first ones, the same initial states as hnnlab's) and is scaled to the full count (say
``--baseline-traj 1000`` to time it all). Writes ``benchmarks/results/bench_simulate.{md,csv}``.

    .venv/bin/python benchmarks/bench_simulate.py [--n-traj 1000] [--n-steps 1000] [--baseline-traj 50]
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp

from hnnlab.data import simulate
from hnnlab.systems import Pendulum

RESULTS = Path(__file__).parent / "results"


def pendulum_numpy(system: Pendulum):
    ml2, mgl = system.m * system.l**2, system.m * system.g * system.l

    def f(t, y):
        return np.array([y[1] / ml2, -mgl * np.sin(y[0])])

    return f


def solve_ivp_loop(system: Pendulum, x0: np.ndarray, t: np.ndarray, method: str, tol: float) -> np.ndarray:
    """The published pattern: one solve_ivp call per trajectory, states at ``t_eval``. ``(n, n_times, 2)``."""
    f = pendulum_numpy(system)
    out = np.empty((len(x0), len(t), 2))
    for i, y0 in enumerate(x0):
        sol = solve_ivp(f, (t[0], t[-1]), y0, t_eval=t, method=method, rtol=tol, atol=tol)
        out[i] = sol.y.T
    return out


def measure(n_traj: int, n_steps: int, dt: float, tol: float, baseline_traj: int) -> list[dict]:
    """Time hnnlab's batched simulation (four configurations) and the two solve_ivp loops; one row each.

    The loop rows carry ``speedup_same_tolerance`` and ``speedup_same_accuracy`` (against the fastest
    hnnlab row at least as accurate, named in ``matched_by``)."""
    system = Pendulum()
    n_base = min(baseline_traj, n_traj)
    configs = [
        (f"dopri8, rtol = atol = {tol:g}", "dopri8", {"rtol": tol, "atol": tol}, 1),
        ("dopri8, rtol = atol = 1e-8", "dopri8", {"rtol": 1e-8, "atol": 1e-8}, 1),
        ("rk4, 8 substeps", "rk4", {}, 8),
        ("yoshida4, 8 substeps", "yoshida4", {}, 8),
    ]
    rows, x0, t, reference = [], None, None, None
    for label, integrator, options, substeps in configs:
        start = time.perf_counter()
        result = simulate(system, n_traj, dt=dt, n_steps=n_steps, integrator=integrator,
                          integrator_options=options, substeps=substeps, splits=(1.0, 0.0, 0.0), seed=0)
        seconds = time.perf_counter() - start
        states = result.splits["train"].state.numpy()  # (n_traj, n_times, 2)
        if reference is None:
            t, x0 = result.splits["train"].t.numpy(), states[:n_base, 0]
            reference = solve_ivp_loop(system, x0, t, "DOP853", 1e-13)
        rows.append({"method": f"hnnlab simulate ({label}, batched)", "trajectories_timed": n_traj,
                     "seconds_for_all": seconds, "max_abs_error": float(np.abs(states[:n_base] - reference).max())})
    hnnlab_rows = list(rows)
    for method in ("RK45", "DOP853"):
        start = time.perf_counter()
        baseline = solve_ivp_loop(system, x0, t, method, tol)
        seconds = (time.perf_counter() - start) * n_traj / n_base
        error = float(np.abs(baseline - reference).max())
        # the fastest hnnlab configuration at least as accurate as this baseline
        matched = min((r for r in hnnlab_rows if r["max_abs_error"] <= error), key=lambda r: r["seconds_for_all"])
        rows.append({
            "method": f"solve_ivp loop ({method}, rtol = atol = {tol:g})", "trajectories_timed": n_base,
            "seconds_for_all": seconds, "max_abs_error": error,
            "speedup_same_tolerance": seconds / hnnlab_rows[0]["seconds_for_all"],
            "speedup_same_accuracy": seconds / matched["seconds_for_all"], "matched_by": matched["method"],
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-traj", type=int, default=1000)
    parser.add_argument("--n-steps", type=int, default=1000)
    parser.add_argument("--dt", type=float, default=0.05)
    parser.add_argument("--tol", type=float, default=1e-10, help="rtol = atol of every method")
    parser.add_argument("--baseline-traj", type=int, default=20, help="trajectories the solve_ivp loops run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_base = min(args.baseline_traj, args.n_traj)
    rows = measure(args.n_traj, args.n_steps, args.dt, args.tol, args.baseline_traj)

    header = (f"{args.n_traj} pendulum trajectories x {args.n_steps} steps (dt = {args.dt}), "
              f"rtol = atol = {args.tol:g}; "
              f"errors vs DOP853 at 1e-13 on {n_base} trajectories; loop times scaled from {n_base} trajectories. "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{platform.processor() or platform.machine()}")
    lines = [f"# bench_simulate\n\n{header}\n", "| method | trajectories timed | seconds (all) | max abs error | "
             "hnnlab speed-up, same tolerance | hnnlab speed-up, same accuracy (fastest hnnlab row as accurate) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        same_tol = f"{r['speedup_same_tolerance']:.1f}x" if "speedup_same_tolerance" in r else ""
        same_acc = f"{r['speedup_same_accuracy']:.1f}x ({r['matched_by']})" if "matched_by" in r else ""
        lines.append(f"| {r['method']} | {r['trajectories_timed']} | {r['seconds_for_all']:.2f} | "
                     f"{r['max_abs_error']:.2e} | {same_tol} | {same_acc} |")
    lines.append("\nTarget: >= 50x against the solve_ivp loop at the same accuracy.")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_simulate.md").write_text(table + "\n")
    with open(RESULTS / "bench_simulate.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[-1]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()

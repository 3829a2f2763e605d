"""Benchmark: physical parameters recovered from noisy positions, ensemble Kalman filter against gradient fitting.

For the pendulum (``g``), the mass-spring (``k``) and the damped oscillator (its damping ``gamma``), trajectories in
the greydanus-pendulum setting (45 saved times over 3 s, dopri8 at 1e-12) are observed in their positions only, with
Gaussian noise of each level, at every k-th saved time; each parameter is started at a wrong value and identified by
:func:`hnnlab.identify.ensemble_kalman_filter` (200 members, rk4 with 10 substeps per observation interval; the
estimate is the final ensemble mean, the std its spread) and by :func:`hnnlab.identify.fit_parameters` (multiple
shooting over windows of 10 observation intervals, Levenberg-Marquardt; the std is the Gauss-Newton one). Reported
per fit: the relative error of the estimate, the reported std, the error in reported std (``|z| < 3`` is a
calibrated fit), the residual and the time. One seed per cell: the error of one fit, not an average.

Writes ``benchmarks/results/bench_identify.{md,csv}``. About two minutes on one core:

    .venv/bin/python benchmarks/bench_identify.py [--n-traj 10] [--noise 0.01 0.05 0.1] [--every 1 2 4]
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch

from hnnlab.data.observations import make_observations
from hnnlab.data.simulate import simulate
from hnnlab.identify import (
    ensemble_kalman_filter,
    fit_parameters,
    initial_state_prior,
    make_specs,
    with_parameters,
)
from hnnlab.systems.registry import get_system

try:
    from benchmarks import _common
except ImportError:  # run as a script from benchmarks/
    import _common

# system -> (parameter, wrong starting value); the truth is the system's default
CASES = {"pendulum": ("g", 3.0), "mass_spring": ("k", 1.0), "damped_oscillator": ("gamma", 0.3)}
METHODS = ("enkf", "gradient")


def observations(name: str, n_traj: int, noise: float, every: int, seed: int) -> tuple:
    """``(system, obs_t, obs)``: positions of ``n_traj`` trajectories (45 times over 3 s) every ``every``-th time."""
    system = get_system(name)
    split = simulate(system, n_traj, dt=3.0 / 44, n_steps=44, seed=seed, splits=(1.0, 0.0, 0.0)).splits["train"]
    obs_t, obs, _ = make_observations(split.state, split.t, observe="q", noise_std=noise, every=every,
                                      state_names=system.state_names(), dof=system.dof,
                                      generator=torch.Generator().manual_seed(seed + 1))
    return system, obs_t, obs


def identify(method: str, system, param: str, init: float, obs_t, obs, noise: float, seed: int):  # noqa: ANN001
    """One fit: ``(estimate, std, residual, seconds)``."""
    specs = make_specs(system, [param], init={param: init})
    start = time.perf_counter()
    if method == "enkf":
        x0 = initial_state_prior(with_parameters(system, {param: init}), obs_t, obs, [0])
        r = ensemble_kalman_filter(system, obs_t, obs, observe_index=[0], noise_std=noise, specs=specs, x0_mean=x0,
                                   x0_std=0.5, n_ensemble=200, generator=torch.Generator().manual_seed(seed))
    else:
        r = fit_parameters(with_parameters(system, {param: init}), obs_t, obs, observe_index=[0], specs=specs)
    return r.estimates[param], r.std[param], r.residual, time.perf_counter() - start


def measure(n_traj: int, noises: list[float], everys: list[int], seed: int = 0,
            cases: list[str] | None = None) -> list[dict]:
    """Every (system, noise, every, method) cell of ``cases`` (default: all of :data:`CASES`): one row each."""
    rows = []
    cases = list(CASES) if cases is None else cases
    total = len(cases) * len(noises) * len(everys) * len(METHODS)
    for name in cases:
        param, init = CASES[name]
        truth = float(getattr(get_system(name), param))
        for noise in noises:
            for every in everys:
                system, obs_t, obs = observations(name, n_traj, noise, every, seed)
                for method in METHODS:
                    try:
                        estimate, std, residual, seconds = identify(method, system, param, init, obs_t, obs, noise,
                                                                    seed)
                        error = None
                    except Exception as exc:  # noqa: BLE001 - a failed fit is a row, not the end of the run
                        estimate = std = residual = seconds = math.nan
                        error = f"{type(exc).__name__}: {exc}"
                    rows.append({
                        "system": name, "parameter": param, "truth": truth, "init": init, "noise_std": noise,
                        "every": every, "n_traj": n_traj, "n_obs": int(obs.shape[1]), "method": method,
                        "estimate": estimate, "std": std, "relative_error": abs(estimate - truth) / truth,
                        "z": abs(estimate - truth) / std if std and std > 0 else math.nan, "residual": residual,
                        "seconds": seconds, "error": error,
                    })
                    print(f"[{len(rows)}/{total}] {name} {param} noise {noise:g} every {every} {method}: "
                          f"{estimate:.5g} +- {std:.2g} (truth {truth:g}), {seconds:.2f} s", file=sys.stderr,
                          flush=True)
    return rows


def _cell(row: dict) -> str:
    if row["error"]:
        return "failed"
    flag = "" if row["z"] < 3 else " (z > 3)"
    return f"{100 * row['relative_error']:.2f} % ({row['z']:.1f} std){flag}, {row['seconds']:.1f} s"


def markdown(rows: list[dict], header: str) -> str:
    lines = [f"# bench_identify\n\n{header}\n",
             "Each cell: relative error of the estimate, that error in reported standard deviations (|z| < 3: the "
             "reported std covers the truth), time of the fit.\n"]
    table = []
    keys = sorted({(r["system"], r["parameter"], r["noise_std"], r["every"]) for r in rows},
                  key=lambda k: (list(CASES).index(k[0]), k[2], k[3]))
    for system, param, noise, every in keys:
        cell = {r["method"]: r for r in rows if (r["system"], r["parameter"], r["noise_std"], r["every"])
                == (system, param, noise, every)}
        n_obs = next(iter(cell.values()))["n_obs"]
        table.append([f"{system} ({param})", f"{noise:g}", f"{every} ({n_obs} times)",
                      *(_cell(cell[m]) if m in cell else "" for m in METHODS)])
    lines.append(_common.markdown_table(["system (parameter)", "noise std", "every k-th time (observations)",
                                         "EnKF", "gradient (multiple shooting)"], table))
    summary = []
    for method in METHODS:
        ok = [r for r in rows if r["method"] == method and not r["error"]]
        if ok:
            within = sum(r["relative_error"] < 0.02 for r in ok)
            calibrated = sum(r["z"] < 3 for r in ok)
            median_s = sorted(r["seconds"] for r in ok)[len(ok) // 2]
            summary.append([method, f"{len(ok)}/{sum(r['method'] == method for r in rows)}", f"{within}/{len(ok)}",
                            f"{calibrated}/{len(ok)}", f"{median_s:.2f}"])
    lines.append("\n## Summary\n")
    lines.append(_common.markdown_table(["method", "fits that ran", "within 2 % of the truth", "truth within 3 std",
                                         "median seconds"], summary))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-traj", type=int, default=10, help="observed trajectories per fit (default 10)")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.01, 0.05, 0.1], help="noise std levels")
    parser.add_argument("--every", type=int, nargs="+", default=[1, 2, 4], help="observe every k-th saved time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "bench_identify",
                        help="output stem (.md and .csv are written)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = measure(args.n_traj, args.noise, args.every, args.seed)
    header = (f"{args.n_traj} trajectories per fit, positions only, 45 saved times over 3 s thinned to every k-th; "
              f"starting values g = 3 (truth 6), k = 1 (truth 2), gamma = 0.3 (truth 0.1); seed {args.seed}. "
              f"Total {time.perf_counter() - started:.0f} s; torch {torch.__version__}, {torch.get_num_threads()} "
              f"thread(s), {platform.processor() or platform.machine()}.")
    md, csv_path = _common.write_results(args.out, markdown(rows, header), rows)
    print(f"wrote {md} and {csv_path}")


if __name__ == "__main__":
    main()

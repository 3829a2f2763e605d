"""Identify a system's physical parameters from a dataset's noisy partial observations (EnKF or gradient).

Examples:
  hnnlab simulate --recipe greydanus-pendulum --observe q --noise-std 0.05 --out pend.h5
  hnnlab identify --data pend.h5 --system pendulum --params g --method enkf --init g=3.0 --json g.json
  hnnlab identify --data pend.h5 --system pendulum --params g --method gradient --init g=3.0 --json g.json --overwrite

--method enkf: an ensemble Kalman filter on the state augmented with the parameters; the estimate is the final
ensemble mean and the std its spread. --method gradient: the parameters and every shooting window's initial state
fitted by Levenberg-Marquardt through the differentiable rollout; the std is the Gauss-Newton one (inverse Hessian
of the least squares times the residual variance). The parameters not in --params keep the file's values; each one
in --params starts from --init (default: the system class's default). The JSON appears only when complete.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from contextlib import contextmanager
from typing import Any

from hnnlab.errors import InvalidArgumentError

METHODS = ("enkf", "gradient")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset file with observations (hnnlab simulate --observe)")
    parser.add_argument("--system", required=True, help="the system whose parameters are identified (the file's)")
    parser.add_argument("--params", nargs="+", required=True, metavar="NAME", help="parameters to identify")
    parser.add_argument("--method", choices=METHODS, required=True, help="enkf or gradient")
    parser.add_argument("--json", required=True, metavar="OUT.json", help="write the estimates as JSON")
    parser.add_argument("--init", nargs="+", default=[], metavar="NAME=VALUE",
                        help="starting values (default: the system class's defaults)")
    parser.add_argument("--bounds", nargs="+", default=[], metavar="NAME=LO,HI",
                        help="keep a parameter inside (LO, HI) (default: positive parameters stay positive)")
    parser.add_argument("--split", default="train", help="split whose observations are used (default: train)")
    parser.add_argument("--trajectories", type=int, metavar="N", help="use the first N trajectories (default: all)")
    parser.add_argument("--integrator", default="rk4", help="integrator of the model's rollouts (default: rk4)")
    parser.add_argument("--substeps", type=int, default=10, help="integrator steps per observation interval")
    parser.add_argument("--n-ensemble", type=int, default=200, help="EnKF ensemble members (>= 2)")
    parser.add_argument("--window", type=int, default=10,
                        help="gradient: observation intervals per shooting window")
    parser.add_argument("--noise-std", type=float,
                        help="EnKF: observation noise std (default: the one the file records)")
    parser.add_argument("--seed", type=int, default=0, help="EnKF: random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress (a bar on a terminal, a line every 10 s otherwise)")


def _assignments(flag: str, items: list[str], example: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise InvalidArgumentError(f"{flag} takes NAME=VALUE items (e.g. {flag} {example}), got {item!r}")
        out[name] = value
    return out


def _number(flag: str, item: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidArgumentError(f"{flag} {item}: {text!r} is not a finite number")
    return value


def _check_options(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """The options in the CLI's words, before anything is read or run."""
    for flag, value, low in (("--substeps", args.substeps, 1), ("--window", args.window, 1),
                             ("--trajectories", args.trajectories, 1), ("--seed", args.seed, 0)):
        if value is not None and value < low:
            raise InvalidArgumentError(f"{flag} must be an integer >= {low}, got {value}")
    if args.method == "enkf" and args.n_ensemble < 2:
        raise InvalidArgumentError(f"--n-ensemble must be an integer >= 2 (an ensemble needs a spread), got "
                                   f"{args.n_ensemble}")
    if args.noise_std is not None and (not math.isfinite(args.noise_std) or args.noise_std <= 0):
        raise InvalidArgumentError(f"--noise-std must be a finite number > 0, got {args.noise_std:g}")
    if len(set(args.params)) != len(args.params):
        raise InvalidArgumentError(f"--params must not repeat a name, got {' '.join(args.params)}")
    init = {k: _number("--init", f"{k}={v}", v) for k, v in _assignments("--init", args.init, "g=3.0").items()}
    bounds = {}
    for name, text in _assignments("--bounds", args.bounds, "g=1,20").items():
        parts = text.split(",")
        if len(parts) != 2:
            raise InvalidArgumentError(f"--bounds {name}={text}: give LO,HI (e.g. --bounds {name}=1,20)")
        bounds[name] = (_number("--bounds", f"{name}={text}", parts[0]), _number("--bounds", f"{name}={text}",
                                                                                 parts[1]))
    for flag, given in (("--init", init), ("--bounds", bounds)):
        extra = [k for k in given if k not in args.params]
        if extra:
            raise InvalidArgumentError(f"{flag} names {', '.join(extra)}, which is not in --params "
                                       f"({' '.join(args.params)})")
    return init, bounds


def main(args: argparse.Namespace) -> int:
    import torch

    from hnnlab._hdf5 import check_target
    from hnnlab.data.io import load_dataset
    from hnnlab.data.observations import observed_indices
    from hnnlab.identify import make_specs
    from hnnlab.identify.parameters import scalar_parameters
    from hnnlab.integrators.registry import INTEGRATORS

    init, bounds = _check_options(args)
    if args.integrator not in INTEGRATORS.names():
        raise InvalidArgumentError(f"--integrator {args.integrator!r} is not an integrator; use one of: "
                                   f"{', '.join(INTEGRATORS.names())}")
    check_target(args.json, overwrite=args.overwrite, what="--json file", error=InvalidArgumentError,
                 overwrite_flag="--overwrite")  # before the data is read and the fit runs
    data = load_dataset(args.data)
    system = data.system
    if args.system != system.name:
        raise InvalidArgumentError(f"--system {args.system}: {args.data} holds observations of {system.name!r}; "
                                   f"use --system {system.name}")
    observation = data.metadata.get("observation")
    if not observation:
        raise InvalidArgumentError(f"{args.data} has no observations; write them with hnnlab simulate --observe q "
                                   "(positions) or --observe state")
    split = data.splits.get(args.split)
    if split is None or split.n_traj == 0 or split.observed is None:
        valid = [k for k, v in data.splits.items() if v.n_traj > 0 and v.observed is not None]
        raise InvalidArgumentError(f"--split {args.split!r} is not a split of {args.data} with observations; valid: "
                                   f"{', '.join(valid)}")
    n = split.n_traj if args.trajectories is None else args.trajectories
    if n > split.n_traj:
        raise InvalidArgumentError(f"--trajectories {n}: split {args.split!r} has {split.n_traj}")
    allowed = scalar_parameters(system)
    unknown = [p for p in args.params if p not in allowed]
    if unknown:
        raise InvalidArgumentError(f"--params {unknown[0]}: {system.name} has no parameter {unknown[0]!r}; its "
                                   f"parameters are: {', '.join(allowed)}")
    defaults = _class_defaults(system)
    start_values = {p: init.get(p, defaults.get(p, getattr(system, p))) for p in args.params}
    specs = make_specs(system, args.params, init=start_values, bounds=bounds)
    index = observed_indices(observation["observe"], system.dof)
    obs_t = split.observed_t.to(torch.float64)  # (n_obs,)
    obs = split.observed[:n].to(torch.float64)  # (n, n_obs, n_observed)
    if obs.shape[1] < 3:
        raise InvalidArgumentError(f"{args.data}: {obs.shape[1]} observation times per trajectory; identification "
                                   "needs at least 3 (a smaller --observe-every when simulating)")
    truth = {p: float(getattr(system, p)) for p in args.params}

    from hnnlab.errors import IncompatibleIntegratorError

    started = time.perf_counter()
    try:
        if args.method == "enkf":
            result = _run_enkf(args, system, specs, obs_t, obs, index, observation)
            extra = {"n_ensemble": args.n_ensemble, "dropped_members": result.dropped, "seed": args.seed}
        else:
            result = _run_gradient(args, system, specs, obs_t, obs, index)
            extra = {"window": result.windows.length, "n_windows": result.windows.n_windows,
                     "iterations": result.iterations, "converged": result.converged, "max_gap": result.max_gap}
    except IncompatibleIntegratorError as exc:  # the Python keyword in the message is not an option here
        text = str(exc).replace(", or pass allow_nonseparable=True to accept a non-symplectic result", "")
        raise IncompatibleIntegratorError(f"--integrator {args.integrator}: {text}") from None
    seconds = time.perf_counter() - started
    report = {
        "parameters": {p: {"estimate": result.estimates[p], "std": result.std[p], "init": start_values[p],
                           "file_value": truth[p]} for p in args.params},
        "method": args.method,
        "residual": result.residual,
        "seconds": seconds,
        "data": str(args.data),
        "split": args.split,
        "system": system.name,
        "n_traj": n,
        "n_obs": int(obs.shape[1]),
        "observation": observation,
        "integrator": args.integrator,
        "substeps": args.substeps,
        **extra,
    }
    _write_json(report, args.json, args.overwrite)
    _print(report)
    return 0


def _class_defaults(system: Any) -> dict[str, float]:
    """The defaults of the system class's scalar parameters (``--init`` falls back to them)."""
    import dataclasses

    return {f.name: f.default for f in dataclasses.fields(type(system))
            if isinstance(f.default, float) and not isinstance(f.default, bool)}


@contextmanager
def _progress(total: int, description: str, unit: str, enabled: bool):  # noqa: ANN202 - yields update(done, total)
    """A rich bar on a terminal, a line every 10 s otherwise (the helpers of hnnlab rollout and simulate)."""
    if not enabled:
        yield None
        return
    if sys.stderr.isatty():
        from hnnlab.rollout import _Bar

        with _Bar(total, description) as bar:
            yield lambda done, _total: bar.update(done)
        return
    from hnnlab.evaluate import _ProgressLines

    lines = _ProgressLines(total, description, unit=unit)
    yield lambda done, _total: lines.update(done)


def _run_enkf(args, system, specs, obs_t, obs, index, observation):  # noqa: ANN001, ANN202
    import torch

    from hnnlab.identify import ensemble_kalman_filter, initial_state_prior, with_parameters

    noise = args.noise_std if args.noise_std is not None else float(observation["noise_std"])
    if noise <= 0:
        raise InvalidArgumentError(f"{args.data} records observation noise_std {noise:g}; the EnKF needs the noise "
                                   "level: pass --noise-std X")
    start_system = with_parameters(system, {s.name: float(s.init) for s in specs})
    x0 = initial_state_prior(start_system, obs_t, obs, index)  # (n, 2 * dof)
    with _progress(obs.shape[1], "EnKF", "observation times", not args.no_progress) as step:
        return ensemble_kalman_filter(system, obs_t, obs, observe_index=index, noise_std=noise, specs=specs,
                                      x0_mean=x0, x0_std=0.5, integrator=args.integrator, substeps=args.substeps,
                                      n_ensemble=args.n_ensemble, generator=torch.Generator().manual_seed(args.seed),
                                      on_step=step)


def _run_gradient(args, system, specs, obs_t, obs, index):  # noqa: ANN001, ANN202
    from hnnlab.identify import fit_parameters, with_parameters

    start_system = with_parameters(system, {s.name: float(s.init) for s in specs})
    with _progress(50, "multiple-shooting fit", "iterations", not args.no_progress) as step:
        return fit_parameters(start_system, obs_t, obs, observe_index=index, specs=specs, integrator=args.integrator,
                              substeps=args.substeps, window=args.window, max_iterations=50, on_step=step)


def _write_json(report: dict[str, Any], path: str, overwrite: bool) -> None:
    """The report at ``path``, atomically (complete or absent, also on Ctrl-C)."""
    import json

    from hnnlab._hdf5 import AtomicWrite

    with AtomicWrite(path, overwrite=overwrite, what="--json file", error=InvalidArgumentError,
                     overwrite_flag="--overwrite") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")


def _print(report: dict[str, Any]) -> None:
    print(f"{report['system']} from {report['n_traj']} trajectories x {report['n_obs']} observations "
          f"({report['observation']['observe']}, noise_std {report['observation']['noise_std']:g}), method "
          f"{report['method']}:")
    width = max(len(name) for name in report["parameters"])
    for name, p in report["parameters"].items():
        print(f"  {name:<{width}} = {p['estimate']:.6g} +- {p['std']:.2g}   (started at {p['init']:g}; the file "
              f"records {p['file_value']:g})")
    print(f"  residual (RMS of observed - fitted) {report['residual']:.4g}; {report['seconds']:.2f} s")

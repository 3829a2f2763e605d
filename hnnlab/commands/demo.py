"""Run the whole pipeline on two small systems: the published HNN, hnnlab's best model and the baseline.

Stages: integrators on the analytic pendulum; the Greydanus et al. (2019) mass-spring and pendulum datasets;
on each, the published HNN (derivative matching, implicit midpoint rollouts), hnnlab's separable HNN trained
through leapfrog rollouts with a derivative term (leapfrog rollouts) and the baseline neural ODE (RK4
rollouts), each trained with Lightning (tracked in W&B, offline unless a key is set), rolled out for 10,000
steps in float64 against the true system and audited; one comparison table (energy error, valid prediction
time) and one figure. A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hnnlab.demo import MODELS, DemoConfig

_DEFAULTS = DemoConfig()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    parser.add_argument("--out", default=str(d.out), help="output directory (default: %(default)s)")
    parser.add_argument("--train-steps", type=_positive_int, default=d.train_steps,
                        help="full-batch training steps of the published HNN and the baseline (default: %(default)s)")
    parser.add_argument("--leapfrog-steps", type=_positive_int, default=d.leapfrog_steps,
                        help="full-batch training steps of the separable HNN trained through leapfrog windows "
                             "(default: %(default)s)")
    parser.add_argument("--window", type=_positive_int, default=d.window,
                        help="leapfrog steps per training window of that model (default: %(default)s)")
    parser.add_argument("--leapfrog-lr", type=_positive_float, default=d.leapfrog_lr,
                        help="Adam learning rate of that model; the others use the published 1e-3 "
                             "(default: %(default)s)")
    parser.add_argument("--derivative-weight", type=_nonnegative_float, default=d.derivative_weight,
                        help="weight of that model's dx/dt term beside its rollout loss; 0 trains it on rollouts "
                             "only (default: %(default)s)")
    parser.add_argument("--rollout-steps", type=_positive_int, default=d.rollout_steps,
                        help="rollout length in steps, every model (default: %(default)s)")
    parser.add_argument("--n-rollouts", type=_positive_int, default=d.n_rollouts,
                        help="test initial states rolled out per model, the same for every model "
                             "(default: %(default)s)")
    parser.add_argument("--integrator-steps", type=_positive_int, default=d.integrator_steps,
                        help="steps of the integrator comparison on the analytic pendulum (default: %(default)s)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(d.models), metavar="MODEL",
                        help=f"models to run, among {', '.join(MODELS)} (default: %(default)s)")
    parser.add_argument("--jobs", type=_positive_int, default=d.jobs,
                        help="models trained at a time, one process each (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help="seed of the datasets, initialisations and training (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    from hnnlab.demo import run_demo

    run_demo(DemoConfig(
        out=Path(args.out), train_steps=args.train_steps, leapfrog_steps=args.leapfrog_steps, window=args.window,
        leapfrog_lr=args.leapfrog_lr, derivative_weight=args.derivative_weight, rollout_steps=args.rollout_steps,
        n_rollouts=args.n_rollouts,
        integrator_steps=args.integrator_steps, models=tuple(args.models), jobs=args.jobs, seed=args.seed,
    ))
    return 0

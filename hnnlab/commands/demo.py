"""Run the whole pipeline on two small systems: simulate, train HNN and baseline, roll out, audit, compare.

Stages: integrators on the analytic pendulum; Greydanus et al. (2019) mass-spring and pendulum datasets;
an HNN and a baseline MLP trained on each with Lightning (tracked in W&B, offline unless a key is set);
10,000-step float64 rollouts with the true reference; the conservation audit; a comparison table.
A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    parser.add_argument("--train-steps", type=int, default=2000, help="full-batch training steps per model")
    parser.add_argument("--rollout-steps", type=int, default=10_000, help="rollout length in steps")
    parser.add_argument("--n-rollouts", type=int, default=16, help="test initial states rolled out per model")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    from hnnlab.demo import DemoConfig, run_demo
    from hnnlab.errors import InvalidArgumentError

    for name in ("train_steps", "rollout_steps", "n_rollouts"):
        if getattr(args, name) < 1:
            raise InvalidArgumentError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    run_demo(DemoConfig(out=Path(args.out), train_steps=args.train_steps, rollout_steps=args.rollout_steps,
                        n_rollouts=args.n_rollouts, seed=args.seed))
    return 0

"""Roll a trained model out over a long horizon and stream it, with the true reference, to HDF5.

Example:
  hnnlab rollout --ckpt runs/.../last.ckpt --data data/spring.h5 --split test --steps 10000 --out rollout.h5
Then audit it: hnnlab audit rollout.h5 --json report.json --plots plots/
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from hnnlab.errors import InvalidArgumentError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="checkpoint written by hnnlab fit")
    parser.add_argument("--data", required=True, help="dataset file whose initial states and system are used")
    parser.add_argument("--split", default="test", help="split to take initial states from (default: test)")
    parser.add_argument("--steps", type=int, required=True, help="number of integrator steps")
    parser.add_argument("--out", required=True, help="output rollout file (.h5)")
    parser.add_argument("--dt", type=float, default=None, help="step size (default: the dataset's dt)")
    parser.add_argument("--integrator", default=None,
                        help="integrator name (default: leapfrog for separable models, implicit_midpoint for "
                             "general HNNs, rk4 for models without an energy)")
    parser.add_argument("--n-init", type=int, default=None, help="number of initial states (default: all)")
    parser.add_argument("--save-every", type=int, default=1, help="save every k-th step (default: 1)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                        help="evaluation dtype (default: float64)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def main(args: argparse.Namespace) -> int:
    from hnnlab.data.io import load_dataset
    from hnnlab.evaluate import predict_to_file
    from hnnlab.training.checkpoint import load_checkpoint

    loaded = load_checkpoint(args.ckpt)
    data = load_dataset(args.data)
    if args.split not in data.splits or data.splits[args.split].n_traj == 0:
        valid = [k for k, v in data.splits.items() if v.n_traj > 0]
        raise InvalidArgumentError(f"--split {args.split!r} is not a non-empty split of {args.data}; valid: {valid}")
    split = data.splits[args.split]
    n = split.n_traj if args.n_init is None else args.n_init
    if n < 1 or n > split.n_traj:
        raise InvalidArgumentError(f"--n-init must be between 1 and {split.n_traj} for split {args.split!r}, got {n}")
    dtype = getattr(torch, args.dtype)
    x0 = split.clean[:n, 0].to(dtype=dtype, device=args.device)  # (n, 2 * dof)
    dt = args.dt if args.dt is not None else split.dt
    model = loaded.model.to(dtype=dtype, device=args.device)
    summary = predict_to_file(
        model, x0, dt=dt, n_steps=args.steps, out=args.out, integrator=args.integrator,
        save_every=args.save_every, system=data.system, overwrite=args.overwrite,
        metadata={"checkpoint": args.ckpt, "command": shlex.join(["hnnlab", *sys.argv[1:]])},
    )
    bad = summary["first_nonfinite_step"]
    print(
        f"wrote {summary['path']}: {n} trajectories x {args.steps} steps of dt={dt:g} with {summary['integrator']}"
        f" (reference: {summary['reference_integrator']})"
        + (f"; the rollout turned non-finite at step {bad}" if bad is not None else "")
    )
    return 0

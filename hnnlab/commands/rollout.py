"""Roll a trained model out over a long horizon and stream it, with the true reference, to HDF5.

Example:
  hnnlab rollout --ckpt runs/.../last.ckpt --data data/spring.h5 --split test --steps 10000 --out rollout.h5
Then audit it: hnnlab audit rollout.h5 --json report.json --plots plots/

A model that takes inputs (a PortHamiltonianNN with n_inputs > 0) is driven by each trajectory's inputs stored
in the dataset (simulated with --inputs), for at most the time they cover; the rollout file stores them.

An echo state network file (hnnlab esn fit) is a discrete-time map: it forecasts on the dataset's own step only,
after a warm-up on the first --warmup clean states of each trajectory; the rollout starts at the last of them.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import warnings

import torch

from hnnlab.errors import InvalidArgumentError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True,
                        help="checkpoint written by hnnlab fit, or an echo state network file (hnnlab esn fit)")
    parser.add_argument("--data", required=True, help="dataset file whose initial states and system are used")
    parser.add_argument("--split", default="test", help="split to take initial states from (default: test)")
    parser.add_argument("--steps", type=int, required=True,
                        help="number of integrator steps (a model that takes inputs: at most the horizon of the "
                             "dataset's inputs)")
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
    parser.add_argument("--allow-nonseparable", action="store_true",
                        help="accept a separable-only method (leapfrog, ...) on a general H: not symplectic there")
    parser.add_argument("--warmup", type=int, default=None,
                        help="echo state network files (hnnlab esn fit) only: the true states of each trajectory that "
                             "warm the reservoir up before the forecast (default: its washout + 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress (a bar on a terminal, a line every 10 s otherwise)")


def main(args: argparse.Namespace) -> int:
    import math

    from hnnlab.cli import parse_device
    from hnnlab.data.io import load_dataset
    from hnnlab.errors import IncompatibleIntegratorError
    from hnnlab.evaluate import check_model_fits, predict_to_file
    from hnnlab.training.checkpoint import load_checkpoint

    # The options first, in the CLI's words, before anything is loaded or written.
    if args.steps < 1:
        raise InvalidArgumentError(f"--steps must be >= 1, got {args.steps}")
    if args.save_every < 1:
        raise InvalidArgumentError(f"--save-every must be >= 1, got {args.save_every}")
    if args.save_every > args.steps:
        raise InvalidArgumentError(
            f"--save-every {args.save_every} is more than --steps {args.steps}: no state after the first would be saved"
        )
    if args.dt is not None and (not math.isfinite(args.dt) or args.dt <= 0):
        raise InvalidArgumentError(f"--dt must be a finite number > 0, got {args.dt:g}")
    device = parse_device("--device", args.device)
    from hnnlab._hdf5 import check_target

    check_target(args.out, overwrite=args.overwrite, what="rollout file", error=InvalidArgumentError,
                 overwrite_flag="--overwrite")  # before the checkpoint and data are loaded
    steps = args.steps - args.steps % args.save_every
    if steps != args.steps:
        print(f"hnnlab rollout: warning: --steps {args.steps} is not a multiple of --save-every {args.save_every}: "
              f"running {steps} steps (the last saved state); use --steps {steps} or {steps + args.save_every} to "
              "silence this", file=sys.stderr)
    from hnnlab.esn_io import is_esn_file

    if is_esn_file(args.ckpt):
        return _forecast(args, steps, device)
    if args.warmup is not None:
        raise InvalidArgumentError(f"--warmup applies to echo state network files (hnnlab esn fit); {args.ckpt!r} is a "
                                   "checkpoint of a vector field, which starts from one state")
    integrator = args.integrator
    if args.allow_nonseparable:
        from hnnlab.integrators import get_integrator
        from hnnlab.integrators.registry import INTEGRATORS

        if integrator is None:
            raise InvalidArgumentError("--allow-nonseparable needs --integrator NAME (a separable-only method)")
        cls = INTEGRATORS.get(integrator)
        if not getattr(cls, "requires_separable", False):
            raise InvalidArgumentError(
                f"--allow-nonseparable applies to separable-only methods; {integrator!r} accepts any H already"
            )
        integrator = get_integrator(integrator, allow_nonseparable=True)

    loaded = load_checkpoint(args.ckpt)
    data = load_dataset(args.data)
    if args.split not in data.splits or data.splits[args.split].n_traj == 0:
        valid = [k for k, v in data.splits.items() if v.n_traj > 0]
        raise InvalidArgumentError(f"--split {args.split!r} is not a non-empty split of {args.data}; valid: {valid}")
    check_model_fits(loaded.model, data.system.describe(), checkpoint=args.ckpt, data=f"--data {args.data!r}")
    split = data.splits[args.split]
    n = split.n_traj if args.n_init is None else args.n_init
    if n < 1 or n > split.n_traj:
        raise InvalidArgumentError(f"--n-init must be between 1 and {split.n_traj} for split {args.split!r}, got {n}")
    dtype = getattr(torch, args.dtype)
    x0 = split.clean[:n, 0].to(dtype=dtype, device=device)  # (n, 2 * dof)
    dt = args.dt if args.dt is not None else split.dt
    inputs = _stored_inputs(loaded.model, data, split, n, steps, dt, args, device)
    model = loaded.model.to(dtype=dtype, device=device)
    try:
        with warnings.catch_warnings():
            if args.allow_nonseparable:  # asked for: said once here, not once per check
                warnings.filterwarnings("ignore", message=".*is symplectic only for a separable H")
            if args.allow_nonseparable and not model.is_separable:
                print(f"hnnlab rollout: warning: {args.integrator} is not symplectic for {type(model).__name__}, which "
                      "declares is_separable=False (--allow-nonseparable)", file=sys.stderr)
            summary = predict_to_file(
                model, x0, dt=dt, n_steps=steps, out=args.out, integrator=integrator,
                save_every=args.save_every, system=data.system, overwrite=args.overwrite,
                metadata={"checkpoint": args.ckpt, "command": shlex.join(["hnnlab", *sys.argv[1:]])},
                progress=not args.no_progress, description=f"rollout of {n} trajectories", inputs=inputs,
            )
    except IncompatibleIntegratorError as exc:
        # the Python keyword in the message is a flag here
        raise IncompatibleIntegratorError(
            str(exc).replace("pass allow_nonseparable=True", "pass --allow-nonseparable")
        ) from None
    bad = summary["first_nonfinite_step"]
    print(
        f"wrote {summary['path']}: {n} trajectories x {summary['n_steps']} steps of dt={dt:g} with "
        f"{summary['integrator']} (reference: {summary['reference_integrator']})"
        + (f"; the rollout turned non-finite at step {bad}" if bad is not None else "")
        + (f"; driven by the dataset's inputs ({inputs.interpolation}), stored in the file" if inputs is not None
           else "")
    )
    return 0


def _forecast(args: argparse.Namespace, steps: int, device) -> int:  # noqa: ANN001 - a torch.device
    """``hnnlab rollout`` of an echo state network file: warm up on the first ``--warmup`` clean states of each
    trajectory of the split, then forecast ``steps`` steps on the dataset's own step (the one it was fitted on)."""
    from hnnlab.data.io import load_dataset
    from hnnlab.esn_io import DT_RTOL, check_forecast_data, load_esn
    from hnnlab.evaluate import forecast_to_file

    name = f"echo state network {args.ckpt!r}"
    for flag, given in (("--integrator", args.integrator is not None),
                        ("--allow-nonseparable", args.allow_nonseparable)):
        if given:
            raise InvalidArgumentError(f"{flag} applies to vector-field models; {name} is a discrete-time map, "
                                       "which no integrator steps")
    fitted = load_esn(args.ckpt)
    if args.dt is not None and not math.isclose(args.dt, fitted.dt, rel_tol=DT_RTOL):
        raise InvalidArgumentError(f"--dt {args.dt:g}: {name} was fitted on dt = {fitted.dt:g} and forecasts only on "
                                   "that step (the dataset's); leave --dt out")
    data = load_dataset(args.data)
    if args.split not in data.splits or data.splits[args.split].n_traj == 0:
        valid = [k for k, v in data.splits.items() if v.n_traj > 0]
        raise InvalidArgumentError(f"--split {args.split!r} is not a non-empty split of {args.data}; valid: {valid}")
    split = data.splits[args.split]
    n = split.n_traj if args.n_init is None else args.n_init
    if n < 1 or n > split.n_traj:
        raise InvalidArgumentError(f"--n-init must be between 1 and {split.n_traj} for split {args.split!r}, got {n}")
    warmup = fitted.default_warmup if args.warmup is None else args.warmup
    check_forecast_data(fitted, data.metadata["system"], split.dt, split.clean.shape[1], warmup,
                        where=f"--data {args.data!r} split {args.split!r}", esn_name=name, warmup_flag="--warmup")
    dtype = getattr(torch, args.dtype)
    warm = split.clean[:n, :warmup].to(dtype=dtype, device=device)  # (n, warmup, 2 * dof), the true first states
    t0 = float(split.t[warmup - 1])  # the time of the last warm-up state, where the forecast starts
    summary = forecast_to_file(
        fitted.model.to(dtype=dtype, device=device), warm, dt=split.dt, n_steps=steps, out=args.out,
        save_every=args.save_every, t0=t0, system=data.system, overwrite=args.overwrite,
        metadata={"checkpoint": args.ckpt, "command": shlex.join(["hnnlab", *sys.argv[1:]])},
        progress=not args.no_progress, description=f"forecast of {n} trajectories",
    )
    print(f"wrote {summary['path']}: {n} trajectories x {summary['n_steps']} steps of dt={split.dt:g} forecast by the "
          f"echo state network from t = {t0:g}, after a warm-up on {warmup} true states (reference: "
          f"{summary['reference_integrator']})")
    return 0


def _stored_inputs(model, data, split, n: int, steps: int, dt: float, args: argparse.Namespace, device):
    """The inputs of the first ``n`` trajectories of the split, as an InputSignal over the samples that cover
    ``[0, steps * dt]``, for a model that takes inputs; ``None`` for one that takes none. Refuses a model and data
    that disagree on inputs, and a horizon past the inputs' last sample."""
    from hnnlab.inputs import InputSignal

    n_inputs = getattr(model, "n_inputs", 0)
    where = f"--data {args.data!r} split {args.split!r}"
    name = type(model).__name__
    if split.inputs is None:
        if n_inputs:
            raise InvalidArgumentError(
                f"checkpoint {args.ckpt!r} holds a {name} that takes n_inputs = {n_inputs} inputs, but {where} "
                "has no field 'inputs'; roll it out on data simulated with inputs (hnnlab simulate --inputs ...)"
            )
        return None
    stored = split.inputs.shape[-1]
    if not n_inputs:
        raise InvalidArgumentError(
            f"{where} has the field 'inputs' ({stored} inputs), but checkpoint {args.ckpt!r} holds a {name} that "
            f"takes none; roll out a model that takes n_inputs = {stored} inputs (a PortHamiltonianNN)"
        )
    if stored != n_inputs:
        raise InvalidArgumentError(
            f"{where} has the field 'inputs' with {stored} inputs, but checkpoint {args.ckpt!r} holds a {name} that "
            f"takes n_inputs = {n_inputs}; use data with {n_inputs} inputs"
        )
    t = split.t.to(torch.float64)
    end = float(t[-1])
    horizon = steps * dt
    if horizon > end * (1 + 1e-12) + 1e-12:
        limit = math.floor(end / dt * (1 + 1e-12))
        raise InvalidArgumentError(
            f"--steps {args.steps} with dt = {dt:g} runs to t = {horizon:g}, past the field 'inputs' of {where}, "
            f"which covers t <= {end:g}; allowed: --steps <= {limit}"
        )
    last = int(torch.searchsorted(t, torch.tensor(horizon * (1 - 1e-12), dtype=torch.float64)))  # first t_k >= end
    interpolation = data.metadata["inputs"]["interpolation"]
    return InputSignal(t[: last + 1], split.inputs[:n, : last + 1].to(dtype=torch.float64, device=device),
                       interpolation)

"""Audit a rollout or dataset file: energy, invariants, symplecticity, reversibility, accuracy.

Exit status: 0 when every threshold holds, 1 when one fails (each failure is printed with its value and
limit), 2 on bad input (a missing, unreadable or non-hnnlab file, a bad option).

Examples:
  hnnlab audit rollout.h5 --json report.json --plots plots/ --max-energy-error 1e-2 --bounded-energy
  hnnlab audit data/spring.h5 --split test --max-energy-error 1e-6
"""

from __future__ import annotations

import argparse
import sys

from hnnlab.audit.metrics import DEFAULT_DRIFT_RATIO, DEFAULT_VPT_THRESHOLD

# the files hnnlab.audit.plots.write_plots writes into --plots DIR
_PLOT_FILES = ("energy_error.png", "phase_portrait.png", "prediction_vs_reference.png")
# option -> (Thresholds field, help)
_LIMITS = {
    "--max-energy-error": ("max_energy_error", "max relative energy error |E(t) - E(0)| / |E(0)| (true energy)"),
    "--max-energy-rms": ("max_energy_rms", "max RMS of the relative energy error"),
    "--max-energy-drift": ("max_energy_drift", "max |secular drift| of the relative energy over the horizon"),
    "--max-model-energy-error": ("max_model_energy_error", "max relative error of the model's own energy"),
    "--max-invariant-error": ("max_invariant_error", "max absolute change of the other invariants (momenta)"),
    "--max-symplecticity-error": ("max_symplecticity_error", "max ||J^T Omega J - Omega||_F of the one-step map"),
    "--max-volume-error": ("max_volume_error", "max |det J - 1| of the one-step map"),
    "--max-reversibility-error": ("max_reversibility_error", "max distance to start after N steps, flip, N steps"),
    "--max-mse": ("max_mse", "max mean squared error against the reference"),
    "--max-gmre": ("max_gmre", "max geometric-mean relative error against the reference (Finzi et al. 2020)"),
    "--min-valid-prediction-time": ("min_valid_prediction_time", "min valid prediction time (worst trajectory)"),
    "--max-constraint-violation": ("max_constraint_violation",
                                   "max |Phi(x)| of the holonomic constraints along the rollout (constrained systems "
                                   "and models, Cartesian coordinates)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a rollout file (hnnlab rollout) or a dataset file")
    parser.add_argument("--json", metavar="REPORT.json", help="write the full report as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json report or --plots PNGs")
    parser.add_argument("--plots", metavar="DIR", help="write PNG plots (energy error, phase portraits, ...)")
    parser.add_argument("--split", default=None,
                        help="dataset split to audit (dataset files; default: test)")
    parser.add_argument("--trajectories", type=int, metavar="N", help="audit only the first N trajectories")
    parser.add_argument("--ckpt", metavar="CKPT",
                        help="checkpoint of the model a rollout came from: enables the structural checks of its "
                             "one-step map and its energy (never loaded implicitly from the file's metadata)")
    limits = parser.add_argument_group("thresholds (exit 1 when one fails; none by default)")
    for option, (_, text) in _LIMITS.items():
        limits.add_argument(option, type=float, metavar="X", help=text)
    limits.add_argument("--bounded-energy", action="store_true",
                        help="fail when the energy error drifts secularly instead of staying bounded")
    limits.add_argument("--balanced-energy", action="store_true",
                        help="fail unless the energy balance H(t) - H(0) = int P dt holds (open systems)")
    limits.add_argument("--allow-nonfinite", action="store_true",
                        help="do not fail on NaN/inf states (they are still reported)")
    opts = parser.add_argument_group("measurement options")
    opts.add_argument("--vpt-threshold", type=float, default=DEFAULT_VPT_THRESHOLD,
                      help=f"normalised-error threshold of the valid prediction time (default {DEFAULT_VPT_THRESHOLD})")
    opts.add_argument("--drift-ratio", type=float, default=DEFAULT_DRIFT_RATIO,
                      help="drifting when |trend over horizon| > RATIO * oscillation (default 1)")
    opts.add_argument("--structure-samples", type=int, default=16, help="states used by the structural checks")
    opts.add_argument("--reversibility-steps", type=int, default=100, help="N of the reversibility check")
    opts.add_argument("--no-structure", action="store_true", help="skip symplecticity and reversibility")
    opts.add_argument("--lyapunov", action="store_true",
                      help="add the Lyapunov section: the reference l1 and Lyapunov time, the model's own l1 (with "
                           "--ckpt), the valid prediction time in Lyapunov times and the perturbed-state floor")
    opts.add_argument("--lyapunov-steps", type=int, default=2000, help="averaging steps of the Lyapunov spectra")
    opts.add_argument("--lyapunov-perturbation", type=float, default=1e-4,
                      help="initial-state perturbation of the floor")
    parser.add_argument("--quiet", action="store_true", help="print failures only, no table")


def main(args: argparse.Namespace) -> int:
    from hnnlab.audit import Thresholds, audit_file
    from hnnlab.errors import InvalidArgumentError

    limits = {field: getattr(args, option[2:].replace("-", "_")) for option, (field, _) in _LIMITS.items()}
    thresholds = Thresholds(**limits, bounded_energy=args.bounded_energy, allow_nonfinite=args.allow_nonfinite,
                            balanced_energy=args.balanced_energy)
    if args.trajectories is not None and args.trajectories < 1:
        raise InvalidArgumentError(f"--trajectories must be >= 1, got {args.trajectories}")
    if args.plots:
        from pathlib import Path

        if Path(args.plots).exists() and not Path(args.plots).is_dir():
            raise InvalidArgumentError(f"--plots {args.plots!r} is a file; give a directory for the PNG plots")
    if args.split is not None:
        from pathlib import Path

        from hnnlab import rollout_io
        from hnnlab.audit.sources import file_schema

        if Path(args.file).is_file() and file_schema(args.file) == rollout_io.SCHEMA:
            raise InvalidArgumentError(
                f"--split applies to dataset files; {args.file!r} is a rollout file (its trajectories are the "
                "audited ones; --trajectories N takes the first N)"
            )
    options = {
        "vpt_threshold": args.vpt_threshold,
        "drift_ratio": args.drift_ratio,
        "structure_samples": args.structure_samples,
        "reversibility_steps": args.reversibility_steps,
    }
    if args.no_structure:
        options["check_structure"] = False
    if args.lyapunov:
        if args.lyapunov_steps < 1:
            raise InvalidArgumentError(f"--lyapunov-steps must be an integer >= 1, got {args.lyapunov_steps}")
        if not args.lyapunov_perturbation > 0:
            raise InvalidArgumentError(f"--lyapunov-perturbation must be > 0, got {args.lyapunov_perturbation}")
        options.update(lyapunov=True, lyapunov_steps=args.lyapunov_steps,
                       lyapunov_perturbation=args.lyapunov_perturbation)
    if args.json:  # refused before the audit runs, as every other writer does
        from hnnlab._hdf5 import check_target

        check_target(args.json, overwrite=args.overwrite, what="--json report", error=InvalidArgumentError,
                     overwrite_flag="--overwrite")
    if args.plots and not args.overwrite:
        from pathlib import Path

        there = [name for name in _PLOT_FILES if (Path(args.plots) / name).exists()]
        if there:
            raise InvalidArgumentError(
                f"--plots {args.plots!r} already holds {', '.join(there)}; pass --overwrite to replace them"
            )
    model = None
    if args.ckpt is not None:
        from hnnlab.esn_io import is_esn_file

        if is_esn_file(args.ckpt):
            raise InvalidArgumentError(
                f"--ckpt {args.ckpt!r} is an echo state network file: a discrete-time forecaster has no vector field "
                "whose one-step map or energy could be checked; audit its rollout file without --ckpt"
            )
        from hnnlab.evaluate import check_model_fits
        from hnnlab.training.checkpoint import load_checkpoint

        model = load_checkpoint(args.ckpt).model
        system, made_by = _file_system_and_model(args.file)
        check_model_fits(model, system, checkpoint=args.ckpt, data=repr(args.file))
        ours = model.describe().get("class_path")
        theirs = (made_by or {}).get("class_path")
        if ours and theirs and ours != theirs:
            raise InvalidArgumentError(
                f"checkpoint {args.ckpt!r} holds model {ours}, but {args.file!r} is a rollout of model {theirs}; "
                "give the checkpoint the rollout was made from"
            )
    report = audit_file(
        args.file,
        split=args.split or "test",
        model=model,
        thresholds=thresholds,
        plots=args.plots,
        trajectories=None if args.trajectories is None else slice(0, args.trajectories),
        **options,
    )
    if args.json:
        _write_json(report, args.json, args.overwrite)
    if not args.quiet:
        from rich.console import Console

        report.render(Console(highlight=False), show_failures=False)
    failures = report.failures()
    for failure in failures:
        print(f"hnnlab audit: FAILED {failure.message}", file=sys.stderr)
    return 1 if failures else 0


def _file_system_and_model(path: str) -> tuple[dict | None, dict | None]:
    """The ``system.describe()`` a rollout or dataset file records, and a rollout's ``model.describe()``
    (``None`` where the file names none)."""
    from hnnlab import rollout_io
    from hnnlab._hdf5 import read_json_attr
    from hnnlab.audit.sources import file_schema

    if file_schema(path) == rollout_io.SCHEMA:
        with rollout_io.open_hdf5(path, what="rollout file") as f:
            where, error = repr(path), rollout_io.RolloutFileError
            return (read_json_attr(f, "system", where=where, error=error),
                    read_json_attr(f, "model", where=where, error=error))
    from hnnlab.data.io import read_metadata

    return read_metadata(path).get("system"), None


def _write_json(report, path: str, overwrite: bool) -> None:  # noqa: ANN001 - an AuditReport
    """The report as JSON at ``path``, atomically (complete or absent)."""
    from hnnlab._hdf5 import AtomicWrite
    from hnnlab.errors import InvalidArgumentError

    with AtomicWrite(path, overwrite=overwrite, what="--json report", error=InvalidArgumentError,
                     overwrite_flag="--overwrite") as tmp:
        report.to_json(tmp)

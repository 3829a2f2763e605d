"""Inspect dataset files: `hnnlab data check FILE` validates one against the format spec.

check: schema version, required attributes and fields, shapes, dtypes, finite values, and that the
stored energy and derivatives match the system's at the clean states. Exit 0 when valid; otherwise
one line per problem and exit 1 (2 when FILE is missing or a directory).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a dataset file against the spec (docs/data_format.md)")
    check.add_argument("file", help="the .h5 file")
    check.add_argument("--energy-rtol", type=float, default=None,
                       help="tolerance of the energy/derivative check (default 1e-8 for float64, 1e-4 for float32)")
    check.add_argument("--structure-only", action="store_true", help="skip reading the arrays")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hnnlab.data.io import read_metadata
    from hnnlab.data.schema import validate
    from hnnlab.errors import InvalidArgumentError

    if not Path(args.file).is_file():  # nothing to check: a wrong argument (exit 2), not an invalid dataset (1)
        what = "is a directory" if Path(args.file).is_dir() else "does not exist"
        raise InvalidArgumentError(f"{args.file!r} {what}; give a dataset file (.h5)")
    problems = validate(args.file, energy_rtol=args.energy_rtol, check_values=not args.structure_only)
    if problems:
        for problem in problems:
            print(problem)
        print(f"{args.file}: {len(problems)} problem{'s' if len(problems) > 1 else ''}; not a valid hnnlab dataset")
        return 1
    meta = read_metadata(args.file)
    system = meta["system"]
    print(f"{args.file}: valid ({meta['schema']} v{meta['schema_version']}, system {system['name']}, "
          f"dof {meta['dof']}, splits {', '.join(meta['splits'])}, {meta['dtype']})")
    observation = meta.get("observation")
    if observation:
        print(f"  observations: {observation['observe']} ({', '.join(observation['names'])}) every "
              f"{observation['every']} saved time(s), noise_std {observation['noise_std']:g}, "
              f"seed {observation['seed']}")
    inputs = meta.get("inputs")
    if inputs:
        print(f"  inputs: {', '.join(inputs['names'])} ({inputs['interpolation']})")
    return 0

"""The ``hnnlab`` command line.

``hnnlab fit | validate | test`` go through LightningCLI (``hnnlab.training.cli``); the other
commands are plain argparse subcommands in ``hnnlab.commands.<name>``. User mistakes (any
:class:`~hnnlab.errors.HnnlabError`) print one ``error:`` line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hnnlab import __version__

LIGHTNING_COMMANDS = ("fit", "validate", "test")
# name -> module in hnnlab.commands
COMMANDS = {
    "demo": "demo",
    "simulate": "simulate",
    "data": "data",
    "rollout": "rollout",
    "audit": "audit",
    "reproduce": "reproduce",
}


def _available_commands() -> dict[str, object]:
    found = {}
    for name, module in COMMANDS.items():
        try:
            found[name] = importlib.import_module(f"hnnlab.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"hnnlab.commands.{module}":
                raise
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hnnlab",
        description="Hamiltonian and Lagrangian neural networks with symplectic integrators.",
        epilog="Training: hnnlab fit|validate|test --config configs/<experiment>.yaml (see hnnlab fit --help).",
    )
    parser.add_argument("--version", action="version", version=f"hnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"{name} a model with Lightning (LightningCLI; --config FILE)", add_help=False)
    for name, module in _available_commands().items():
        doc = (module.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else name, description=(module.__doc__ or "").strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from hnnlab.training.cli import run_lightning_cli

        return run_lightning_cli(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from hnnlab.errors import HnnlabError

    try:
        return int(args._module.main(args) or 0)
    except HnnlabError as exc:
        print(f"hnnlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hnnlab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

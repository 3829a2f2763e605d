"""The ``hnnlab`` command line.

``hnnlab fit | validate | test`` go through LightningCLI (``hnnlab.training.cli``); the other
commands are plain argparse subcommands in ``hnnlab.commands.<name>``. User mistakes (any
:class:`~hnnlab.errors.HnnlabError`) print one ``error:`` line and exit with status 2; hnnlab's own
warnings print as one ``warning:`` line. SIGINT and SIGTERM stop the file-writing commands promptly
(exit 130 and 143), with no file half-written (:func:`hnnlab._hdf5.stop_on_signals`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Iterator, Sequence

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
    "identify": "identify",
    "esn": "esn",
}
# commands run under hnnlab._hdf5.stop_on_signals (the others train with Lightning, which handles signals itself)
STOPPABLE = ("simulate", "data", "rollout", "audit", "identify", "esn")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and each option's default where its help does not state one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text or default is None or default is False or default == [] or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


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
    parser.set_defaults(_subparsers={})
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"{name} a model with Lightning (LightningCLI; --config FILE)", add_help=False)
    for name, module in _available_commands().items():
        doc = (module.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else name, description=(module.__doc__ or "").strip(),
                           formatter_class=_HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
        parser.get_default("_subparsers")[name] = p
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from hnnlab.training.cli import run_lightning_cli

        return run_lightning_cli(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # an option the subcommand does not have: its usage, not the top-level one
        where = parser.get_default("_subparsers").get(args.command, parser)
        where.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    from hnnlab._hdf5 import stop_on_signals
    from hnnlab.errors import HnnlabError

    stoppable = stop_on_signals() if args.command in STOPPABLE else contextlib.nullcontext()
    try:
        with _one_line_warnings(f"hnnlab {args.command}"), stoppable:
            return int(args._module.main(args) or 0)
    except HnnlabError as exc:
        print(f"hnnlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hnnlab ... | head`: the reader has gone; stop quietly, as a SIGPIPE would
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
        return 141
    except KeyboardInterrupt as exc:
        code = getattr(exc, "exit_code", 130)
        name = {130: "SIGINT", 143: "SIGTERM"}.get(code, "a signal")
        note = " (nothing was left half-written)" if args.command in STOPPABLE else ""
        print(f"hnnlab {args.command}: stopped by {name}{note}", file=sys.stderr)
        return code


def parse_device(flag: str, value: str):  # noqa: ANN201 - a torch.device
    """``value`` as a ``torch.device`` that exists here, or an :class:`~hnnlab.errors.InvalidArgumentError`
    naming ``flag`` (``--device cuda`` on a machine without a GPU)."""
    import torch

    from hnnlab.errors import InvalidArgumentError

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise InvalidArgumentError(f"{flag} {value!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgumentError(f"{flag} {value}: no CUDA GPU is available on this machine; use {flag} cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InvalidArgumentError(
                f"{flag} {value}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}"
            )
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise InvalidArgumentError(f"{flag} {value}: MPS is not available on this machine; use {flag} cpu")
    elif device.type != "cpu":
        raise InvalidArgumentError(f"{flag} {value!r}: hnnlab runs on cpu, cuda or mps devices")
    return device


ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")


def check_accelerator(flag: str, value: str) -> str:
    """``value`` when it is a Lightning accelerator that exists here, else an
    :class:`~hnnlab.errors.InvalidArgumentError` naming ``flag`` (``--accelerator gpu`` without a GPU)."""
    import torch

    from hnnlab.errors import InvalidArgumentError

    if value not in ACCELERATORS:
        raise InvalidArgumentError(f"{flag} {value!r} is not an accelerator; use one of: {', '.join(ACCELERATORS)}")
    if value in ("gpu", "cuda") and not torch.cuda.is_available():
        raise InvalidArgumentError(f"{flag} {value}: no CUDA GPU is available on this machine; use {flag} cpu")
    if value == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InvalidArgumentError(f"{flag} mps: MPS is not available on this machine; use {flag} cpu")
    return value


@contextlib.contextmanager
def _one_line_warnings(prefix: str) -> Iterator[None]:
    """Show hnnlab's own warnings as ``PREFIX: warning: MESSAGE`` (no source line); others as usual."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' signature
        if category.__module__.startswith("hnnlab"):
            print(f"{prefix}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


if __name__ == "__main__":
    sys.exit(main())

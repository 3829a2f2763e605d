"""Command-line subcommands of ``hnnlab``, one module each.

Each module defines ``add_arguments(parser)`` and ``main(args) -> int`` (the exit code); the first
line of its docstring is the command's help. ``hnnlab.cli`` wires them together.
"""

"""Reproduce a published result: regenerate the data, train, evaluate with the paper's protocol.

Each reproduction writes the published figures beside hnnlab's, with error bars, to
benchmarks/results/<name>.md and .csv (plus <name>.json with every per-seed number). The default
budget fits 2 CPU cores in under an hour per reproduction; --budget published uses the paper's
training budget (meant for a GPU: add --accelerator gpu).

Reproductions:
  greydanus  Greydanus et al. 2019, HNN table: mass-spring, pendulum, 2-body, 3-body
  cranmer    Cranmer et al. 2020, LNN: double-pendulum energy error at t = 100 against the MLP baseline
  finzi      Finzi et al. 2020: chain pendulum (1, 2, 3, 5 links), GMRE of NODE, HNN, CHNN, CLNN rollouts
  chaos      chaos benchmark: prediction time in Lyapunov times on Henon-Heiles, double pendulum, 3-body
  open-systems  port-Hamiltonian network vs NODE vs DissipativeHNN on driven, damped systems (run with
             --seeds 0 1 2: median and min-max over seeds); phlearn's damped mass-spring setup beside it

Examples:
  hnnlab reproduce greydanus
  hnnlab reproduce greydanus --tasks spring pendulum --seeds 0 1 2
  hnnlab reproduce finzi --budget published --accelerator gpu
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from hnnlab.errors import InvalidArgumentError

# name -> module in hnnlab.reproduce
REPRODUCTIONS = {"greydanus": "greydanus", "cranmer": "cranmer", "finzi": "finzi", "chaos": "chaos",
                 "open-systems": "open_systems"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help=f"one of: {', '.join(REPRODUCTIONS)}")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="run only these tasks (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="SEED",
                        help="data and initialisation seeds; error bars are over seeds when several (default: 0)")
    parser.add_argument("--budget", choices=("cpu", "published"), default="cpu",
                        help="training budget: 'cpu' fits 2 cores in under an hour; 'published' is the paper's")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="working directory for data, checkpoints, W&B (default: runs/reproduce/NAME)")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"), metavar="DIR",
                        help="where the tables go (default: benchmarks/results)")
    parser.add_argument("--no-wandb", action="store_true", help="do not track the training runs in W&B")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="torch intra-op threads unless OMP_NUM_THREADS is set (default: 1)")
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator for training (default: cpu)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="override one setting of the budget, VALUE in YAML (--set steps=500 --set "
                             "'models=[baseline, HNN]'); an unknown KEY is refused with the list of settings; "
                             "the results page records every setting")


def parse_settings(items: list[str]) -> dict[str, object]:
    """``--set KEY=VALUE`` items as a dict, each VALUE read as YAML (numbers, lists, strings)."""
    import yaml

    settings: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            settings[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidArgumentError(f"--set {key.strip()}: VALUE is not valid YAML ({text!r}): "
                                       f"{str(exc).splitlines()[0]}") from exc
    return settings


def load(name: str):  # noqa: ANN201 - a module
    if name not in REPRODUCTIONS:
        raise InvalidArgumentError(f"unknown reproduction {name!r}; available: {', '.join(REPRODUCTIONS)}")
    return importlib.import_module(f"hnnlab.reproduce.{REPRODUCTIONS[name]}")


def main(args: argparse.Namespace) -> int:
    from hnnlab.reproduce.common import ReproduceConfig, set_threads

    module = load(args.name)
    if args.threads is not None and args.threads < 1:
        raise InvalidArgumentError(f"--threads must be >= 1, got {args.threads}")
    bad_seeds = [s for s in args.seeds if s < 0]
    if bad_seeds:
        raise InvalidArgumentError(f"--seeds must be integers >= 0, got {' '.join(map(str, bad_seeds))}")
    from hnnlab.cli import check_accelerator

    check_accelerator("--accelerator", args.accelerator)  # before any data is made
    cfg = ReproduceConfig(
        out=args.out or Path("runs/reproduce") / args.name,
        results=args.results,
        seeds=tuple(args.seeds),
        budget=args.budget,
        tasks=tuple(args.tasks) if args.tasks else None,
        wandb=not args.no_wandb,
        threads=args.threads,
        accelerator=args.accelerator,
        extra=parse_settings(args.settings),
    )
    cfg.select(module.TASKS)  # refuse an unknown task before any work
    set_threads(cfg.threads)
    summary = module.run(cfg)
    print(f"wrote {summary['markdown']} and {summary['csv']}")
    return 0

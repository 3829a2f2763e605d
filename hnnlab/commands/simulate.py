"""Simulate a dataset (from a system or a named recipe) into a validated HDF5 file.

Examples:
  hnnlab simulate --recipe greydanus-spring --out data/spring.h5
  hnnlab simulate --recipe chnn-chain-pendulum --param n=5 --out data/chain5.h5
  hnnlab simulate --system pendulum --param g=3.0 --n-traj 1000 --dt 0.05 --n-steps 255 --out data/p.h5
  hnnlab simulate --recipe greydanus-pendulum --observe q --noise-std 0.05 --out data/pend_obs.h5
  hnnlab simulate --system spring_damper_chain --inputs sinusoids --input-param n_terms=2 --out data/chain.h5
  hnnlab simulate --list-recipes

A time grid takes two of --t-end, --n-steps, --dt. Options given with --recipe override the recipe.
With --observe, the file also holds partial noisy observations (positions only, or the full state, at every
--observe-every-th saved time) with --noise-std (default: the recipe's noise) as their noise; the stored states
then stay clean.
The file appears at --out only when complete; an existing file is kept unless --overwrite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import time
from typing import Any

from hnnlab.errors import InvalidArgumentError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--recipe", help="a named recipe (see --list-recipes)")
    source.add_argument("--system", help="a system name or package.module:ClassName")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a system parameter (VALUE as JSON, e.g. g=3.0, radius=[1.3,2.3]); repeatable")
    parser.add_argument("--n-traj", type=int, help="number of trajectories")
    parser.add_argument("--t-end", type=float, help="time span [0, T]")
    parser.add_argument("--n-steps", type=int, help="saved steps per trajectory (n_steps + 1 saved times)")
    parser.add_argument("--dt", type=float, help="time between saved states")
    parser.add_argument("--integrator", help="ground-truth integrator (default dopri8, rtol = atol = 1e-12)")
    parser.add_argument("--rtol", type=float, help="relative tolerance of an adaptive integrator")
    parser.add_argument("--atol", type=float, help="absolute tolerance of an adaptive integrator")
    parser.add_argument("--substeps", type=int, help="integrator steps per saved step (default 1)")
    parser.add_argument("--noise-std", type=float,
                        help="std of Gaussian noise added to the stored states (with --observe: to the observations)")
    parser.add_argument("--observe", choices=["q", "state"],
                        help="also record observations: positions only (q) or the full state; the states stay clean")
    parser.add_argument("--observe-every", type=int, metavar="K",
                        help="observe every K-th saved time (default 1; needs --observe)")
    parser.add_argument("--observe-seed", type=int,
                        help="seed of the observation noise (default: --seed + 1, a stream apart from the states')")
    parser.add_argument("--inputs", choices=["sinusoids", "steps"],
                        help="draw per-trajectory inputs u(t) from this family (systems with inputs, e.g. "
                             "spring_damper_chain); they are stored in the file")
    parser.add_argument("--input-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter of the input family, e.g. n_terms=2 or frequency=[0.5,2.0] (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--splits", help="train,val,test fractions, e.g. 0.8,0.1,0.1 (default 0.8,0,0.2)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="stored dtype")
    parser.add_argument("--device", default="cpu", help="device for the integration (cpu, cuda)")
    parser.add_argument("--batch-size", type=int, help="trajectories integrated per batch (default: all)")
    parser.add_argument("--published-quirks", action="store_true",
                        help="reproduce the published recipe's known quirks instead of fixing them")
    parser.add_argument("--out", help="output file (.h5)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list-recipes", action="store_true", help="list the named recipes and exit")


def main(args: argparse.Namespace) -> int:
    from hnnlab.data.recipes import RECIPES, get_recipe
    from hnnlab.data.writer import check_target, write_dataset

    if args.list_recipes:
        print(_recipe_table([RECIPES.get(name) for name in RECIPES.names()]))
        return 0
    if args.out is None:
        raise InvalidArgumentError("--out is required (the output .h5 file)")
    suffix = os.path.splitext(str(args.out))[1].lower()
    if suffix not in HDF5_SUFFIXES:
        raise InvalidArgumentError(
            f"--out {args.out!r}: the dataset is an HDF5 file; give a name ending in {', '.join(HDF5_SUFFIXES)}"
        )
    if args.recipe is None and args.system is None:
        raise InvalidArgumentError("give --recipe NAME or --system NAME (see --list-recipes)")
    check_target(args.out, overwrite=args.overwrite)  # fail before simulating, not after
    _check_numbers(args)
    from hnnlab.cli import parse_device

    parse_device("--device", args.device)
    params = _parse_params(args.param)
    command = _command_line(args)
    progress = not args.no_progress  # a bar on a terminal, lines otherwise (hnnlab.data.simulate)
    started = time.perf_counter()
    state_noise = args.noise_std if args.observe is None else 0.0  # with --observe, the noise is the observations'
    obs_noise = args.noise_std or 0.0
    if args.recipe is not None:
        overrides = _recipe_overrides(args, params)
        if args.inputs is not None:
            overrides["inputs"] = {"name": args.inputs, **_parse_params(args.input_param, flag="--input-param")}
        if args.observe is not None:
            if args.noise_std is None:  # the recipe's noise model moves to the observations
                obs_noise = get_recipe(args.recipe, **overrides).noise_std
            overrides["noise_std"] = 0.0
        recipe = get_recipe(args.recipe, **overrides)
        result = recipe.build(args.seed, dtype=args.dtype, device=args.device, progress=progress, command=command)
        label = f"recipe {recipe.name}"
    else:
        from hnnlab.data.simulate import simulate
        from hnnlab.systems import get_system

        _check_importable(args.system)
        system = get_system(args.system, **params)
        dt, n_steps = _grid(args.t_end, args.n_steps, args.dt, required=True)
        options = _integrator_options(args)
        result = simulate(
            system, args.n_traj if args.n_traj is not None else 100, dt=dt, n_steps=n_steps,
            integrator=args.integrator or "dopri8", integrator_options=options or None,
            substeps=args.substeps or 1, noise_std=state_noise or 0.0, seed=args.seed,
            splits=_parse_splits(args.splits) if args.splits else (0.8, 0.0, 0.2), dtype=args.dtype,
            device=args.device, batch_size=args.batch_size, progress=progress, command=command,
            inputs=_input_family(args),
        )
        label = f"system {system.describe()['name']}"
    observations, observation = _observe(args, result, obs_noise) if args.observe is not None else (None, None)
    elapsed = time.perf_counter() - started
    # Under the CLI, SIGINT/SIGTERM stop the write and remove its temporary (hnnlab._hdf5.stop_on_signals).
    path = write_dataset(args.out, result, overwrite=args.overwrite, observations=observations,
                         observation=observation)
    _summary(path, result, label, elapsed)
    inputs = result.metadata.get("inputs")
    if inputs:
        family = inputs["family"]
        params = ", ".join(f"{k}={v}" for k, v in family.items() if k not in ("name", "interpolation"))
        print(f"  inputs: {', '.join(inputs['names'])} drawn from {family['name']} ({params}), "
              f"{inputs['interpolation']} between samples")
    if observation is not None:
        n_obs = {name: int(obs_t.shape[0]) for name, (obs_t, _) in observations.items()}
        print(f"  observations: {observation['observe']} ({', '.join(observation['names'])}) every "
              f"{observation['every']} saved time(s), {next(iter(n_obs.values()))} times per trajectory, noise_std "
              f"{observation['noise_std']:g}, seed {observation['seed']}; the states are stored clean")
    return 0


def _observe(args: argparse.Namespace, result, noise_std: float) -> tuple[dict, dict]:  # noqa: ANN001 - SimulationResult
    """Observations of every split's clean states with noise ``noise_std`` (one generator, splits in file order)."""
    import torch

    from hnnlab.data.observations import make_observations

    seed = args.observe_seed if args.observe_seed is not None else args.seed + 1
    generator = torch.Generator().manual_seed(seed)
    dof = int(result.metadata["dof"])
    names = list(result.metadata["state_names"])
    observations: dict = {}
    description: dict = {}
    for name, split in result.splits.items():
        if split is None or not split.n_traj:
            continue
        clean = split.clean_state if split.clean_state is not None else split.state
        obs_t, obs, description = make_observations(
            clean, split.t, observe=args.observe, noise_std=float(noise_std),
            every=args.observe_every or 1, state_names=names, dof=dof, generator=generator,
        )
        observations[name] = (obs_t, obs)
    return observations, description


def _command_line(args: argparse.Namespace) -> str:
    """The command, rebuilt from the parsed options (stored in the file's ``command`` attribute)."""
    words = ["hnnlab", "simulate"]
    for key, value in vars(args).items():
        if key.startswith("_") or key in ("command", "no_progress", "list_recipes") or value in (None, False, []):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def _recipe_overrides(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if params:
        overrides["system_params"] = params
    for key in ("n_traj", "noise_std", "substeps", "batch_size"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.splits:
        overrides["splits"] = _parse_splits(args.splits)
    if args.integrator:
        overrides["integrator"] = args.integrator
        overrides["integrator_options"] = _integrator_options(args)
    elif args.rtol is not None or args.atol is not None:
        from hnnlab.data.recipes import get_recipe

        overrides["integrator_options"] = {**get_recipe(args.recipe).integrator_options, **_integrator_options(args)}
    if args.published_quirks:
        overrides["published_quirks"] = True
    if any(v is not None for v in (args.t_end, args.n_steps, args.dt)):
        dt, n_steps = _grid(args.t_end, args.n_steps, args.dt, required=False)
        overrides["t_end"], overrides["n_times"] = dt * n_steps, n_steps + 1
    return overrides


def _integrator_options(args: argparse.Namespace) -> dict[str, float]:
    return {k: getattr(args, k) for k in ("rtol", "atol") if getattr(args, k) is not None}


def _grid(t_end: float | None, n_steps: int | None, dt: float | None, *, required: bool) -> tuple[float, int]:
    """``(dt, n_steps)`` from two of ``t_end``, ``n_steps``, ``dt`` (all three must agree)."""
    given = sum(v is not None for v in (t_end, n_steps, dt))
    if given < 2:
        raise InvalidArgumentError(
            "the time grid needs two of --t-end, --n-steps, --dt "
            f"(got t_end={t_end}, n_steps={n_steps}, dt={dt})"
        )
    if n_steps is not None and n_steps < 1:
        raise InvalidArgumentError(f"--n-steps must be >= 1, got {n_steps}")
    for name, value in (("--t-end", t_end), ("--dt", dt)):
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise InvalidArgumentError(f"{name} must be a finite number > 0, got {value}")
    if n_steps is None:
        n_steps = round(t_end / dt)
        if n_steps < 1 or not math.isclose(n_steps * dt, t_end, rel_tol=1e-9):
            raise InvalidArgumentError(f"--t-end {t_end} is not a whole number of steps of --dt {dt}")
    elif dt is None:
        dt = t_end / n_steps
    elif t_end is not None and not math.isclose(n_steps * dt, t_end, rel_tol=1e-9):
        raise InvalidArgumentError(f"--t-end {t_end} != --n-steps {n_steps} x --dt {dt}; give only two of them")
    return float(dt), int(n_steps)


def _input_family(args: argparse.Namespace) -> Any:
    """The input family of ``--inputs`` with its ``--input-param`` values (``None`` without ``--inputs``)."""
    if args.inputs is None:
        return None
    from hnnlab.data.input_families import get_input_family

    return get_input_family(args.inputs, **_parse_params(args.input_param, flag="--input-param"))


def _parse_params(items: list[str], flag: str = "--param") -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"{flag} must look like KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise InvalidArgumentError(
                f"{flag} {item}: {key.strip()} must be a number or a JSON list of numbers (e.g. g=3.0, "
                f"radius=[1.3,2.3]), got {value!r}"
            ) from None
        params[key.strip()] = tuple(parsed) if isinstance(parsed, list) else parsed
    return params


def _check_numbers(args: argparse.Namespace) -> None:
    """The numeric options, in the CLI's words (the library's errors name its keyword arguments)."""
    for flag, value in (("--n-traj", args.n_traj), ("--substeps", args.substeps), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise InvalidArgumentError(f"{flag} must be an integer >= 1, got {value}")
    if args.observe is None:
        for flag, value in (("--observe-every", args.observe_every), ("--observe-seed", args.observe_seed)):
            if value is not None:
                raise InvalidArgumentError(f"{flag} needs --observe q or --observe state")
    if args.observe_every is not None and args.observe_every < 1:
        raise InvalidArgumentError(f"--observe-every must be an integer >= 1, got {args.observe_every}")
    if args.observe_seed is not None and args.observe_seed < 0:
        raise InvalidArgumentError(f"--observe-seed must be an integer >= 0, got {args.observe_seed}")
    if args.input_param and args.inputs is None:
        raise InvalidArgumentError("--input-param needs --inputs sinusoids or --inputs steps")
    if args.noise_std is not None and (not math.isfinite(args.noise_std) or args.noise_std < 0):
        raise InvalidArgumentError(f"--noise-std must be a finite number >= 0, got {args.noise_std:g}")
    for flag, value in (("--rtol", args.rtol), ("--atol", args.atol)):
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise InvalidArgumentError(f"{flag} must be a finite number > 0, got {value:g}")


def _check_importable(system: str) -> None:
    """For ``--system package.module:ClassName``, import the module with an error that says how to make it
    importable (the registry's error names only the failed import)."""
    if ":" not in system:
        return
    import importlib

    module = system.partition(":")[0]
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure to import the user's module is theirs to fix
        raise InvalidArgumentError(
            f"--system {system}: cannot import module {module!r} ({type(exc).__name__}: {exc}); the module must be "
            "importable here: install its package, or put the directory that holds it on PYTHONPATH "
            "(PYTHONPATH=DIR hnnlab simulate ...)"
        ) from None


def _recipe_table(recipes: list) -> str:
    """The recipes as aligned columns: name, system, trajectories, time grid, noise, source. A recipe of
    random states (one time each) with a separately simulated test set shows both."""
    rows = [("NAME", "SYSTEM", "TRAJECTORIES", "TIME GRID", "NOISE", "SOURCE")]
    for r in recipes:
        if r.n_times > 1:
            grid, count = f"t in [0, {r.t_end:g}], {r.n_times} times", f"{r.n_traj}"
        else:
            grid, count = "random states, 1 time each", f"{r.n_traj}"
        if r.test_set is not None:
            spec = r.test_set
            grid += f"; test: t in [0, {spec.t_end:g}], {spec.n_times} times"
            count += f" + {spec.n_traj} test"
        rows.append((r.name, r.system, count, grid, f"{r.noise_std:g}", r.source))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in rows
    )


def _parse_splits(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InvalidArgumentError(f"--splits must be three comma-separated fractions like 0.8,0.1,0.1, got {text!r}")
    return values  # type: ignore[return-value]


def _summary(path, result, label: str, elapsed: float) -> None:
    size = path.stat().st_size
    integ = result.metadata["integrator"]
    tol = ", ".join(f"{k}={integ[k]:g}" for k in ("rtol", "atol", "tol") if k in integ)
    sizes = ", ".join(f"{name} {n} x {t}" for name, (n, t) in result.sizes().items())
    from hnnlab._hdf5 import human_bytes

    print(f"wrote {path} ({human_bytes(size)}) in {elapsed:.2f} s")
    print(f"  {label}; integrator {integ['name']}{' (' + tol + ')' if tol else ''}, substeps {integ['substeps']}; "
          f"seed {result.metadata['seed']}; noise_std {result.metadata['noise_std']:g}")
    print(f"  trajectories x times: {sizes}; dt {result.metadata['dt']:.6g}")
    print(f"  energy spread along clean trajectories: max |E(t) - E(0)| / |E(0)| = {result.energy_spread():.3g}")

"""Fit an echo state network (reservoir computing baseline) on a dataset, in closed form: `hnnlab esn fit`.

Examples:
  hnnlab simulate --system henon_heiles --param energy_range=[0.05,0.08] --n-traj 40 --dt 0.1 --n-steps 300 \\
      --out data/henon-heiles-regular.h5
  hnnlab esn fit --config configs/henon_heiles_esn.yaml --out runs/esn/henon_heiles.h5
  hnnlab rollout --ckpt runs/esn/henon_heiles.h5 --data data/henon-heiles-regular.h5 --steps 200 --out esn.h5
  hnnlab audit esn.h5 --lyapunov

The readout is one ridge solve over the teacher-forced training states (no epochs, no optimizer), so the model
is not trained through `hnnlab fit` (Lightning): it is written to a self-describing HDF5 file (schema
hnnlab.esn) that `hnnlab rollout --ckpt FILE` forecasts with, on the dataset's own step only, after a warm-up on
the first --warmup true states of each trajectory. The file appears at --out only when complete.

The config (YAML, optional; `base:` inherits as in `hnnlab fit`) holds three sections:
  data:  {path: FILE.h5, split: train, trajectories: null}
  model: {n_reservoir: 500, spectral_radius: 0.9, leak: 1.0, input_scale: 0.5, density: 0.05, ridge: 1e-6, seed: 0}
  fit:   {washout: 50}
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from hnnlab.errors import InvalidArgumentError

# section -> key -> default (None: required or unset)
CONFIG_KEYS: dict[str, dict[str, Any]] = {
    "data": {"path": None, "split": "train", "trajectories": None},
    "model": {"n_reservoir": 500, "spectral_radius": 0.9, "leak": 1.0, "input_scale": 0.5, "density": 0.05,
              "ridge": 1e-6, "seed": 0},
    "fit": {"washout": 50},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="esn_command", metavar="ACTION", required=True)
    fit = sub.add_parser("fit", help="fit the readout on a dataset split and write the network to --out (.h5)",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("--config", metavar="FILE.yaml", help="data, model and fit settings (see above)")
    fit.add_argument("--data", metavar="FILE.h5", help="the dataset (overrides the config's data.path)")
    fit.add_argument("--out", required=True, help="the echo state network file to write (.h5)")
    fit.add_argument("--seed", type=int, default=None, help="seed of the random reservoir (overrides model.seed)")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def read_config(path: str | None) -> dict[str, dict[str, Any]]:
    """The config's three sections with defaults filled in; unknown sections or keys are refused."""
    loaded: dict[str, Any] = {}
    if path is not None:
        loaded = _read_yaml(path)
        if "base" in loaded:  # inheritance as in `hnnlab fit` (whose loader imports Lightning: only when needed)
            from hnnlab.training.cli import load_config_with_bases

            loaded = load_config_with_bases(path)
    out = {section: dict(keys) for section, keys in CONFIG_KEYS.items()}
    for section, values in loaded.items():
        if section not in CONFIG_KEYS:
            raise InvalidArgumentError(f"config {path!r}: unknown section {section!r}; allowed: "
                                       f"{', '.join(CONFIG_KEYS)}")
        if not isinstance(values, dict):
            raise InvalidArgumentError(f"config {path!r}: section {section!r} must be a mapping, got {values!r}")
        for key, value in values.items():
            if key not in CONFIG_KEYS[section]:
                raise InvalidArgumentError(f"config {path!r}: unknown key {section}.{key}; allowed: "
                                           f"{', '.join(f'{section}.{k}' for k in CONFIG_KEYS[section])}")
            out[section][key] = value
    return out


def _read_yaml(path: str) -> dict[str, Any]:
    from pathlib import Path

    import yaml

    if not Path(path).is_file():
        raise InvalidArgumentError(f"config file {path!r} does not exist")
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidArgumentError(f"config file {path!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"config file {path!r} must hold a mapping at the top level")
    return data


def main(args: argparse.Namespace) -> int:
    from hnnlab._hdf5 import check_target
    from hnnlab.esn_io import fit_esn, save_esn

    config = read_config(args.config)
    if args.data is not None:
        config["data"]["path"] = args.data
    if args.seed is not None:
        config["model"]["seed"] = args.seed
    data = config["data"]
    if data["path"] is None:
        raise InvalidArgumentError("no dataset: give --data FILE.h5 or data.path in --config")
    check_target(args.out, overwrite=args.overwrite, what="echo state network file", error=InvalidArgumentError,
                 overwrite_flag="--overwrite")  # before the data is read and the fit runs
    print(f"hnnlab esn fit: teacher-forcing a {config['model']['n_reservoir']}-unit reservoir on split "
          f"{data['split']!r} of {data['path']} ...", file=sys.stderr, flush=True)
    fitted = fit_esn(data["path"], split=data["split"], trajectories=data["trajectories"],
                     washout=config["fit"]["washout"], **config["model"])
    save_esn(fitted, args.out, overwrite=args.overwrite, command=shlex.join(["hnnlab", *sys.argv[1:]]))
    d, f = fitted.data, fitted.fit
    print(f"wrote {args.out}: echo state network ({fitted.model.n_reservoir} units, seed {fitted.model.seed}) "
          f"fitted on {d['n_traj']} trajectories x {d['n_times']} states of {fitted.system.get('name')} "
          f"(dt = {fitted.dt:g}, washout {fitted.washout}): one-step MSE {f['train_mse']:.3g} (standardised states, "
          f"{f['n_samples']} samples), {f['seconds']:.1f} s. Forecast with: hnnlab rollout --ckpt {args.out} "
          "--data DATA.h5 --steps N --out ROLLOUT.h5")
    return 0

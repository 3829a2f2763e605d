"""``hnnlab fit | validate | test`` through LightningCLI.

Config files may inherit: a top-level ``base:`` (a path or a list of paths, relative to the file)
names the files it extends; they are merged depth-first (later files and the command line win), so
experiment files hold only what they change. The fully resolved config is saved in the run's own
directory (``runs/hnnlab/<run id>/config.yaml``, beside its checkpoints) and sent to W&B with that path.
``--ckpt_path`` resumes training, and the W&B run stored in the checkpoint continues.

LightningCLI parses the config and builds the model and datamodule; the trainer of every subcommand is
built by :func:`hnnlab.training.runner.build_trainer` and ``fit`` runs through
:func:`hnnlab.training.runner.fit_trainer`: the same set-up as :func:`hnnlab.training.fit` from Python.
"""

from __future__ import annotations

import copy
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from hnnlab.errors import HnnlabError, InvalidArgumentError
from hnnlab.training.callbacks import HnnlabCheckpoint
from hnnlab.training.module import DynamicsModule
from hnnlab.training.runner import TRAINER_DEFAULTS, TrainingStopped, build_trainer, fit_trainer, quiet_warnings

# Checkpoints: the best (by ``checkpoint.monitor``) and the last, written every ``checkpoint.every_n_epochs``
# epochs and (``last.ckpt``) at the end of training. Datasets without a val split set
# ``checkpoint.monitor: null`` (then "best" is the latest).
CHECKPOINT_DEFAULTS: dict[str, Any] = {
    "checkpoint.monitor": "val/loss",
    "checkpoint.mode": "min",
    "checkpoint.save_top_k": 1,
    "checkpoint.save_last": True,
    "checkpoint.filename": "best-{epoch}-{step}",
    "checkpoint.every_n_epochs": 1,
    # Validation (when there is one) has run by the end of the training epoch; without this, Lightning
    # never saves when check_val_every_n_epoch > 1 and the dataset has no val split.
    "checkpoint.save_on_train_epoch_end": True,
}

def load_config_with_bases(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config and merge the files named by its ``base:`` key beneath it."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"config file {str(path)!r} does not exist")
    resolved = path.resolve()
    if resolved in _seen:
        raise InvalidArgumentError(f"config file {str(path)!r} inherits from itself through 'base:'")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidArgumentError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"config file {str(path)!r} must hold a mapping at the top level")
    bases = data.pop("base", None) or []
    bases = [bases] if isinstance(bases, str) else bases
    merged: dict[str, Any] = {}
    for base in bases:
        merged = deep_merge(merged, load_config_with_bases(path.parent / base, (*_seen, resolved)))
    return deep_merge(merged, data)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge mappings; ``override`` wins. A class_path change drops the old init_args."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            old = out[key]
            if "class_path" in value and old.get("class_path") not in (None, value["class_path"]):
                out[key] = copy.deepcopy(value)
            else:
                out[key] = deep_merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def expand_configs(argv: list[str]) -> tuple[list[str], list[str]]:
    """Replace each ``--config FILE`` whose file uses ``base:`` by its merged content (jsonargparse reads a
    YAML string in place of a path: no temporary file). Returns the arguments and the config files named."""
    out: list[str] = []
    sources: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        value = None
        if arg == "--config" and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--config="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        sources.append(str(Path(value).resolve()) if Path(value).is_file() else value)
        merged = load_config_with_bases(value)
        out += ["--config", yaml.safe_dump(merged, sort_keys=False)]
    return out, sources


def run_directory(trainer: pl.Trainer) -> Path:
    """The directory of this run: where Lightning puts its checkpoints (``save_dir/name/version`` of the
    logger, e.g. ``runs/hnnlab/<W&B run id>``), or ``default_root_dir`` without a logger."""
    logger = trainer.logger
    if logger is None:
        return Path(trainer.default_root_dir)
    save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(save_dir) / str(logger.name) / version


class HnnlabSaveConfig(SaveConfigCallback):
    """Save the resolved config in the run's own directory (:func:`run_directory`): ``config.yaml``, and
    ``config.1.yaml``, ``config.2.yaml``, ... for each resume of the same run. The logger receives the
    config, the path of that file, the config files given on the command line and the dataset metadata."""

    def __init__(self, *args: Any, sources: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sources = list(sources or [])
        self.path: Path | None = None

    def setup(self, trainer, pl_module, stage) -> None:  # noqa: ANN001 - Lightning's signature
        if self.already_saved:
            return
        directory = trainer.strategy.broadcast(str(run_directory(trainer)) if trainer.is_global_zero else None)
        if trainer.is_global_zero:
            directory = Path(directory)
            directory.mkdir(parents=True, exist_ok=True)
            path, n = directory / self.config_filename, 0
            while path.exists():
                n += 1
                path = directory / f"{Path(self.config_filename).stem}.{n}{Path(self.config_filename).suffix}"
            self.path = path.resolve()
            with warnings.catch_warnings():  # Lightning's own call; jsonargparse 4.49+ deprecates the name
                warnings.filterwarnings("ignore", message=".*skip_none parameter was deprecated.*")
                self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=self.multifile)
            self.save_config(trainer, pl_module, stage)
        self.already_saved = trainer.strategy.broadcast(True)

    def save_config(self, trainer, pl_module, stage) -> None:  # noqa: ANN001 - Lightning's signature
        if trainer.logger is None:
            return
        config = self.config.as_dict() if hasattr(self.config, "as_dict") else dict(self.config)
        config.pop("config", None)  # jsonargparse's record of --config: the merged text, not a file
        params: dict[str, Any] = {"config": config, "config_file": str(self.path) if self.path else None,
                                  "config_sources": self.sources, "resumed_from": config.get("ckpt_path")}
        datamodule = getattr(trainer, "datamodule", None)
        metadata = getattr(datamodule, "metadata", None)
        if isinstance(metadata, dict):
            params["dataset"] = metadata
        trainer.logger.log_hyperparams(params)


class HnnlabCLI(LightningCLI):
    """LightningCLI with hnnlab's defaults, a ``checkpoint`` group, W&B resume support, and the trainer of
    :func:`~hnnlab.training.runner.build_trainer`."""

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - Lightning's signature
        parser.add_lightning_class_args(HnnlabCheckpoint, "checkpoint")
        parser.set_defaults(CHECKPOINT_DEFAULTS)

    def parse_arguments(self, parser, args) -> None:  # noqa: ANN001 - Lightning's signature
        """Parse without jsonargparse's usage dump: a mistake is one ``error:`` line and a pointer to
        ``--help``; then check what would otherwise fail later, after the run's directory is made."""
        from jsonargparse import ArgumentError

        for each in _parsers(parser):
            each.exit_on_error = False
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as exc:
            raise ConfigError(str(exc).strip()) from None
        sub = self.config.get("subcommand")
        if sub is not None:
            check_config(self.config[sub], sub)

    def before_instantiate_classes(self) -> None:
        sub = self.subcommand
        if sub is None:
            return
        config = self.config[sub]
        ckpt_path = config.get("ckpt_path")
        logger = config.trainer.get("logger")
        if sub == "fit" and ckpt_path and ckpt_path not in ("last", "best") and logger is not None:
            run_id = (read_checkpoint(ckpt_path).get("hnnlab") or {}).get("wandb_run_id")
            loggers = logger if isinstance(logger, list) else [logger]
            for lg in loggers:
                if run_id and "Wandb" in str(getattr(lg, "class_path", "")):
                    lg.init_args.id = run_id
                    lg.init_args.resume = "allow"

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[pl.Callback]) -> pl.Trainer:
        """``config``: the parsed ``trainer`` group; ``callbacks``: the ``checkpoint`` group's callback."""
        options = dict(config)
        extra = options.pop("callbacks") or []
        extra = list(extra) if isinstance(extra, list) else [extra]
        if self.save_config_callback and not options.get("fast_dev_run", False):
            extra.append(self.save_config_callback(
                self._parser(self.subcommand), self.config.get(str(self.subcommand), self.config),
                **self.save_config_kwargs,
            ))
        (checkpoint,) = callbacks
        if options.pop("enable_checkpointing") is False or self.subcommand != "fit":
            checkpoint = False  # validate and test save nothing
        bar = options.pop("enable_progress_bar")
        return build_trainer(
            run_dir=options.pop("default_root_dir"),
            checkpoint=checkpoint,
            progress="auto" if bar is None else ("bar" if bar else "lines"),
            callbacks=extra,
            **options,
        )

    def fit(self, model: pl.LightningModule, datamodule: pl.LightningDataModule | None = None,
            **kwargs: Any) -> None:
        """``hnnlab fit``: :func:`~hnnlab.training.runner.fit_trainer` with the CLI's trainer (a run stopped by
        Ctrl-C or SIGTERM raises :class:`~hnnlab.training.runner.TrainingStopped`)."""
        result = fit_trainer(self.trainer, model, datamodule, **kwargs)
        if result.last_checkpoint is not None and self.trainer.is_global_zero:
            print(f"hnnlab fit: last checkpoint (step {self.trainer.global_step}): {result.last_checkpoint}",
                  flush=True)


    def validate(self, **kwargs: Any) -> Any:
        """``hnnlab validate``: Lightning's, without the warning that the fit's checkpoint callback is absent
        (validate and test save nothing, so they have none)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NO_CHECKPOINT_CALLBACK)
            return self.trainer.validate(**kwargs)

    def test(self, **kwargs: Any) -> Any:
        """``hnnlab test``: as :meth:`validate`."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NO_CHECKPOINT_CALLBACK)
            return self.trainer.test(**kwargs)


_NO_CHECKPOINT_CALLBACK = r".*callbacks used to create the checkpoint need to be provided.*"


class ConfigError(InvalidArgumentError):
    """A command line or config file that the parser refuses (its message is jsonargparse's)."""


def _parsers(parser: Any) -> list[Any]:
    """A parser and its subcommand parsers."""
    out, action = [parser], getattr(parser, "_subcommands_action", None)
    for sub in (getattr(action, "_name_parser_map", None) or {}).values():
        out += _parsers(sub)
    return out


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_LIGHTNING_NAMES = ("last", "best", "hpc", "registry")


def read_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint at ``--ckpt_path``, refused with a clear message when it is missing, not a file, an
    HDF5 file, unreadable or not written by hnnlab."""
    import torch

    file = Path(path)
    shown = f"--ckpt_path {path!r}"
    if not file.exists():
        raise InvalidArgumentError(f"{shown} does not exist (hnnlab fit writes runs/hnnlab/<run id>/checkpoints/"
                                   "last.ckpt)")
    if not file.is_file():
        raise InvalidArgumentError(f"{shown} is a directory; pass the .ckpt file in it")
    with file.open("rb") as handle:
        head = handle.read(8)
    if head == _HDF5_SIGNATURE:
        raise InvalidArgumentError(f"{shown} is an HDF5 file (a dataset or rollout), not a checkpoint; datasets go "
                                   "to --data.path, checkpoints are the .ckpt files that hnnlab fit writes")
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise InvalidArgumentError(f"{shown} cannot be read as a checkpoint: {type(exc).__name__}: {exc}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in (ckpt.get("hnnlab") or {}):
        raise InvalidArgumentError(f"{shown} was not written by hnnlab fit (no hnnlab model description)")
    return ckpt


def check_config(config: Any, sub: str) -> None:
    """Refuse, before anything is built or written, what would fail later: an accelerator this machine
    lacks, a negative learning rate, a checkpoint that is not hnnlab's or holds another model."""
    import torch

    accelerator = str(_get(config, "trainer", "accelerator") or "auto").lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise InvalidArgumentError(
            f"--trainer.accelerator {accelerator}: this machine has no CUDA GPU (torch.cuda.is_available() is "
            "False); use --trainer.accelerator cpu (or auto)"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise InvalidArgumentError("--trainer.accelerator mps: MPS is not available here; use cpu (or auto)")
    for group in ("optimizer", "scheduler"):
        init_args = _get(config, "model", group, "init_args")
        for key in ("lr", "max_lr", "base_lr", "weight_decay"):
            value = _get(init_args, key) if init_args is not None else None
            if isinstance(value, int | float) and not isinstance(value, bool) and not (
                math.isfinite(value) and value >= 0
            ):
                raise InvalidArgumentError(
                    f"--model.{group}.init_args.{key} must be a finite number >= 0, got {value!r}"
                )
    _check_data(config)
    ckpt_path = _get(config, "ckpt_path")
    if sub in ("validate", "test") and not ckpt_path:
        raise InvalidArgumentError(
            f"hnnlab {sub} needs --ckpt_path: the .ckpt file that hnnlab fit wrote (for example "
            "runs/hnnlab/<run id>/checkpoints/last.ckpt); without one it would evaluate untrained weights"
        )
    if ckpt_path and str(ckpt_path) not in _LIGHTNING_NAMES:
        _check_checkpoint_model(read_checkpoint(str(ckpt_path)), _get(config, "model", "model"), str(ckpt_path), sub)


def _check_data(config: Any) -> None:
    """Refuse a missing data file that no recipe can build, and a model whose ``dof`` is not the dataset's (read
    from the file's metadata, or from the recipe's system when the file is not made yet), before a run directory or
    a W&B run exists."""
    path, recipe = _get(config, "data", "path"), _get(config, "data", "recipe")
    if path and not recipe and not Path(str(path)).exists():
        raise InvalidArgumentError(
            f"--data.path {str(path)!r} does not exist and no --data.recipe was given to build it; make it with "
            f"hnnlab simulate --recipe NAME --out {path} (hnnlab simulate --list-recipes lists them) or pass "
            "--data.recipe NAME"
        )
    _check_data_inputs(config, path)
    dof = _get(config, "model", "model", "init_args", "dof")
    if isinstance(dof, bool) or not isinstance(dof, int):
        return
    data_dof, source = None, None
    if path and Path(str(path)).is_file():
        from hnnlab.data.io import read_metadata

        data_dof, source = read_metadata(str(path)).get("dof"), f"--data.path {str(path)!r}"
    elif recipe:
        import torch

        from hnnlab.data.recipes import get_recipe

        try:  # the recipe's own system construction (random-parameter recipes too); the seed does not change the dof
            data_dof = get_recipe(str(recipe)).make_system(torch.Generator().manual_seed(0)).dof
        except Exception:  # noqa: BLE001 - the datamodule reports a bad recipe with its own message
            return
        source = f"--data.recipe {recipe!r}"
    if isinstance(data_dof, int) and not isinstance(data_dof, bool) and data_dof != dof:
        raise InvalidArgumentError(
            f"--model.model.init_args.dof is {dof}, but {source} has dof {data_dof} (states of width "
            f"{2 * data_dof}); set --model.model.init_args.dof {data_dof} or use data of {dof} degrees of freedom"
        )


def _check_data_inputs(config: Any, path: Any) -> None:
    """Refuse a model that takes inputs given a data file without them, or the reverse (the model's
    ``n_inputs`` against the file's root attribute ``inputs``), before a run directory exists."""
    if not path or not Path(str(path)).is_file():
        return
    from hnnlab.data.io import read_metadata
    from hnnlab.training.module import check_model_inputs

    n_inputs = _get(config, "model", "model", "init_args", "n_inputs") or 0
    class_path = str(_get(config, "model", "model", "class_path") or "the model")
    if isinstance(n_inputs, int) and not isinstance(n_inputs, bool):
        check_model_inputs(class_path.rsplit(".", 1)[-1], n_inputs, read_metadata(str(path)),
                           f"--data.path {str(path)!r}", flag="--model.model.init_args.n_inputs")


def _check_checkpoint_model(ckpt: dict[str, Any], model: Any, path: str, sub: str) -> None:
    """The model of the config and the model in the checkpoint: the same class and constructor arguments."""
    import importlib

    stored = ckpt["hnnlab"]["model"]
    stored_path = str(stored.get("class_path") or stored.get("class"))
    given_path = str(_get(model, "class_path") or "")
    if not given_path:
        return

    def resolve(class_path: str) -> Any:
        module, _, attr = class_path.replace(":", ".").rpartition(".") if ":" not in class_path else (
            class_path.partition(":")[0], ":", class_path.partition(":")[2])
        try:
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError, ValueError):
            return class_path
        return obj

    given_cls, stored_cls = resolve(given_path), resolve(stored_path)
    name = getattr(stored_cls, "__name__", stored_path)
    if given_cls is not stored_cls:
        raise InvalidArgumentError(
            f"--ckpt_path {path!r} holds a {name} ({stored_path}), but the config's model is "
            f"{getattr(given_cls, '__name__', given_path)} ({given_path}); use the config the checkpoint was "
            f"trained with, or a checkpoint of this model"
        )
    given_args = _get(model, "init_args")
    given_args = dict(given_args.items()) if hasattr(given_args, "items") else {}
    differ = []
    for key, value in (stored.get("init_args") or {}).items():
        if key not in given_args or not _plain(value) or not _plain(given_args[key]):
            continue
        if _normal(value) != _normal(given_args[key]):
            differ.append(f"{key}={_normal(value)!r} in the checkpoint, {_normal(given_args[key])!r} in the config")
    if differ:
        raise InvalidArgumentError(
            f"--ckpt_path {path!r}: the checkpoint's {name} does not match the config's ({'; '.join(differ)}); "
            f"hnnlab {sub} needs the same model"
        )


def _plain(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str)


def _normal(value: Any) -> Any:
    return [_normal(v) for v in value] if isinstance(value, list | tuple) else value


def _get(config: Any, *keys: str) -> Any:
    for key in keys:
        if config is None:
            return None
        config = config.get(key) if hasattr(config, "get") else getattr(config, key, None)
    return config


def trainer_defaults() -> dict[str, Any]:
    """The CLI's trainer defaults: what every hnnlab trainer needs, and the W&B logger."""
    return {**TRAINER_DEFAULTS, "logger": {"class_path": "hnnlab.training.logging.HnnlabWandbLogger"}}


def run_lightning_cli(argv: list[str]) -> int:
    """Run ``fit``, ``validate`` or ``test`` with ``argv`` starting with the subcommand.

    Returns the exit status: 0 on success, 2 for a user mistake (a bad config key or type, a missing
    file, a non-finite loss), each reported as one ``error:`` line on stderr.
    """
    from hnnlab.data.datamodule import HDF5DataModule

    with quiet_warnings():
        try:
            args, sources = expand_configs(argv)
            HnnlabCLI(
                DynamicsModule,
                HDF5DataModule,
                trainer_defaults=trainer_defaults(),
                save_config_callback=HnnlabSaveConfig,
                save_config_kwargs={"overwrite": True, "sources": sources},
                seed_everything_default=0,
                # No prefix matching: a mistyped key (--model.los) must be an error, not --model.loss.
                parser_kwargs={"allow_abbrev": False, "prog": "hnnlab"},
                args=args,
            )
        except ConfigError as exc:
            print(f"hnnlab {argv[0]}: error: {exc}{_model_hint(str(exc))}\n(hnnlab {argv[0]} --help lists the "
                  "options)", file=sys.stderr)
            return 2
        except MisconfigurationException as exc:  # Lightning refusing a trainer setting (--trainer.max_epochs -5)
            print(f"hnnlab {argv[0]}: error: {str(exc).strip()}", file=sys.stderr)
            return 2
        except HnnlabError as exc:
            print(f"hnnlab {argv[0]}: error: {exc}", file=sys.stderr)
            return 2
        except TrainingStopped as exc:  # Ctrl-C or a kill (SIGTERM): not a success
            print(f"hnnlab {argv[0]}: {exc}", file=sys.stderr)
            return exc.exit_code
        except SystemExit as exc:  # jsonargparse reports config errors (and --help) by exiting
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        finally:
            _finish_wandb()
    return 0


def _model_hint(message: str) -> str:
    """For a model ``class_path`` that cannot be imported, the built-in models to choose from; for an echo state
    network config, the command that fits it."""
    if "'model.n_reservoir'" in message:  # an echo state network config (configs/*_esn.yaml): no Lightning loop
        return "\n(an echo state network config: its readout is fitted in closed form by hnnlab esn fit --config FILE)"
    if "class_path" not in message or "model" not in message:
        return ""
    from hnnlab.models import MODELS

    names = ", ".join(f"hnnlab.models.{MODELS.get(name).__name__}" for name in MODELS.names())
    return f"\n(the models: {names}; your own as package.module.ClassName, importable from PYTHONPATH)"


def _finish_wandb() -> None:
    """Close this process's W&B run (flushes an offline run) and reset W&B's process-wide settings, so
    that the next run in the same process reads ``WANDB_MODE`` afresh."""
    from hnnlab.training.logging import release_dirs

    wandb = sys.modules.get("wandb")
    if wandb is not None:
        if getattr(wandb, "run", None) is not None:
            wandb.finish()
        teardown = getattr(wandb, "teardown", None)
        if callable(teardown):
            teardown()
    release_dirs()

"""The training command line (hnnlab.training.cli): ``hnnlab fit/validate/test`` with the shipped configs, config
mistakes, NaN stops, checkpoints and resume, W&B bookkeeping, DDP processes.

W&B is disabled in every test except where an offline run directory is inspected (``WANDB_MODE=offline``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor

from hnnlab.cli import main
from hnnlab.data.datamodule import HDF5DataModule
from hnnlab.models import HNN
from hnnlab.training import fit
from hnnlab.training.checkpoint import load_checkpoint
from hnnlab.training.cli import load_config_with_bases
from hnnlab.training.module import DynamicsModule
from tests._training_helpers import (
    SMALL,
    RecordingLogger,
    assert_same_field,
    assert_same_weights,
    weights_of,
)

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


# -- a model with an injected network, trained by hnnlab fit ---------------------------------------


NETS = {
    "mlp": "{class_path: hnnlab.models.MLP, init_args: {in_dim: 2, hidden: [16], out_dim: 1}}",
    "user-net": "{class_path: tests._training_helpers.UserNet, init_args: {in_dim: 2, out_dim: 1, width: 8}}",
}


@pytest.mark.parametrize("net", list(NETS))
def test_a_model_with_an_injected_network_trained_by_hnnlab_fit_reloads_from_last_ckpt(
    net: str, spring: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hnnlab fit`` with ``model.model.init_args.net`` given by ``class_path``/``init_args`` trains for
    three steps; ``last.ckpt`` rebuilds the trained model, whose field it gives bit for bit."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    trained: list[DynamicsModule] = []
    initial: list[dict[str, Tensor]] = []
    monkeypatch.setattr(DynamicsModule, "on_train_start", lambda self: initial.append(
        {k: v.clone() for k, v in self.model.state_dict().items()}), raising=False)
    monkeypatch.setattr(DynamicsModule, "on_train_end", lambda self: trained.append(self), raising=False)
    config = tmp_path / "exp.yaml"
    config.write_text(f"base: {ROOT / 'configs/spring_hnn.yaml'}\nmodel:\n  model:\n    init_args:\n"
                      f"      net: {NETS[net]}\n")
    status = main([
        "fit", "--config", str(config), "--trainer.max_steps", "3", "--trainer.accelerator", "cpu",
        "--data.path", str(spring), "--trainer.logger", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"), "--checkpoint.every_n_epochs", "1",
        "--checkpoint.dirpath", str(tmp_path / "run" / "checkpoints"),
    ])
    assert status == 0
    (module,) = trained
    model = module.model
    assert type(model.net).__name__ == ("MLP" if net == "mlp" else "UserNet")
    # the weights moved: the comparison below is of a trained model, not of its initialisation
    assert any(not torch.equal(v, initial[0][k]) for k, v in model.state_dict().items())
    loaded = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert loaded.global_step == 3
    assert_same_field(loaded.model, model, torch.float32)


# -- hnnlab fit and hnnlab test against fit from Python --------------------------------------------


def test_fit_command_writes_the_final_last_checkpoint_and_equals_fit_from_python(spring, tmp_path, monkeypatch,
                                                                                 capsys) -> None:
    """``hnnlab fit`` with the shipped spring config, checkpointing every 10 epochs, stopped at step 25
    (full batch: a step per epoch): last.ckpt is step 25, and its weights are bit for bit those of
    ``fit`` from Python with the config's model, optimizer and trainer settings."""
    monkeypatch.chdir(tmp_path)
    status = main([
        "fit", "--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(spring),
        "--trainer.accelerator", "cpu", "--trainer.max_steps", "25", "--checkpoint.every_n_epochs", "10",
        "--trainer.default_root_dir", str(tmp_path / "cli"),
    ])
    assert status == 0
    (last,) = Path("runs").rglob("last.ckpt")  # the W&B logger's run directory, relative to the working one
    assert f"hnnlab fit: last checkpoint (step 25): {last}" in capsys.readouterr().out
    cli = torch.load(last, weights_only=False)
    assert cli["global_step"] == 25
    (periodic,) = last.parent.glob("epoch=*.ckpt")
    assert torch.load(periodic, weights_only=False)["global_step"] == 20
    # The same trainer set-up tests (no inference mode: the HNN differentiates H) and saves nothing.
    assert main(["test", "--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(spring),
                 "--trainer.accelerator", "cpu", "--ckpt_path", str(last)]) == 0
    assert "test/loss" in capsys.readouterr().out
    assert sorted(Path("runs").rglob("*.ckpt")) == sorted([last, periodic])

    pl.seed_everything(0, workers=True)  # the config's seed_everything, as LightningCLI applies it
    model = HNN(1, hidden=(200, 200), activation="tanh", orthogonal_init=True)
    module = DynamicsModule(model, loss="derivative",
                            optimizer=lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4))
    result = fit(module, HDF5DataModule(str(spring), mode="pairs", batch_size=None), max_steps=25,
                 max_epochs=2000, accelerator="cpu", run_dir=tmp_path / "python", check_val_every_n_epoch=100,
                 log_every_n_steps=50)
    assert result.last_checkpoint == tmp_path / "python" / "checkpoints" / "last.ckpt"
    assert_same_weights(cli["state_dict"], weights_of(module))
    assert_same_weights(torch.load(result.last_checkpoint, weights_only=False)["state_dict"], weights_of(module))


# -- the shipped configs ---------------------------------------------------------------------------


# The Lightning experiments; an echo state network's config (model.n_reservoir) goes to `hnnlab esn fit`
# (tests/test_esn_io.py).
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml")
                 if "n_reservoir" not in (load_config_with_bases(p).get("model") or {}))


def test_every_canonical_experiment_has_a_config() -> None:
    names = {p.stem for p in CONFIGS}
    for required in ("spring_hnn", "spring_baseline", "pendulum_hnn", "two_body_hnn", "three_body_hnn",
                     "double_pendulum_lnn", "chain_pendulum_lnn"):
        assert required in names
    for path in CONFIGS:
        merged = load_config_with_bases(path)
        assert merged["seed_everything"] == 0, path.name  # a fixed seed, never LightningCLI's random one
        assert merged["data"]["recipe"] in SMALL, path.name


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_fast_dev_run(config: Path, small_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = load_config_with_bases(config)["data"]["recipe"]
    status = main([
        "fit", "--config", str(config), "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu",
        "--data.path", str(small_data[recipe]),  # built from SMALL[recipe]
    ])
    assert status == 0


# -- config mistakes and a non-finite loss: one error line, exit code 2 ----------------------------


def test_nonfinite_loss_exits_with_one_error_line(small_data, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    status = main([
        "fit", "--config", str(ROOT / "configs/spring_hnn.yaml"), "--trainer.max_epochs", "3",
        "--data.path", str(small_data["greydanus-spring"]), "--trainer.accelerator", "cpu",
        "--model.model", "tests._training_helpers.PoisonedEnergyHNN", "--model.energy_weight", "1.0",
        "--trainer.callbacks+=tests._training_helpers.PoisonAtStep", "--trainer.callbacks.step", "1",
    ])
    err = capsys.readouterr().err
    assert status == 2
    assert "hnnlab fit: error: train loss became non-finite at global step 1" in err
    assert "loss term energy = nan" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model.los", "rollout"], "unrecognized arguments: --model.los rollout"),
        (["--trainer.max_epoch", "3"], "unrecognized arguments: --trainer.max_epoch 3"),
        (["--model.energy_weight", "lots"], 'Parser key "model.energy_weight"'),
        (["--trainer.max_epochs", "three"], 'Parser key "trainer.max_epochs"'),
    ],
    ids=["misspelled-model-key", "misspelled-trainer-key", "wrong-type-float", "wrong-type-int"],
)
def test_config_mistakes_are_rejected(args, expected, small_data, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    status = main(["fit", "--config", str(ROOT / "configs/spring_hnn.yaml"),
                   "--data.path", str(small_data["greydanus-spring"]), *args])
    err = capsys.readouterr().err
    assert status == 2
    assert expected in err


def test_mistyped_key_in_a_config_file_is_rejected(small_data, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "exp.yaml"
    config.write_text(f"base: {ROOT / 'configs/spring_hnn.yaml'}\nmodel:\n  energy_wieght: 0.1\n")
    status = main(["fit", "--config", str(config), "--data.path", str(small_data["greydanus-spring"])])
    err = capsys.readouterr().err
    assert status == 2
    assert "energy_wieght" in err


# -- logging, checkpoints and W&B ------------------------------------------------------------------


def test_fit_logs_config_dataset_and_rollout_metrics_and_checkpoints(small_data, tmp_path, monkeypatch) -> None:
    """A short ``hnnlab fit``: the resolved config and dataset metadata go to the logger, the rollout
    callback logs its metrics, and the last checkpoint rebuilds the trained model."""
    monkeypatch.chdir(tmp_path)
    import tests._training_helpers as helpers

    loggers: list[RecordingLogger] = []
    original = helpers.RecordingLogger.__init__

    def remember(self) -> None:
        original(self)
        loggers.append(self)

    monkeypatch.setattr(helpers.RecordingLogger, "__init__", remember)
    status = main([
        "fit", "--config", str(ROOT / "configs/spring_hnn.yaml"), "--trainer.max_epochs", "4",
        "--trainer.accelerator", "cpu", "--data.path", str(small_data["greydanus-spring"]),
        "--trainer.logger", "tests._training_helpers.RecordingLogger",
        "--trainer.default_root_dir", str(tmp_path / "run"), "--checkpoint.every_n_epochs", "2",
    ])
    assert status == 0
    (logger,) = loggers
    (params,) = [p for p in logger.hyperparams if "config" in p]
    assert params["config"]["model"]["model"]["class_path"] == "hnnlab.models.HNN"
    assert params["config"]["trainer"]["max_epochs"] == 4
    assert params["dataset"]["recipe"]["name"] == "greydanus-spring"
    logged = {k for _, metrics in logger.metrics for k in metrics}
    assert {"rollout/energy_error", "rollout/mse", "rollout/vpt", "rollout/finite"} <= logged
    (last,) = list((tmp_path / "run").rglob("last.ckpt"))
    loaded = load_checkpoint(last)
    assert loaded.global_step == 4 and isinstance(loaded.model, HNN)


def test_resumed_fit_continues_the_same_wandb_run(small_data, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    common = ["--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(small_data["greydanus-spring"]),
              "--trainer.accelerator", "cpu", "--checkpoint.every_n_epochs", "1"]
    assert main(["fit", *common, "--trainer.max_epochs", "2"]) == 0
    (first,) = list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    run_id = first.name.rsplit("-", 1)[1]
    (last,) = list((tmp_path / "runs" / "hnnlab" / run_id / "checkpoints").glob("last.ckpt"))
    assert torch.load(last, weights_only=False)["hnnlab"]["wandb_run_id"] == run_id
    assert main(["fit", *common, "--trainer.max_epochs", "3", "--ckpt_path", str(last)]) == 0
    runs = sorted(p.name for p in (tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(name.endswith(f"-{run_id}") for name in runs)


# -- processes: kill and resume, DDP ---------------------------------------------------------------


def _fit_process(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "hnnlab.cli", "fit", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_uninterrupted_weights(small_data, tmp_path) -> None:
    """Kill a run with SIGKILL at the start of epoch 3, resume from last.ckpt: after 5 epochs the weights
    are bit-identical to an uninterrupted run (CPU, deterministic, mini-batches in a (seed, epoch) order)."""
    common = ["--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(small_data["greydanus-spring"]),
              "--data.batch_size", "20", "--trainer.max_epochs", "5", "--trainer.accelerator", "cpu",
              "--trainer.deterministic", "true", "--checkpoint.every_n_epochs", "1"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = _fit_process([*common, "--trainer.default_root_dir", "a"], tmp_path / "a")
    killed = _fit_process([*common, "--trainer.default_root_dir", "b",
                           "--trainer.callbacks+=tests._training_helpers.KillAtEpoch",
                           "--trainer.callbacks.epoch", "3"], tmp_path / "b")
    out_full, _ = full.communicate(timeout=300)
    out_killed, _ = killed.communicate(timeout=300)
    assert full.returncode == 0, out_full
    assert killed.returncode == -9, out_killed
    (last,) = list((tmp_path / "b").rglob("last.ckpt"))
    assert torch.load(last, weights_only=False)["epoch"] == 2  # epochs 0, 1, 2 done
    resumed = _fit_process([*common, "--trainer.default_root_dir", "b", "--ckpt_path", str(last)], tmp_path / "b")
    out_resumed, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out_resumed

    def final_weights(root: Path) -> dict[str, torch.Tensor]:
        paths = [p for p in root.rglob("last*.ckpt") if torch.load(p, weights_only=False)["epoch"] == 4]
        assert len(paths) == 1
        return torch.load(paths[0], weights_only=False)["state_dict"]

    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("signal_name", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_fit_stopped_by_ctrl_c_or_kill_exits_with_the_signal_and_names_its_checkpoint(small_data, tmp_path,
                                                                                       signal_name, code) -> None:
    """Ctrl-C (SIGINT) or kill (SIGTERM) during hnnlab fit: not a success (Lightning itself ends a SIGTERM run with
    status 0), exit 128 + signal, one line naming the step and the last checkpoint to resume from, which exists."""
    proc = _fit_process([
        "--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(small_data["greydanus-spring"]),
        "--data.batch_size", "20", "--trainer.max_epochs", "6", "--trainer.accelerator", "cpu",
        "--checkpoint.every_n_epochs", "1", "--trainer.default_root_dir", "run",
        "--trainer.callbacks+=tests._training_helpers.SignalAtEpoch", "--trainer.callbacks.epoch", "2",
        "--trainer.callbacks.signal_name", signal_name,
    ], tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == code, out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("hnnlab fit: stopped by")]
    match = re.fullmatch(rf"hnnlab fit: stopped by {signal_name} at step (\d+); last checkpoint: (\S+) "
                         r"\(resume with --ckpt_path (\S+)\)", line)
    assert match is not None, line
    assert match.group(2) == match.group(3) and (tmp_path / match.group(2)).is_file()
    assert torch.load(tmp_path / match.group(2), weights_only=False)["epoch"] in (1, 2)


@pytest.mark.slow
def test_fit_command_line_with_two_cpu_ddp_processes(small_data, tmp_path) -> None:
    """``hnnlab fit --config configs/spring_hnn.yaml --trainer.accelerator cpu --trainer.devices 2
    --trainer.strategy ddp`` trains and writes one last checkpoint at the final step."""
    proc = _fit_process([
        "--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(small_data["greydanus-spring"]),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_epochs", "3", "--trainer.default_root_dir", "ddp",
    ], tmp_path)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out
    (last,) = list(tmp_path.rglob("last.ckpt"))
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 3
    assert all(bool(torch.isfinite(v).all()) for v in ckpt["state_dict"].values())


# -- bad inputs: one or two lines naming the mistake, exit status 2, nothing written -----------------


@pytest.fixture(scope="module")
def foreign_checkpoints(tmp_path_factory: pytest.TempPathFactory, spring: Path) -> dict[str, Path]:
    """A baseline (NeuralODE) checkpoint and an HNN checkpoint of another dof (2), both written by hnnlab."""
    from hnnlab.models import NeuralODE
    from hnnlab.training.checkpoint import model_entry

    root = tmp_path_factory.mktemp("foreign")
    pl.seed_everything(0, verbose=False)
    baseline = fit(DynamicsModule(NeuralODE(1, hidden=(8,))), HDF5DataModule(str(spring)), max_steps=1,
                   checkpoint=root / "baseline", progress=None, accelerator="cpu", limit_val_batches=0)
    ckpt = torch.load(baseline.last_checkpoint, weights_only=False)
    other = HNN(2, hidden=(200, 200), activation="tanh", orthogonal_init=True)
    ckpt["state_dict"] = {f"model.{k}": v for k, v in other.state_dict().items()}
    ckpt["hnnlab"].update(model_entry(other))
    torch.save(ckpt, root / "dof2.ckpt")
    return {"baseline": baseline.last_checkpoint, "dof2": root / "dof2.ckpt"}


@pytest.mark.parametrize(
    ("command", "args", "first_line"),
    [
        ("test", ["--ckpt_path", "{baseline}"],
         "hnnlab test: error: --ckpt_path '{baseline}' holds a NeuralODE (hnnlab.models.baselines:NeuralODE), but "
         "the config's model is HNN (hnnlab.models.HNN); use the config the checkpoint was trained with, or a "
         "checkpoint of this model"),
        ("fit", ["--ckpt_path", "{dof2}"],
         "hnnlab fit: error: --ckpt_path '{dof2}': the checkpoint's HNN does not match the config's (dof=2 in the "
         "checkpoint, 1 in the config); hnnlab fit needs the same model"),
        ("fit", ["--ckpt_path", "missing.ckpt"],
         "hnnlab fit: error: --ckpt_path 'missing.ckpt' does not exist (hnnlab fit writes "
         "runs/hnnlab/<run id>/checkpoints/last.ckpt)"),
        ("validate", ["--ckpt_path", "{data}"],
         "hnnlab validate: error: --ckpt_path '{data}' is an HDF5 file (a dataset or rollout), not a checkpoint; "
         "datasets go to --data.path, checkpoints are the .ckpt files that hnnlab fit writes"),
        ("fit", ["--trainer.accelerator", "gpu"],
         "hnnlab fit: error: --trainer.accelerator gpu: this machine has no CUDA GPU (torch.cuda.is_available() "
         "is False); use --trainer.accelerator cpu (or auto)"),
        ("fit", ["--model.optimizer.init_args.lr", "-0.1"],
         "hnnlab fit: error: --model.optimizer.init_args.lr must be a finite number >= 0, got -0.1"),
        ("fit", ["--trainer.max_step", "2"], "hnnlab fit: error: unrecognized arguments: --trainer.max_step 2"),
        ("test", [],
         "hnnlab test: error: hnnlab test needs --ckpt_path: the .ckpt file that hnnlab fit wrote (for example "
         "runs/hnnlab/<run id>/checkpoints/last.ckpt); without one it would evaluate untrained weights"),
        ("validate", [],
         "hnnlab validate: error: hnnlab validate needs --ckpt_path: the .ckpt file that hnnlab fit wrote (for "
         "example runs/hnnlab/<run id>/checkpoints/last.ckpt); without one it would evaluate untrained weights"),
        ("fit", ["--model.model.init_args.dof", "2"],
         "hnnlab fit: error: --model.model.init_args.dof is 2, but --data.path '{data}' has dof 1 (states of width "
         "2); set --model.model.init_args.dof 1 or use data of 2 degrees of freedom"),
        ("fit", ["--data.path", "missing.h5", "--data.recipe", "null"],
         "hnnlab fit: error: --data.path 'missing.h5' does not exist and no --data.recipe was given to build it; "
         "make it with hnnlab simulate --recipe NAME --out missing.h5 (hnnlab simulate --list-recipes lists them) "
         "or pass --data.recipe NAME"),
        ("fit", ["--model.model", "hnnlab.models.PortHamiltonianNN", "--model.model.init_args.n_inputs", "1"],
         "hnnlab fit: error: --data.path '{data}': the dataset has no inputs (no root attribute 'inputs', no "
         "per-split 'inputs' dataset), but PortHamiltonianNN takes --model.model.init_args.n_inputs = 1 inputs; train "
         "it on a file simulated with inputs (hnnlab simulate --inputs FAMILY) or set "
         "--model.model.init_args.n_inputs = 0"),
    ],
    ids=["baseline-ckpt", "other-dof", "missing-ckpt", "hdf5-ckpt", "no-gpu", "negative-lr", "typo", "test-no-ckpt",
         "validate-no-ckpt", "dof-mismatch", "missing-data", "model-needs-inputs"],
)
def test_bad_inputs_exit_2_with_one_line_and_write_nothing(command, args, first_line, spring, foreign_checkpoints,
                                                           tmp_path, monkeypatch, capsys) -> None:
    if command == "fit" and args[0] == "--trainer.accelerator" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    names = {"baseline": foreign_checkpoints["baseline"], "dof2": foreign_checkpoints["dof2"], "data": spring}
    args = [a.format(**names) for a in args]
    accelerator = [] if "--trainer.accelerator" in args else ["--trainer.accelerator", "cpu"]
    status = main([command, "--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(spring),
                   "--trainer.max_steps", "2", *accelerator, *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[0] == first_line.format(**names)
    assert len(err) <= 2
    if len(err) == 2:
        assert err[1] == f"(hnnlab {command} --help lists the options)"
    assert list(tmp_path.iterdir()) == []  # no run directory, no config, no checkpoint


def test_an_optimizer_that_refuses_its_arguments_is_a_user_error(spring, tmp_path) -> None:
    """From Python too: torch's ValueError becomes hnnlab's error naming the optimizer's complaint."""
    from hnnlab.errors import InvalidArgumentError

    module = DynamicsModule(HNN(1, hidden=(8,)), optimizer=lambda p: torch.optim.Adam(p, lr=-1.0))
    with pytest.raises(InvalidArgumentError, match=r"^the optimizer refuses its arguments: Invalid learning rate: -1"):
        fit(module, HDF5DataModule(str(spring)), max_steps=1, checkpoint=False, progress=None, accelerator="cpu")


def test_resume_and_test_show_no_checkpoint_warnings(spring, tmp_path, monkeypatch) -> None:
    """Resuming into the run's own checkpoint directory and testing its checkpoint are what hnnlab does by
    design: no "exists and is not empty", "dirpath has changed" or "callbacks ... need to be provided"."""
    import warnings

    monkeypatch.chdir(tmp_path)
    common = ["--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(spring), "--trainer.accelerator",
              "cpu", "--checkpoint.every_n_epochs", "1", "--model.model.init_args.hidden", "[16]"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["fit", *common, "--trainer.max_steps", "2"]) == 0
        (last,) = Path("runs").rglob("last.ckpt")
        assert main(["fit", *common, "--trainer.max_steps", "3", "--ckpt_path", str(last)]) == 0
        assert main(["test", *common, "--ckpt_path", str(last)]) == 0
    noise = ("exists and is not empty", "dirpath has changed", "need to be provided")
    assert [str(w.message) for w in caught if any(n in str(w.message) for n in noise)] == []
    assert torch.load(last, weights_only=False)["global_step"] == 3


def test_a_trainer_setting_lightning_refuses_and_an_unknown_model_class_are_one_error(tmp_path, monkeypatch, capsys):
    from hnnlab.cli import main

    monkeypatch.chdir(tmp_path)
    config = str(Path(__file__).resolve().parents[1] / "configs" / "spring_hnn.yaml")
    assert main(["fit", "--config", config, "--trainer.max_epochs", "-5"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        "hnnlab fit: error: `max_epochs` must be a non-negative integer or -1. You passed in -5."
    )
    assert main(["fit", "--config", config, "--model.model.class_path", "nosuch.Model"]) == 2
    err = capsys.readouterr().err
    from hnnlab.models import MODELS

    listed = err.split("(the models: ")[1].split("; your own as package.module.ClassName")[0].split(", ")
    assert sorted(listed) == sorted(f"hnnlab.models.{MODELS.get(name).__name__}" for name in MODELS.names())
    assert "hnnlab.models.HNN" in listed and "PYTHONPATH" in err


def test_port_hamiltonian_network_trains_on_simulated_inputs_and_data_with_inputs_refuse_other_models(
        tmp_path, monkeypatch, capsys) -> None:
    """hnnlab simulate stores the chain's inputs; hnnlab fit trains a phnn on them (derivative loss with each pair's
    u) and its last.ckpt reloads the same field; a model without inputs is refused before a run directory exists."""
    from hnnlab.data import load_dataset
    from hnnlab.training.checkpoint import load_checkpoint

    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--system", "spring_damper_chain", "--inputs", "sinusoids", "--input-param", "n_terms=2",
                 "--n-traj", "5", "--dt", "0.1", "--n-steps", "20", "--out", "chain.h5", "--no-progress"]) == 0
    data = load_dataset("chain.h5")
    assert data.metadata["inputs"]["family"]["n_terms"] == 2 and data.splits["train"].inputs.shape == (4, 21, 1)
    common = ["--data.path", "chain.h5", "--trainer.accelerator", "cpu"]
    assert main(["fit", *common, "--model.model", "hnnlab.models.PortHamiltonianNN", "--model.model.init_args.dof",
                 "3", "--model.model.init_args.n_inputs", "1", "--model.model.init_args.hidden", "[8]",
                 "--trainer.max_steps", "3"]) == 0
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    model = load_checkpoint(last).model
    x, u = data.splits["test"].state[0, :5].float(), data.splits["test"].inputs[0, :5].float()
    before = model.field_with_inputs(0.0, x, u)
    assert torch.equal(load_checkpoint(last).model.field_with_inputs(0.0, x, u), before)
    capsys.readouterr()
    runs = sorted(p.name for p in (tmp_path / "runs" / "hnnlab").iterdir())
    assert main(["fit", *common, "--model.model", "hnnlab.models.HNN", "--model.model.init_args.dof", "3",
                 "--trainer.max_steps", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[0] == (
        "hnnlab fit: error: --data.path 'chain.h5': the dataset has 1 input(s) (u1; root attribute 'inputs', "
        "per-split dataset 'inputs'), but HNN takes --model.model.init_args.n_inputs = 0; use a model that takes 1 "
        "input(s) (phnn), or use data without inputs"
    )
    assert sorted(p.name for p in (tmp_path / "runs" / "hnnlab").iterdir()) == runs  # nothing new written

"""Training: the LightningModule, ``hnnlab fit`` with the shipped configs, DDP, resume, NaN stops,
config errors, W&B bookkeeping and the rollout-metrics callback.

W&B never touches the network here: every test runs with ``WANDB_MODE=disabled`` except where an
offline run directory is inspected (``WANDB_MODE=offline``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from hnnlab.cli import main
from hnnlab.data import get_recipe, write_dataset
from hnnlab.data.datamodule import HDF5DataModule
from hnnlab.data.dataset import TrajectoryDataset
from hnnlab.data.recipes import TestSet
from hnnlab.models import HNN
from hnnlab.systems import get_system
from hnnlab.training.callbacks import RolloutMetricsCallback
from hnnlab.training.checkpoint import load_checkpoint
from hnnlab.training.cli import load_config_with_bases
from hnnlab.training.module import DynamicsModule, NonFiniteLossError
from tests._training_helpers import GradCapture, PoisonAtStep, PoisonedEnergyHNN, RecordingLogger

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml"))
# Small versions of each recipe: enough for one training and one validation step.
SMALL = {
    "greydanus-spring": {"n_traj": 4},
    "greydanus-pendulum": {"n_traj": 4},
    "greydanus-2body": {"n_traj": 5},
    "greydanus-3body": {"n_traj": 5},
    "lnn-double-pendulum": {"n_traj": 40, "test_set": TestSet(n_traj=4, t_end=5.0, n_times=51,
                                                              system_params={"velocity_range": (0.0, 0.1)})},
    "chnn-chain-pendulum": {"n_traj": 10, "n_times": 11, "t_end": 0.3},  # the recipe's dt = 0.03
}


@pytest.fixture(autouse=True)
def _wandb_disabled_one_thread(monkeypatch: pytest.MonkeyPatch):
    """W&B off; one intra-op thread (these small models run 5-10x slower on a shared, busy CPU otherwise)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("CI", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small dataset file per recipe, built on first use."""
    root = tmp_path_factory.mktemp("data")

    class Files(dict):
        def __missing__(self, recipe: str) -> Path:
            path = root / f"{recipe}.h5"
            write_dataset(path, get_recipe(recipe, **SMALL[recipe]).build(0))
            self[recipe] = path
            return path

    return Files()


@pytest.fixture(scope="module")
def spring_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full Greydanus mass-spring dataset (750 train / 750 test pairs)."""
    path = tmp_path_factory.mktemp("spring") / "spring.h5"
    write_dataset(path, get_recipe("greydanus-spring").build(0))
    return path


def _trainer(**kwargs) -> pl.Trainer:
    options = dict(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, inference_mode=False, use_distributed_sampler=False, num_sanity_val_steps=0,
    )
    return pl.Trainer(**{**options, **kwargs})


# -- the shipped configs --------------------------------------------------------------------------


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


# -- learning -------------------------------------------------------------------------------------


def test_short_spring_hnn_training_reaches_the_noise_floor(spring_file: Path) -> None:
    """200 full-batch Adam steps (the published optimizer) bring the test loss from ~0.5 to the level of
    the input noise: the true vector field itself scores ~0.04 on the noisy test states."""
    pl.seed_everything(0)
    module = DynamicsModule(
        HNN(1, hidden=(200, 200)), optimizer=lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4)
    )
    datamodule = HDF5DataModule(str(spring_file), batch_size=None)
    trainer = _trainer(max_epochs=200, limit_val_batches=0)
    initial = trainer.test(module, datamodule, verbose=False)[0]["test/loss"]
    trainer.fit(module, datamodule)
    final = _trainer().test(module, datamodule, verbose=False)[0]["test/loss"]

    test = TrajectoryDataset(spring_file, "test")[list(range(750))]
    system = get_system("mass_spring", k=2.0, m=0.5)
    floor = float(((system(0.0, test["x"]) - test["dxdt"]) ** 2).mean())
    assert initial > 0.2
    assert final < 0.042  # the published HNN: 0.0359 +- 0.0018 after 2000 steps
    assert final < 1.05 * floor


def test_rollout_loss_through_leapfrog_trains_a_separable_hnn(spring_file: Path) -> None:
    """Multi-step loss: windows of 4 steps through leapfrog; the window error drops by 10x in 60 steps."""
    from hnnlab.models import SeparableHNN

    pl.seed_everything(0)
    module = DynamicsModule(
        SeparableHNN(1, hidden=(64, 64)), loss="rollout", integrator="leapfrog",
        optimizer=lambda p: torch.optim.Adam(p, lr=3e-3),
    )
    datamodule = HDF5DataModule(str(spring_file), mode="windows", window=4, batch_size=None, use_noisy=False)
    before = _trainer().test(module, datamodule, verbose=False)[0]["test/loss"]
    _trainer(max_epochs=60, limit_val_batches=0).fit(module, datamodule)
    after = _trainer().test(module, datamodule, verbose=False)[0]["test/loss"]
    assert after < before / 10


# -- reliability ----------------------------------------------------------------------------------


def test_nonfinite_loss_stops_training_naming_step_and_term(spring_file: Path) -> None:
    module = DynamicsModule(PoisonedEnergyHNN(1), energy_weight=0.1)
    datamodule = HDF5DataModule(str(spring_file), batch_size=None)
    trainer = _trainer(max_epochs=10, limit_val_batches=0, callbacks=[PoisonAtStep(3)])
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(module, datamodule)
    message = str(info.value)
    assert "train loss became non-finite at global step 3" in message
    assert "loss term energy = nan" in message and "derivative" not in message.split("loss term")[1]
    assert trainer.global_step == 3  # the poisoned step never updated the weights
    assert all(bool(torch.isfinite(p).all()) for p in module.parameters())


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


# -- the rollout callback -------------------------------------------------------------------------


class _SpringEnergy(nn.Module):
    """``H = k q^2 / 2 + p^2 / (2 m)`` with a trainable scale (kept fixed by lr = 0)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, p = x[..., 0], x[..., 1]
        return self.scale * (q**2 + p**2)  # k = 2, m = 0.5


@pytest.mark.parametrize("scale", [1.0, 1.2])
def test_rollout_callback_metrics_equal_the_closed_form_rk4_errors(scale: float, spring_file: Path) -> None:
    """For ``H = s (q^2 + p^2)`` RK4 multiplies ``w = q + i p`` by ``R(-i z)`` per step (``z = 2 s dt``)
    while the truth (``H`` with ``s = 1``) multiplies it by ``exp(-2 i dt)``: the energy error after ``n``
    steps is ``1 - |R|^(2n)`` and the squared error at step ``k`` is ``|R^k - exp(-2 i k dt)|^2 |w_0|^2``.
    The callback's metrics must equal these closed forms."""
    import h5py

    n_steps, n_states = 60, 4
    model = HNN(1, net=_SpringEnergy(scale)).double()
    module = DynamicsModule(model, optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    callback = RolloutMetricsCallback(every_n_epochs=1, n_states=n_states, n_steps=n_steps, integrator="rk4",
                                      plots=False)
    trainer = _trainer(max_epochs=1, limit_val_batches=0, callbacks=[callback], precision="64-true")
    trainer.fit(module, HDF5DataModule(str(spring_file), batch_size=None))
    m = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("rollout/")}

    dt = 3.0 / 29
    z = 2 * scale * dt
    R = complex(1 - z**2 / 2 + z**4 / 24, -(z - z**3 / 6))  # RK4's stability function at -i z
    with h5py.File(spring_file, "r") as f:
        x0 = torch.from_numpy(f["test"]["clean_state"][:n_states, 0])  # the spring dataset has no val split
    w0_sq = float((x0**2).sum(-1).mean())
    k = torch.arange(n_steps + 1, dtype=torch.float64)
    R_k = torch.polar(torch.full_like(k, abs(R)), k * torch.angle(torch.tensor(R)).item())
    sq_err = (R_k - torch.polar(torch.ones_like(k), -2 * dt * k)).abs() ** 2  # (n_steps + 1,)
    assert m["rollout/finite"] == 1.0
    assert m["rollout/energy_error"] == pytest.approx(1 - abs(R) ** (2 * n_steps), rel=1e-6)
    assert m["rollout/model_energy_error"] == pytest.approx(m["rollout/energy_error"], rel=1e-9)
    # The reference (Yoshida-4, 16 substeps) has its own error, about 1% of RK4's at this step size.
    assert m["rollout/mse"] == pytest.approx(float(sq_err.mean()) * w0_sq / 2, rel=0.05)
    if scale == 1.0:
        assert m["rollout/vpt"] == pytest.approx(n_steps * dt)  # never crossed: the whole horizon
    else:
        assert m["rollout/vpt"] < n_steps * dt / 2


# -- W&B ------------------------------------------------------------------------------------------


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


def test_wandb_logger_does_not_pass_the_deprecated_anonymous_setting(tmp_path, monkeypatch, capfd) -> None:
    from hnnlab.training.logging import HnnlabWandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = HnnlabWandbLogger(name="quiet", save_dir=str(tmp_path), log_model=False)
    assert "anonymous" not in logger._wandb_init
    logger.experiment.finish()
    captured = capfd.readouterr()
    assert "anonymous" not in captured.out + captured.err
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1


# -- multi-process --------------------------------------------------------------------------------


@pytest.mark.slow
def test_ddp_gradients_equal_single_process_gradient_of_the_global_batch(small_data, tmp_path) -> None:
    """2 CPU processes (gloo, ddp_spawn), an HNN (double backward inside DDP), per-rank batch 6: the
    all-reduced gradient equals the single-process gradient of the same global batch of 12."""
    path = str(small_data["greydanus-spring"])

    def gradient(devices: int, strategy: str) -> dict[str, torch.Tensor]:
        out = str(tmp_path / f"grads-{devices}.pt")
        torch.manual_seed(0)
        module = DynamicsModule(HNN(1, hidden=(32, 32)), energy_weight=0.5)
        trainer = _trainer(devices=devices, strategy=strategy, max_steps=1, limit_val_batches=0,
                           precision="64-true", callbacks=[GradCapture(out)])
        trainer.fit(module, HDF5DataModule(path, batch_size=12, seed=3))
        return torch.load(out)

    single = gradient(1, "auto")
    ddp = gradient(2, "ddp_spawn")
    assert single.keys() == ddp.keys()
    for name in single:
        assert torch.allclose(ddp[name], single[name], rtol=1e-10, atol=1e-12), name
    assert any(float(g.abs().max()) > 1e-3 for g in single.values())  # a real gradient, not zeros


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

"""The training callbacks (hnnlab.training.callbacks): the rollout metrics against closed forms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from hnnlab.data.datamodule import HDF5DataModule
from hnnlab.models import HNN
from hnnlab.training.callbacks import RolloutMetricsCallback
from hnnlab.training.module import DynamicsModule
from tests._training_helpers import make_trainer

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


class _SpringEnergy(nn.Module):
    """``H = k q^2 / 2 + p^2 / (2 m)`` with a trainable scale (kept fixed by lr = 0)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, p = x[..., 0], x[..., 1]
        return self.scale * (q**2 + p**2)  # k = 2, m = 0.5


@pytest.mark.parametrize("scale", [1.0, 1.2])
def test_rollout_callback_metrics_equal_the_closed_form_rk4_errors(scale: float, spring_full: Path) -> None:
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
    trainer = make_trainer(max_epochs=1, limit_val_batches=0, callbacks=[callback], precision="64-true")
    trainer.fit(module, HDF5DataModule(str(spring_full), batch_size=None))
    m = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("rollout/")}

    dt = 3.0 / 29
    z = 2 * scale * dt
    R = complex(1 - z**2 / 2 + z**4 / 24, -(z - z**3 / 6))  # RK4's stability function at -i z
    with h5py.File(spring_full, "r") as f:
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


# -- the W&B panels -------------------------------------------------------------------------------


class _RecordingWandb:
    """Stands in for Lightning's ``WandbLogger`` (an instance of it, built without a W&B run): records what
    ``log_image`` receives, reading each PNG while it exists."""

    def __new__(cls):
        from lightning.pytorch.loggers import WandbLogger

        class Recording(WandbLogger):
            def __init__(self) -> None:  # no W&B run
                self.images: dict[str, tuple[bytes, int]] = {}

            def log_image(self, key: str, images: list, step: int | None = None, **kwargs) -> None:
                (path,) = images
                self.images[key] = (Path(path).read_bytes(), step)

        return Recording()


def _rollout_of_25(n_times: int = 1001):
    """A rollout of 25 pendulum states and the exact relative energy errors (zero at t = 0)."""
    from hnnlab.audit import metrics as M
    from hnnlab.rollout import rollout
    from hnnlab.systems import Pendulum

    system = Pendulum()
    x0 = system.sample_initial_states(25, torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = rollout(system, "leapfrog", x0, 0.025, 4 * (n_times - 1), 4)
    pred = rollout(Pendulum(g=6.1), "rk4", x0, 0.1, n_times - 1)
    t = torch.arange(n_times, dtype=torch.float64) * 0.1
    errors = {"system": M.relative_energy_error(system.energy(pred))}
    errors["model"] = 3 * errors["system"]
    return system, t, pred, reference, errors


def test_rollout_figures_have_sane_log_axes_and_tell_reference_from_prediction() -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    from hnnlab.audit.plots import ENERGY_ERROR_LABEL, MAX_TRAJ_LINES, TIME_LABEL, log_floor
    from hnnlab.training.callbacks import rollout_figures

    system, t, pred, reference, errors = _rollout_of_25()
    assert float(errors["system"][:, 0].abs().max()) == 0.0  # the exact zero at t = 0
    figures = rollout_figures(t, pred, reference, errors, system, torch.float32)
    try:
        assert sorted(figures) == ["energy_error", "phase_portrait"]
        energy = figures["energy_error"]
        assert len(energy.axes) == 2
        for ax in energy.axes:
            lo, hi = ax.get_ylim()
            assert ax.get_yscale() == "log" and log_floor(torch.float32) <= lo < hi <= 1.0  # errors ~ 1e-2
            assert len(ax.lines) == 2 and ax.get_legend() is not None  # median and worst, not 25 lines
            assert min(np.nanmin(line.get_ydata()) for line in ax.lines) >= lo
            assert ax.get_xlabel() == TIME_LABEL and ax.get_ylabel() == ENERGY_ERROR_LABEL
        phase = figures["phase_portrait"].axes[0]
        assert len(phase.lines) == 2 * MAX_TRAJ_LINES and figures["phase_portrait"].legends
        ref_colors = {line.get_color() for line in phase.lines[0::2]}
        assert ref_colors.isdisjoint(line.get_color() for line in phase.lines[1::2])
        assert (phase.get_xlabel(), phase.get_ylabel()) == ("q", "p")
    finally:
        plt.close("all")


def test_rollout_callback_logs_both_panels_to_wandb_and_nothing_when_disabled(monkeypatch) -> None:
    from types import SimpleNamespace

    system, t, pred, reference, errors = _rollout_of_25(201)
    callback = RolloutMetricsCallback(n_states=25, n_steps=200)
    logger = _RecordingWandb()
    trainer = SimpleNamespace(loggers=[logger], global_step=7)
    monkeypatch.setenv("WANDB_MODE", "offline")
    callback._plot(trainer, "rollout", t, pred, reference, errors, system, torch.float64)
    assert sorted(logger.images) == ["rollout/energy_error", "rollout/phase_portrait"]
    assert all(data[:8] == b"\x89PNG\r\n\x1a\n" and step == 7 for data, step in logger.images.values())
    logger.images.clear()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    callback._plot(trainer, "rollout", t, pred, reference, errors, system, torch.float64)
    assert logger.images == {}


@pytest.mark.parametrize("model_name", ["hnn", "node"])
def test_rollout_callback_reads_the_declared_has_energy(model_name: str, spring: Path) -> None:
    """The learned energy's error is logged exactly for the models that declare an energy."""
    from hnnlab.models import NeuralODE

    model = HNN(1) if model_name == "hnn" else NeuralODE(1)
    assert model.has_energy is (model_name == "hnn")
    callback = RolloutMetricsCallback(n_states=2, n_steps=10, integrator="rk4", plots=False)
    trainer = make_trainer(max_epochs=1, limit_val_batches=0, callbacks=[callback])
    trainer.fit(DynamicsModule(model), HDF5DataModule(str(spring), batch_size=None))
    logged = sorted(k for k in trainer.callback_metrics if k.startswith("rollout/"))
    expected = ["rollout/energy_error", "rollout/finite", "rollout/mse", "rollout/vpt"]
    assert logged == sorted(expected + ["rollout/model_energy_error"] if model.has_energy else expected)


@pytest.mark.parametrize(("save_last", "copied_at"), [(True, [2, 5, 7]), ("link", [2, 3, 4, 5, 6, 7])])
def test_checkpoint_saves_what_lightnings_saves_and_copies_the_metrics_only_when_it_saves(
    save_last: bool | str, copied_at: list[int], spring: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full batch (one step per epoch), 7 epochs, a save every 3: HnnlabCheckpoint writes the files Lightning's
    ModelCheckpoint writes (epochs 3 and 6, plus the final last.ckpt), and copies the logged metrics
    (``_monitor_candidates``) only for those saves and last.ckpt once training ended (epoch 7), not at the end of
    every epoch; with ``save_last="link"`` Lightning relinks last.ckpt at every epoch end after the first save,
    and so does it."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from hnnlab.training.callbacks import HnnlabCheckpoint

    copies: list[int] = []
    original = ModelCheckpoint._monitor_candidates

    def counted(self, trainer):  # noqa: ANN001, ANN202 - Lightning's signature
        copies.append(trainer.current_epoch)
        return original(self, trainer)

    monkeypatch.setattr(ModelCheckpoint, "_monitor_candidates", counted)
    saved: dict[str, list[str]] = {}
    for cls in (ModelCheckpoint, HnnlabCheckpoint):
        copies.clear()
        directory = tmp_path / cls.__name__
        checkpoint = cls(dirpath=directory, every_n_epochs=3, monitor=None, save_top_k=-1, save_last=save_last,
                         filename="{epoch}-{step}")
        trainer = make_trainer(max_epochs=7, limit_val_batches=0, enable_checkpointing=True, callbacks=[checkpoint])
        trainer.fit(DynamicsModule(HNN(1, hidden=(8,))), HDF5DataModule(str(spring), batch_size=None))
        saved[cls.__name__] = sorted(p.name for p in directory.iterdir())
        if cls is HnnlabCheckpoint:
            assert copies == copied_at
        else:
            assert copies == list(range(7))  # Lightning copies them at every epoch end
    assert saved["HnnlabCheckpoint"] == saved["ModelCheckpoint"] == ["epoch=2-step=3.ckpt", "epoch=5-step=6.ckpt",
                                                                      "last.ckpt"]

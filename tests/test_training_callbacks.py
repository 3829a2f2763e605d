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

"""The training losses (hnnlab.training.losses)."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from hnnlab.data.datamodule import HDF5DataModule
from hnnlab.training.module import DynamicsModule
from tests._training_helpers import make_trainer

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


def test_rollout_loss_through_leapfrog_trains_a_separable_hnn(spring_full: Path) -> None:
    """Multi-step loss: windows of 4 steps through leapfrog; the window error drops by 10x in 60 steps."""
    from hnnlab.models import SeparableHNN

    pl.seed_everything(0)
    module = DynamicsModule(
        SeparableHNN(1, hidden=(64, 64)), loss="rollout", integrator="leapfrog",
        optimizer=lambda p: torch.optim.Adam(p, lr=3e-3),
    )
    datamodule = HDF5DataModule(str(spring_full), mode="windows", window=4, batch_size=None, use_noisy=False)
    before = make_trainer().test(module, datamodule, verbose=False)[0]["test/loss"]
    make_trainer(max_epochs=60, limit_val_batches=0).fit(module, datamodule)
    after = make_trainer().test(module, datamodule, verbose=False)[0]["test/loss"]
    assert after < before / 10


# -- the rollout loss of open systems: windows driven by their own inputs, from their own start times -------------

_WINDOW_CASES = {  # system, input family (None: a force F(t) and no inputs)
    "chain-zoh": ("spring_damper_chain", "steps"),
    "chain-linear": ("spring_damper_chain", "sinusoids"),
    "duffing-force": ("duffing", None),
}


@pytest.fixture(scope="module", params=list(_WINDOW_CASES))
def driven_windows(request, tmp_path_factory):
    """Every 5-step window of 2 trajectories of a driven, damped system (dopri8 at 1e-12, saved every 0.1), with
    the system and its true port-Hamiltonian network (:func:`tests.test_models_phnn.true_model`)."""
    from hnnlab.data import simulate, write_dataset
    from hnnlab.data.dataset import TrajectoryDataset
    from hnnlab.data.input_families import Sinusoids, Steps
    from hnnlab.systems import get_system
    from tests.test_models_phnn import true_model

    name, family = _WINDOW_CASES[request.param]
    system = get_system(name)
    inputs = {"steps": Steps(n_switches=3), "sinusoids": Sinusoids(), None: None}[family]
    result = simulate(system, 2, dt=0.1, n_steps=40, integrator="dopri8", inputs=inputs, seed=5, splits=(1.0, 0, 0))
    path = write_dataset(tmp_path_factory.mktemp("windows") / f"{name}.h5", result)
    windows = TrajectoryDataset(path, "train", mode="windows", window=5)
    batch = windows[list(range(len(windows)))]  # (72, 6, 2 * dof), starts t = 0 ... 3.5
    interpolation = "zoh" if inputs is None else inputs.interpolation
    return system, true_model(system), batch, interpolation


@pytest.mark.parametrize(("integrator", "order"), [("rk4", 4), ("gauss_legendre4", 4), ("implicit_midpoint", 2),
                                                   ("dopri5", None)])
def test_rollout_loss_of_the_true_network_on_driven_windows_is_the_integrators_error(driven_windows, integrator,
                                                                                       order):
    # The true PHNN integrated over every window from its own start time, driven by its own inputs: the loss is the
    # integrator's error alone. Halving the step divides the MSE by 2^(2 * order) (measured 255-275 for the order-4
    # methods, 15.9-16.0 for the midpoint rule); dopri5 at its default tolerance sits at round-off (~2e-22).
    from hnnlab.integrators import get_integrator
    from hnnlab.training import losses

    _, model, batch, interpolation = driven_windows
    u = batch.get("u")
    method = get_integrator(integrator)
    mse = [float(losses.rollout_loss(model, method, batch["states"], 0.1, "mse", substeps, t=batch["t"], u=u,
                                     interpolation=interpolation)[0]) for substeps in (1, 2)]
    if order is None:
        assert mse[0] < 1e-18
        return
    expected = 2.0 ** (2 * order)
    assert 0.85 * expected < mse[0] / mse[1] < 1.15 * expected
    assert mse[0] < (5e-12 if order == 4 else 5e-7)  # measured 3e-14..2.5e-12 (order 4), 1.2e-7..1.9e-7 (midpoint)


@pytest.mark.parametrize("driven_windows", ["duffing-force"], indirect=True)
def test_rollout_loss_needs_each_windows_start_time_for_a_force_of_time(driven_windows):
    # Without the start times every window would be integrated as if it began at t = 0: for the forced Duffing
    # oscillator that is a different field, and the loss is 10^10 times the integrator's error.
    from hnnlab.integrators import get_integrator
    from hnnlab.training import losses

    _, model, batch, _ = driven_windows
    rk4 = get_integrator("rk4")
    right, _ = losses.rollout_loss(model, rk4, batch["states"], 0.1, t=batch["t"])
    wrong, _ = losses.rollout_loss(model, rk4, batch["states"], 0.1)
    assert float(right) < 5e-12 and float(wrong) > 1e-3  # measured 2.5e-12 and 2.3e-2


def test_rollout_loss_on_driven_windows_in_float32(driven_windows):
    # The same windows in float32 (model, states, times and inputs): the loss stays at float32's round-off of the
    # states, with rk4's own error below it (measured 1.7e-13 .. 2.3e-13, against ~1e-12 in float64).
    from hnnlab.integrators import get_integrator
    from hnnlab.training import losses

    _, model, batch, interpolation = driven_windows
    u = batch.get("u")
    loss, pred = losses.rollout_loss(copy.deepcopy(model).float(), get_integrator("rk4"), batch["states"].float(), 0.1,
                                     t=batch["t"].float(), u=None if u is None else u.float(),
                                     interpolation=interpolation)
    assert pred.dtype == torch.float32 and float(loss) < 1e-10

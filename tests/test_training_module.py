"""The LightningModule (hnnlab.training.module): learning to the noise floor, a non-finite loss stopping training,
DDP gradients."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from hnnlab.data.datamodule import HDF5DataModule
from hnnlab.data.dataset import TrajectoryDataset
from hnnlab.errors import InvalidArgumentError
from hnnlab.models import HNN
from hnnlab.systems import get_system
from hnnlab.training.module import DynamicsModule, NonFiniteLossError
from tests._training_helpers import GradCapture, PoisonAtStep, PoisonedEnergyHNN, make_trainer

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


def test_short_spring_hnn_training_reaches_the_noise_floor(spring_full: Path) -> None:
    """200 full-batch Adam steps (the published optimizer) bring the test loss from ~0.5 to the level of
    the input noise: the true vector field itself scores ~0.04 on the noisy test states."""
    pl.seed_everything(0)
    module = DynamicsModule(
        HNN(1, hidden=(200, 200)), optimizer=lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4)
    )
    datamodule = HDF5DataModule(str(spring_full), batch_size=None)
    trainer = make_trainer(max_epochs=200, limit_val_batches=0)
    initial = trainer.test(module, datamodule, verbose=False)[0]["test/loss"]
    trainer.fit(module, datamodule)
    final = make_trainer().test(module, datamodule, verbose=False)[0]["test/loss"]

    test = TrajectoryDataset(spring_full, "test")[list(range(750))]
    system = get_system("mass_spring", k=2.0, m=0.5)
    floor = float(((system(0.0, test["x"]) - test["dxdt"]) ** 2).mean())
    assert initial > 0.2
    assert final < 0.042  # the published HNN: 0.0359 +- 0.0018 after 2000 steps
    assert final < 1.05 * floor


def test_nonfinite_loss_stops_training_naming_step_and_term(spring_full: Path) -> None:
    module = DynamicsModule(PoisonedEnergyHNN(1), energy_weight=0.1)
    datamodule = HDF5DataModule(str(spring_full), batch_size=None)
    trainer = make_trainer(max_epochs=10, limit_val_batches=0, callbacks=[PoisonAtStep(3)])
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(module, datamodule)
    message = str(info.value)
    assert "train loss became non-finite at global step 3" in message
    assert "loss term energy = nan" in message and "derivative" not in message.split("loss term")[1]
    assert trainer.global_step == 3  # the poisoned step never updated the weights
    assert all(bool(torch.isfinite(p).all()) for p in module.parameters())


@pytest.mark.slow
def test_ddp_gradients_equal_single_process_gradient_of_the_global_batch(small_data, tmp_path) -> None:
    """2 CPU processes (gloo, ddp_spawn), an HNN (double backward inside DDP), per-rank batch 6: the
    all-reduced gradient equals the single-process gradient of the same global batch of 12."""
    path = str(small_data["greydanus-spring"])

    def gradient(devices: int, strategy: str) -> dict[str, torch.Tensor]:
        out = str(tmp_path / f"grads-{devices}.pt")
        torch.manual_seed(0)
        module = DynamicsModule(HNN(1, hidden=(32, 32)), energy_weight=0.5)
        trainer = make_trainer(devices=devices, strategy=strategy, max_steps=1, limit_val_batches=0,
                           precision="64-true", callbacks=[GradCapture(out)])
        trainer.fit(module, HDF5DataModule(path, batch_size=12, seed=3))
        return torch.load(out)

    single = gradient(1, "auto")
    ddp = gradient(2, "ddp_spawn")
    assert single.keys() == ddp.keys()
    for name in single:
        assert torch.allclose(ddp[name], single[name], rtol=1e-10, atol=1e-12), name
    assert any(float(g.abs().max()) > 1e-3 for g in single.values())  # a real gradient, not zeros


def test_a_model_that_needs_inputs_is_refused_before_any_step_on_data_without_them(spring_file) -> None:
    from hnnlab.errors import InvalidArgumentError
    from hnnlab.models import PortHamiltonianNN

    module = DynamicsModule(PortHamiltonianNN(1, hidden=(8,), n_inputs=1))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(InvalidArgumentError) as info:
        make_trainer(max_steps=1).fit(module, datamodule=HDF5DataModule(str(spring_file)))
    assert str(info.value) == (
        f"{spring_file}: the dataset has no inputs (no root attribute 'inputs', no per-split 'inputs' dataset), but "
        "PortHamiltonianNN takes n_inputs = 1 inputs; train it on a file simulated with inputs (hnnlab simulate "
        "--inputs FAMILY) or set n_inputs = 0"
    )
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())  # no step was taken


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # _step called without a trainer
def test_rollout_loss_with_a_derivative_term_is_the_rollout_loss_plus_the_weighted_derivative_loss(
        spring_file: Path) -> None:
    """``derivative_weight`` adds w * mean((f(x) - dx/dt)^2) over the windows' first states to the rollout loss;
    the windows' ``dxdt`` are the file's exact derivatives at the same (trajectory, time) entries."""
    from hnnlab.models import SeparableHNN
    from hnnlab.training import losses

    plain = TrajectoryDataset(spring_file, "train", mode="windows", window=3)
    with_dxdt = TrajectoryDataset(spring_file, "train", mode="windows", window=3, with_dxdt=True)
    pairs = TrajectoryDataset(spring_file, "train", mode="pairs")
    batch = with_dxdt[list(range(len(with_dxdt)))]
    assert "dxdt" not in plain[0] and batch["dxdt"].shape == batch["states"].shape
    assert torch.equal(batch["states"], plain[list(range(len(plain)))]["states"])
    per_traj = pairs.n_times
    for i in (0, 5, len(with_dxdt) - 1):  # item i: trajectory i // (n_times - 3), first time i % (n_times - 3)
        traj, start = divmod(i, with_dxdt.per_traj)
        expected = pairs[[traj * per_traj + start + k for k in range(4)]]["dxdt"]
        assert torch.equal(batch["dxdt"][i], expected)

    torch.manual_seed(0)
    model = SeparableHNN(1, hidden=(16,)).double()
    module = DynamicsModule(model, loss="rollout", integrator="leapfrog", derivative_weight=0.25)
    terms = module.loss_terms(batch)
    dt = float(batch["t"][0, 1] - batch["t"][0, 0])
    rollout, _ = losses.rollout_loss(model, module.integrator, batch["states"], dt)
    derivative = ((model(0.0, batch["states"][:, 0]) - batch["dxdt"][:, 0]) ** 2).mean()  # at the window starts
    assert set(terms) == {"rollout", "derivative"}
    assert torch.allclose(terms["rollout"], rollout, rtol=1e-14, atol=0)
    assert torch.allclose(terms["derivative"], derivative, rtol=1e-14, atol=0)
    total = module._step(batch, 0, "val")
    assert torch.allclose(total, rollout + 0.25 * derivative, rtol=1e-14, atol=0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"loss": "rollout", "derivative_weight": -1.0}, "derivative_weight must be a finite number >= 0, got -1.0"),
    ({"loss": "rollout", "derivative_weight": float("nan")}, "derivative_weight must be a finite number >= 0, got nan"),
    ({"loss": "derivative", "derivative_weight": 0.5},
     "derivative_weight applies to loss='rollout' (with loss='derivative' the derivative loss is the whole loss), got "
     "derivative_weight=0.5 with loss='derivative'"),
])
def test_derivative_weight_refused_with_the_rule(kwargs: dict, message: str) -> None:
    from hnnlab.models import SeparableHNN

    with pytest.raises(InvalidArgumentError) as info:
        DynamicsModule(SeparableHNN(1, hidden=(8,)), **kwargs)
    assert str(info.value) == message


def test_derivative_weight_without_dxdt_in_the_windows_names_the_datamodule_option(spring_file: Path) -> None:
    from hnnlab.models import SeparableHNN

    windows = TrajectoryDataset(spring_file, "train", mode="windows", window=2)
    module = DynamicsModule(SeparableHNN(1, hidden=(8,)).double(), loss="rollout", derivative_weight=1.0)
    with pytest.raises(InvalidArgumentError) as info:
        module.loss_terms(windows[[0, 1]])
    assert str(info.value) == ("derivative_weight > 0 needs the exact dx/dt in the windows: set the datamodule's "
                               "with_dxdt to true")


# -- the rollout loss with inputs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def driven_chain(tmp_path_factory) -> Path:
    """The spring-damper chain (3 masses) driven by sums of sinusoids (linear interpolation): 8 trajectories of 41
    saved times, dopri8, noise-free."""
    from hnnlab.data import simulate, write_dataset
    from hnnlab.data.input_families import Sinusoids

    result = simulate(get_system("spring_damper_chain"), 8, dt=0.1, n_steps=40, integrator="dopri8",
                      inputs=Sinusoids(), seed=3, splits=(0.75, 0.0, 0.25))
    return write_dataset(tmp_path_factory.mktemp("driven") / "chain.h5", result)


def test_a_port_hamiltonian_network_trained_through_driven_rollouts_lowers_its_loss(driven_chain: Path) -> None:
    """100 full-batch Adam steps through 3-step rk4 windows, each driven by its own inputs: the test windows' loss
    falls by more than 10x (measured 1.29e-2 -> 3.95e-4; 300 steps of a 32-wide network on 5-step windows: 2.8e-2 ->
    1.6e-4)."""
    from hnnlab.models import PortHamiltonianNN

    pl.seed_everything(0)
    model = PortHamiltonianNN(3, hidden=(16, 16), separable=True, n_inputs=1).double()
    module = DynamicsModule(model, loss="rollout", integrator="rk4",
                            optimizer=lambda p: torch.optim.Adam(p, lr=1e-2)).double()
    datamodule = HDF5DataModule(str(driven_chain), mode="windows", window=3, batch_size=None)
    before = make_trainer().test(module, datamodule, verbose=False)[0]["test/loss"]
    assert module.input_interpolation == "linear"  # read from the file
    make_trainer(max_steps=100, limit_val_batches=0).fit(module, datamodule)
    after = make_trainer().test(module, datamodule, verbose=False)[0]["test/loss"]
    assert after < before / 10, (before, after)


@pytest.mark.parametrize("driven_model", [True, False], ids=["model-with-inputs", "model-without"])
def test_the_rollout_loss_refuses_inputs_that_do_not_match_the_model(driven_model, spring_file, driven_chain):
    from hnnlab.models import PortHamiltonianNN

    if driven_model:  # a model that needs inputs, on data without them
        model, path = PortHamiltonianNN(1, hidden=(8,), n_inputs=1), spring_file
        expected = (
            f"{spring_file}: the dataset has no inputs (no root attribute 'inputs', no per-split 'inputs' dataset), "
            "but PortHamiltonianNN takes n_inputs = 1 inputs; train it on a file simulated with inputs (hnnlab "
            "simulate --inputs FAMILY) or set n_inputs = 0"
        )
    else:  # the reverse
        model, path = PortHamiltonianNN(3, hidden=(8,)), driven_chain
        expected = (
            f"{driven_chain}: the dataset has 1 input(s) (u1; root attribute 'inputs', per-split dataset 'inputs'), "
            "but PortHamiltonianNN takes n_inputs = 0; use a model that takes 1 input(s) (phnn), or use data without "
            "inputs"
        )
    module = DynamicsModule(model.double(), loss="rollout", integrator="rk4").double()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(InvalidArgumentError) as info:
        make_trainer(max_steps=1).fit(module, HDF5DataModule(str(path), mode="windows", window=2))
    assert str(info.value) == expected
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())  # no step was taken


def test_the_rollout_loss_refuses_an_interpolation_that_is_not_the_datasets(driven_chain: Path) -> None:
    from hnnlab.models import PortHamiltonianNN

    with pytest.raises(InvalidArgumentError) as info:
        DynamicsModule(PortHamiltonianNN(3, n_inputs=1), loss="rollout", integrator="rk4", input_interpolation="cubic")
    assert str(info.value) == "input_interpolation must be one of 'zoh', 'linear' or None (the dataset's), got 'cubic'"
    module = DynamicsModule(PortHamiltonianNN(3, hidden=(8,), n_inputs=1).double(), loss="rollout", integrator="rk4",
                            input_interpolation="zoh").double()
    with pytest.raises(InvalidArgumentError) as info:
        make_trainer(max_steps=1).fit(module, HDF5DataModule(str(driven_chain), mode="windows", window=2))
    assert str(info.value) == (
        f"{driven_chain}: the dataset's inputs are interpolated by 'linear' (root attribute 'inputs'), but "
        "input_interpolation (--model.input_interpolation) = 'zoh'; leave it unset (None) to use the dataset's"
    )
    # windows without inputs given directly to a model that takes them
    batch = {"states": torch.zeros(2, 3, 6, dtype=torch.float64), "t": torch.zeros(2, 3, dtype=torch.float64)}
    with pytest.raises(InvalidArgumentError) as info:
        module.loss_terms(batch)
    assert str(info.value) == ("PortHamiltonianNN takes n_inputs = 1 inputs, but the windows carry none (no 'u'): "
                               "train it on a dataset file with inputs (hnnlab simulate --inputs FAMILY)")

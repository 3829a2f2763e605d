"""Rollouts driven by stored inputs: rollout files (version 2) store the inputs used, and ``hnnlab rollout`` of a
model that takes inputs drives it with a dataset's per-trajectory inputs."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
import torch

from hnnlab.cli import main
from hnnlab.data import load_dataset, simulate, write_dataset
from hnnlab.data.input_families import Sinusoids, Steps
from hnnlab.evaluate import predict_to_file
from hnnlab.inputs import DrivenField, InputSignal
from hnnlab.integrators import get_integrator
from hnnlab.models import PortHamiltonianNN
from hnnlab.rollout import solve
from hnnlab.rollout_io import RolloutFileError, RolloutMetadata, RolloutWriter, read_rollout
from hnnlab.systems import get_system
from tests.test_models_phnn import true_model
from tests.test_training_checkpoint import save_and_load

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")

CHAIN = get_system("spring_damper_chain")
DT, N_STEPS = 0.1, 40  # the inputs cover t <= 4


@pytest.fixture(scope="module", params=[Steps(n_switches=3), Sinusoids()], ids=["zoh", "linear"])
def driven(request, tmp_path_factory) -> Path:
    result = simulate(CHAIN, 4, dt=DT, n_steps=N_STEPS, integrator="dopri8", inputs=request.param, seed=5,
                      splits=(0.5, 0.0, 0.5))
    return write_dataset(tmp_path_factory.mktemp("driven") / "chain.h5", result)


@pytest.fixture(scope="module")
def undriven(tmp_path_factory) -> Path:
    result = simulate(CHAIN, 4, dt=DT, n_steps=N_STEPS, integrator="dopri8", seed=5, splits=(0.5, 0.0, 0.5))
    return write_dataset(tmp_path_factory.mktemp("undriven") / "chain.h5", result)


def _signal(path: Path, n_times: int = N_STEPS + 1) -> InputSignal:
    data = load_dataset(path)
    test = data.splits["test"]
    return InputSignal(test.t[:n_times], test.inputs[:, :n_times], data.metadata["inputs"]["interpolation"])


def test_true_network_driven_by_stored_inputs_follows_the_data_to_rk4_error(driven, tmp_path):
    test = load_dataset(driven).splits["test"]
    signal = _signal(driven)
    model = true_model(CHAIN)
    errors = []
    for k in (1, 2):  # the step halved: rk4's error falls 16-fold
        out = tmp_path / f"r{k}.h5"
        predict_to_file(model, test.clean[:, 0], dt=DT / k, n_steps=N_STEPS * k, save_every=k, out=out,
                        integrator="rk4", system=CHAIN, inputs=signal, progress=False)
        r = read_rollout(out)
        assert r.schema_version == 2 and r.state.shape == test.clean.shape
        # the reference (the true system driven by the same inputs, dopri8) is the dataset's clean states
        torch.testing.assert_close(r.reference, test.clean, rtol=0, atol=1e-12)  # measured 2e-14
        # the inputs stored bit for bit, with their times and interpolation
        assert torch.equal(r.inputs.values, test.inputs) and torch.equal(r.inputs.t, test.t)
        assert r.inputs.interpolation == signal.interpolation
        errors.append(float((r.state - test.clean).abs().max()))
    assert errors[0] < 1e-4  # measured 2.3e-5 (steps), 2.7e-5 (sinusoids); halved: 1.4e-6, 1.7e-6
    assert 12 < errors[0] / errors[1] < 20  # measured 16.2, 15.6: rk4's fourth order, the only error


def test_cli_rollout_of_a_driven_network_stores_the_inputs_it_used(driven, tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = tmp_path / "phnn.ckpt"
    model = save_and_load(PortHamiltonianNN(CHAIN.dof, hidden=(8,), n_inputs=1).double(), ckpt)
    out = tmp_path / "rollout.h5"
    assert main(["rollout", "--ckpt", str(ckpt), "--data", str(driven), "--steps", "20", "--save-every", "2",
                 "--n-init", "2", "--out", str(out), "--no-progress"]) == 0
    assert "; driven by the dataset's inputs" in capsys.readouterr().out
    r = read_rollout(out)
    signal = _signal(driven, 21)  # the samples up to t = 2: what 20 steps of 0.1 cover
    assert torch.equal(r.inputs.values, signal.values[:2]) and torch.equal(r.inputs.t, signal.t)
    assert r.metadata.integrator["name"] == "rk4"
    x0 = load_dataset(driven).splits["test"].clean[:2, 0]
    expected = solve(DrivenField(model, InputSignal(signal.t, signal.values[:2], signal.interpolation)), "rk4", x0,
                     DT, 20, 2).ys
    torch.testing.assert_close(r.state, expected, rtol=0, atol=1e-13)


def _refusal(ckpt: Path, data: Path, steps: str, tmp_path: Path, capsys) -> str:
    out = tmp_path / "refused.h5"
    assert main(["rollout", "--ckpt", str(ckpt), "--data", str(data), "--steps", steps, "--out", str(out),
                 "--no-progress"]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err.removeprefix("hnnlab rollout: error: ").rstrip("\n")


def test_cli_refusals_name_the_file_the_field_and_what_is_allowed(driven, undriven, tmp_path, capsys):
    driven_ckpt, plain_ckpt = tmp_path / "driven.ckpt", tmp_path / "plain.ckpt"
    save_and_load(PortHamiltonianNN(CHAIN.dof, hidden=(8,), n_inputs=1).double(), driven_ckpt)
    save_and_load(PortHamiltonianNN(CHAIN.dof, hidden=(8,)).double(), plain_ckpt)
    assert _refusal(driven_ckpt, undriven, "10", tmp_path, capsys) == (
        f"checkpoint {str(driven_ckpt)!r} holds a PortHamiltonianNN that takes n_inputs = 1 inputs, but --data "
        f"{str(undriven)!r} split 'test' has no field 'inputs'; roll it out on data simulated with inputs "
        "(hnnlab simulate --inputs ...)"
    )
    assert _refusal(plain_ckpt, driven, "10", tmp_path, capsys) == (
        f"--data {str(driven)!r} split 'test' has the field 'inputs' (1 inputs), but checkpoint {str(plain_ckpt)!r} "
        "holds a PortHamiltonianNN that takes none; roll out a model that takes n_inputs = 1 inputs (a "
        "PortHamiltonianNN)"
    )
    assert _refusal(driven_ckpt, driven, "41", tmp_path, capsys) == (
        f"--steps 41 with dt = 0.1 runs to t = 4.1, past the field 'inputs' of --data {str(driven)!r} split 'test', "
        "which covers t <= 4; allowed: --steps <= 40"
    )


def _write(path: Path, inputs: InputSignal | None = None) -> Path:
    meta = RolloutMetadata(integrator=get_integrator("rk4").describe(), dt=0.5)
    with RolloutWriter(path, 2, 1, torch.float64, meta, inputs=inputs) as writer:
        writer.append(torch.zeros(2, 3, 2))
    return path


def test_stored_inputs_are_validated_and_version_1_files_still_read(tmp_path):
    values = torch.randn(2, 4, 1, dtype=torch.float64)
    signal = InputSignal(torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64), values, "linear")
    r = read_rollout(_write(tmp_path / "with.h5", signal))
    assert torch.equal(r.inputs.values, values) and r.inputs.interpolation == "linear"
    assert read_rollout(_write(tmp_path / "without.h5")).inputs is None
    old = _write(tmp_path / "v1.h5")
    with h5py.File(old, "a") as f:
        f.attrs["schema_version"] = 1
    assert read_rollout(old).schema_version == 1 and read_rollout(old).inputs is None
    cases = {
        "v1-inputs": (lambda f: f.attrs.__setitem__("schema_version", 1),
                      "'inputs' needs schema_version 2, the file has version 1"),
        "mode": (lambda f: f.attrs.__setitem__("inputs", '{"interpolation": "cubic", "n_inputs": 1}'),
                 "root attribute 'inputs': interpolation 'cubic' is not one of 'zoh', 'linear'"),
        "no-times": (lambda f: f.__delitem__("inputs_t"),
                     "stored inputs need the datasets 'inputs', 'inputs_t' and the root attribute 'inputs' "
                     "together; missing inputs_t"),
        "nonfinite": (lambda f: f["inputs"].__setitem__((0, 1, 0), float("nan")),
                      "dataset 'inputs' or 'inputs_t': input values must be finite floating-point numbers"),
        "version-3": (lambda f: f.attrs.__setitem__("schema_version", 3),
                      "root attribute 'schema_version' is 3; this hnnlab reads versions 1, 2"),
    }
    for name, (spoil, message) in cases.items():
        path = _write(tmp_path / f"{name}.h5", signal)
        with h5py.File(path, "a") as f:
            spoil(f)
        with pytest.raises(RolloutFileError) as info:
            read_rollout(path)
        assert str(info.value) == f"{str(path)!r}: {message}", name

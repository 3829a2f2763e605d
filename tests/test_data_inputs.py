"""Dataset format version 2: inputs and observations stored, validated, written and read back."""

from __future__ import annotations

import h5py
import pytest
import torch

from hnnlab.data import DatasetError, load_dataset, simulate, validate, write_dataset
from hnnlab.data.dataset import TrajectoryDataset
from hnnlab.systems import MassSpring

INFO = {"names": ["u"], "interpolation": "zoh", "family": {"name": "test"}}
OBS = {"observe": "q", "noise_std": 0.0, "every": 2, "names": ["q"], "seed": 0}


@pytest.fixture
def result():
    return simulate(MassSpring(), 4, dt=0.1, n_steps=5, integrator="rk4", splits=(0.5, 0.0, 0.5))


def _inputs(result):
    return {k: torch.arange(v.n_traj * v.n_times, dtype=v.state.dtype).reshape(v.n_traj, v.n_times, 1)
            for k, v in result.splits.items() if v.n_traj}


def _observations(result):
    return {k: (v.t[::2], v.state[:, ::2, :1]) for k, v in result.splits.items() if v.n_traj}


def test_inputs_and_observations_round_trip(result, tmp_path):
    path = write_dataset(tmp_path / "a.h5", result, inputs=_inputs(result), input_info=INFO,
                         observations=_observations(result), observation=OBS)
    assert validate(path) == []
    loaded = load_dataset(path)
    train = loaded.splits["train"]
    assert torch.equal(train.inputs, _inputs(result)["train"])
    assert torch.equal(train.observed, result.splits["train"].state[:, ::2, :1])
    assert torch.equal(train.observed_t, result.splits["train"].t[::2])
    assert loaded.metadata["inputs"] == INFO and loaded.metadata["observation"] == OBS
    item = TrajectoryDataset(path, "train")[7]  # trajectory 1, time 1
    assert float(item["u"][0]) == 7.0 and float(item["t"]) == pytest.approx(0.1)
    window = TrajectoryDataset(path, "train", mode="windows", window=2)[[0]]
    assert window["u"].shape == (1, 3, 1)


def test_files_without_inputs_have_no_u(result, tmp_path):
    path = write_dataset(tmp_path / "plain.h5", result)
    assert "u" not in TrajectoryDataset(path, "train")[0]
    assert load_dataset(path).splits["train"].inputs is None


def test_writer_refuses_inputs_without_description_and_writes_nothing(result, tmp_path):
    with pytest.raises(DatasetError, match="no root attribute 'inputs'.*pass input_info="):
        write_dataset(tmp_path / "b.h5", result, inputs=_inputs(result))
    with pytest.raises(DatasetError, match="splits test have no inputs"):
        write_dataset(tmp_path / "b.h5", result, inputs={"train": _inputs(result)["train"]}, input_info=INFO)
    assert not (tmp_path / "b.h5").exists()


def test_validator_names_file_and_field(result, tmp_path):
    path = write_dataset(tmp_path / "c.h5", result, inputs=_inputs(result), input_info=INFO,
                         observations=_observations(result), observation=OBS)
    with h5py.File(path, "a") as f:
        f["train/inputs"][0, 0, 0] = float("nan")
        f["test/observed_t"][1] += 0.5
    assert validate(path) == [
        f"{path}: /train/inputs: non-finite value (NaN or inf) at index (0, 0, 0)",
        f"{path}: /test/observed_t: differs from t[::every] with every = 2",
    ]
    with h5py.File(path, "a") as f:
        f.attrs["inputs"] = '{"names": ["u"], "interpolation": "cubic", "family": {}}'
        del f["test/observed"]
    problems = validate(path, check_values=False)
    assert f"{path}: root attribute 'inputs': 'interpolation' is 'cubic'; allowed: zoh, linear" in problems[0]
    assert f"{path}: /test/observed: missing dataset" in problems


def test_inputs_off_the_state_grid_and_version_1_files(result, tmp_path):
    path = write_dataset(tmp_path / "d.h5", result, inputs=_inputs(result), input_info=INFO)
    with h5py.File(path, "a") as f:
        data = f["train/inputs"][:, :-1]
        del f["train/inputs"]
        f["train/inputs"] = data
    assert validate(path, check_values=False) == [
        f"{path}: /train/inputs: shape (2, 5, 1) does not match the time grid of state (2, 6, 2) and the 1 input "
        f"names; expected (n_traj, n_times, n_inputs) = (2, 6, 1)"
    ]
    old = write_dataset(tmp_path / "v1.h5", result)
    with h5py.File(old, "a") as f:
        f.attrs["schema_version"] = 1
    assert validate(old) == []
    with h5py.File(old, "a") as f:
        f.attrs["inputs"] = '{"names": ["u"], "interpolation": "zoh", "family": {}}'
    assert f"{old}: root attribute 'inputs' needs schema_version 2, the file has version 1" in validate(old)

"""Datasets: simulation accuracy, the HDF5 format (round trip, validator), atomic writes, recipes; the
`hnnlab simulate` and `hnnlab data check` commands are tested in tests/test_cli.py."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hnnlab.data import (
    RECIPES,
    DatasetError,
    get_recipe,
    load_dataset,
    rebuild_system,
    simulate,
    validate,
    write_dataset,
)
from hnnlab.data.simulate import split_counts
from hnnlab.errors import FileFormatError, InvalidArgumentError, UnknownNameError
from hnnlab.systems import MassSpring, Pendulum
from tests._data_helpers import copy_file, small_result

# -- simulation --------------------------------------------------------------------------------------


def test_ground_truth_matches_exact_solution_and_exact_derivatives():
    system = MassSpring()
    result = small_result()
    for split in result.splits.values():
        x0 = split.state[:, 0]
        exact = system.exact_solution(x0, split.t)  # (n_traj, n_times, 2)
        assert (split.state - exact).abs().max() < 1e-11
        assert torch.allclose(split.dxdt, system.vector_field(0.0, split.state), rtol=0, atol=1e-15)
        assert torch.allclose(split.energy, system.energy(split.state), rtol=0, atol=1e-15)
        assert (split.energy - split.energy[:, :1]).abs().max() < 1e-11


def test_noise_is_added_to_states_only_and_has_the_requested_std():
    result = simulate(Pendulum(), 200, dt=0.1, n_steps=20, integrator="rk4", substeps=4, noise_std=0.1, seed=1)
    split = result.splits["train"]
    noise = split.state - split.clean_state
    assert abs(float(noise.std()) - 0.1) < 0.005  # 6720 samples: the std of the estimate is ~0.0009
    assert abs(float(noise.mean())) < 0.005
    assert torch.equal(split.dxdt, Pendulum().vector_field(0.0, split.clean_state))
    assert result.splits["test"].clean_state is not None


def test_float32_output_is_the_float64_result_rounded():
    r64, r32 = small_result(dtype="float64"), small_result(dtype="float32")
    assert r32.splits["train"].state.dtype == torch.float32
    assert torch.equal(r32.splits["train"].state, r64.splits["train"].state.float())
    assert r32.metadata["dtype"] == "float32"


def test_same_seed_is_bit_identical_and_another_seed_differs(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    recipe = get_recipe("greydanus-pendulum", n_traj=6)
    a = write_dataset(tmp_path / "a.h5", recipe.build(seed=3))
    b = write_dataset(tmp_path / "b.h5", recipe.build(seed=3))
    assert a.read_bytes() == b.read_bytes()
    other = recipe.build(seed=4)
    assert not torch.equal(other.splits["train"].state, load_dataset(a).splits["train"].state)


def test_split_counts_follow_fractions_in_draw_order():
    assert split_counts(50, (0.5, 0.0, 0.5)) == (25, 0, 25)
    assert split_counts(70_000, (5 / 7, 0.0, 2 / 7)) == (50_000, 0, 20_000)
    assert split_counts(10, (0.6, 0.2, 0.2)) == (6, 2, 2)
    message = r"splits must be three fractions .* summing to 1; got \(0.5, 0.4, 0.2\)"
    with pytest.raises(InvalidArgumentError, match=message):
        split_counts(10, (0.5, 0.4, 0.2))
    one = small_result()
    both = torch.cat([one.splits[s].state for s in ("train", "val", "test")])
    x0 = MassSpring().sample_initial_states(10, torch.Generator().manual_seed(0))
    assert torch.equal(both[:, 0], x0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dt": 0.0}, "dt must be a finite number > 0, got 0.0"),
        ({"n_steps": -1}, "n_steps must be an integer >= 0, got -1"),
        ({"noise_std": -0.1}, "noise_std must be a finite number >= 0, got -0.1"),
        ({"dtype": "float16"}, "dtype must be one of float32, float64, got 'float16'"),
        ({"integrator": "nope"}, "unknown integrator 'nope'"),
    ],
)
def test_simulate_rejects_bad_arguments(kwargs, message):
    args = {"dt": 0.1, "n_steps": 3, **kwargs}
    with pytest.raises((InvalidArgumentError, UnknownNameError), match=message):
        simulate(MassSpring(), 4, **args)


# -- format: round trip and validator ------------------------------------------------------------------


def test_round_trip_is_exact(tmp_path):
    result = small_result(noise_std=0.05)
    path = write_dataset(tmp_path / "rt.h5", result)
    loaded = load_dataset(path)
    assert set(loaded.splits) == {"train", "val", "test"}
    for name, split in result.splits.items():
        back = loaded.splits[name]
        for field in ("t", "state", "dxdt", "energy", "clean_state"):
            assert torch.equal(getattr(back, field), getattr(split, field)), (name, field)
        assert back.dt == split.dt
    for key in ("system", "integrator", "state_names", "dof", "dt", "seed", "noise_std", "schema", "schema_version"):
        assert loaded.metadata[key] == result.metadata[key]
    assert rebuild_system(loaded.metadata) == MassSpring()


def test_rebuild_system_from_a_description_its_json_or_a_files_metadata():
    description = MassSpring(k=3.0).describe()
    for source in (description, json.dumps(description), {"system": description, "dof": 1}):
        assert rebuild_system(source) == MassSpring(k=3.0)
    assert rebuild_system(None) is None  # a rollout file that names no system
    with pytest.raises(DatasetError, match=r"^x\.h5: the system description \{.*\} is incomplete \(no 'class' entry\)"):
        rebuild_system({"params": {}}, source="x.h5", error=DatasetError)
    bad = {**description, "params": {"k": 3.0, "mass": 1.0}}
    with pytest.raises(FileFormatError) as info:
        rebuild_system(bad, source="x.h5")
    message = str(info.value)
    assert message.startswith(f"x.h5: system {description['class']!r} with parameters {{'k': 3.0, 'mass': 1.0}}")
    assert "cannot be rebuilt: " in message and "'mass'" in message


def test_layout_has_one_chunk_per_trajectory_and_omits_empty_splits(tmp_path):
    result = simulate(MassSpring(), 4, dt=0.1, n_steps=5, integrator="rk4", splits=(0.5, 0.0, 0.5))
    path = write_dataset(tmp_path / "c.h5", result)
    with h5py.File(path) as f:
        assert "val" not in f and f["train/state"].chunks == (1, 6, 2) and f["train/energy"].chunks == (1, 6)
        assert "clean_state" not in f["train"]
        assert f.attrs["schema"] == "hnnlab.dataset" and f.attrs["schema_version"] == 2
    assert validate(path) == []


def test_validator_reports_each_problem_with_file_and_field(spring_file, tmp_path):
    bad = copy_file(spring_file, tmp_path / "bad.h5")
    with h5py.File(bad, "a") as f:
        del f["train/dxdt"]
        f["val/state"][0, 1, 0] = np.nan
        del f["test/energy"]
        f["test/energy"] = np.zeros((3, 13))
        del f.attrs["seed"]
    problems = validate(bad)
    assert f"{bad}: missing root attribute 'seed'" in problems
    assert f"{bad}: /train/dxdt: missing dataset" in problems
    assert f"{bad}: /val/state: non-finite value (NaN or inf) at index (0, 1, 0)" in problems
    assert any(p.startswith(f"{bad}: /test/energy: shape (3, 13) does not match state (2, 13, 2)") for p in problems)
    assert len(problems) == 4


def test_validator_checks_energy_against_the_system(spring_file, tmp_path):
    bad = copy_file(spring_file, tmp_path / "energy.h5")
    with h5py.File(bad, "a") as f:
        f["train/energy"][2, 3] += 1e-3
    problems = validate(bad)
    assert len(problems) == 1
    assert problems[0].startswith(f"{bad}: /train/energy: does not match the system's energy of clean_state")
    assert validate(bad, energy_rtol=1e-2) == []


def test_wrong_schema_version_is_refused(spring_file, tmp_path):
    bad = copy_file(spring_file, tmp_path / "v3.h5")
    with h5py.File(bad, "a") as f:
        f.attrs["schema_version"] = 3
    assert validate(bad) == [f"{bad}: root attribute 'schema_version' is 3; this hnnlab reads versions 1, 2"]
    with pytest.raises(DatasetError, match="schema_version' is 3"):
        load_dataset(bad)


def test_file_without_splits_and_foreign_hdf5(tmp_path):
    empty = tmp_path / "foreign.h5"
    with h5py.File(empty, "w") as f:
        f["x"] = np.zeros(3)
    assert validate(empty) == [
        f"{empty}: root attribute 'schema' is None, expected 'hnnlab.dataset' (not an hnnlab dataset)"
    ]


@pytest.mark.parametrize("damage", ["missing", "empty", "text", "truncated", "garbled"])
def test_unreadable_files_give_a_clear_error_naming_the_file(spring_file, tmp_path, damage):
    path = tmp_path / f"{damage}.h5"
    data = spring_file.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("q,p\n1,2\n")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbled":
        path.write_bytes(data[:2048] + bytes(len(data) - 4096) + data[-2048:])
    expected = {
        "missing": "does not exist", "empty": "is empty (0 bytes)", "text": "is not an HDF5 file",
        "truncated": "corrupted or truncated", "garbled": "",
    }[damage]
    problems = validate(path)
    assert problems and all(str(path) in p for p in problems)
    assert expected in problems[0]
    with pytest.raises(DatasetError, match=str(path)):
        load_dataset(path)
    assert spring_file.read_bytes() == data  # the source is untouched


# -- atomic writes --------------------------------------------------------------------------------------


def test_existing_file_is_never_overwritten_without_overwrite(spring_file):
    before = spring_file.read_bytes()
    with pytest.raises(DatasetError, match=r"already exists; pass --overwrite \(overwrite=True\) to replace it"):
        write_dataset(spring_file, small_result(seed=5))
    assert spring_file.read_bytes() == before
    write_dataset(spring_file, small_result(seed=5), overwrite=True)
    assert not torch.equal(load_dataset(spring_file).splits["train"].state[:, 0], torch.from_numpy(
        h5py.File(_copy_bytes(before, spring_file.parent / "old.h5"))["train/state"][:, 0]))


def _copy_bytes(data: bytes, path: Path) -> Path:
    path.write_bytes(data)
    return path


def test_failure_inside_write_dataset_keeps_the_old_file(spring_file, monkeypatch):
    before = spring_file.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", fail)
    with pytest.raises(OSError, match="disk full"):
        write_dataset(spring_file, small_result(seed=9), overwrite=True)
    assert spring_file.read_bytes() == before
    assert sorted(os.listdir(spring_file.parent)) == ["spring.h5"]


# -- recipes ----------------------------------------------------------------------------------------------

# Published values (REFERENCE.md); ``None`` where the paper gives none.
PUBLISHED = {
    "greydanus-spring": dict(system="mass_spring", params={"k": 2.0, "m": 0.5, "radius": (0.1, 1.0)},
                             n_traj=50, t_end=3.0, n_times=30, noise_std=0.1, splits=(0.5, 0.0, 0.5)),
    "greydanus-pendulum": dict(system="pendulum", params={"m": 0.5, "l": 1.0, "g": 6.0, "radius": (1.3, 2.3)},
                               n_traj=50, t_end=3.0, n_times=45, noise_std=0.1, splits=(0.5, 0.0, 0.5)),
    "greydanus-2body": dict(system="two_body", params={"masses": (1.0, 1.0), "G": 1.0, "position_range": (0.5, 1.5),
                                                        "orbit_noise": 0.05},
                            n_traj=1000, t_end=20.0, n_times=50, noise_std=0.0, splits=(0.8, 0.0, 0.2)),
    "greydanus-3body": dict(system="three_body", params={"radius": (0.9, 1.2), "velocity_noise": 0.2},
                            n_traj=5000, t_end=5.0, n_times=20, noise_std=0.0, splits=(0.8, 0.0, 0.2)),
    "lnn-double-pendulum": dict(system="double_pendulum",
                                params={"m1": 1.0, "m2": 1.0, "l1": 1.0, "l2": 1.0, "g": 9.8,
                                        "angle_range": (0.0, 2 * math.pi), "velocity_range": (-10.0, 10.0)},
                                n_traj=None, t_end=None, n_times=1, noise_std=0.0, splits=None),
    "chnn-chain-pendulum": dict(system="chain_pendulum", params={}, n_traj=None, t_end=3.0, n_times=101,
                                noise_std=0.0, splits=None),
    "chnn-chain-pendulum-cartesian": dict(system="chain_pendulum_cartesian", params={"n": 3}, n_traj=1000, t_end=3.0,
                                          n_times=101, noise_std=0.0, splits=(0.8, 0.1, 0.1)),
    "dm-spring": dict(system="mass_spring", params={"k": 2.0, "m": 0.5, "radius": (0.1, 1.0)},
                      n_traj=70_000, t_end=12.75, n_times=256, noise_std=0.0, splits=(5 / 7, 0.0, 2 / 7)),
    "dm-pendulum": dict(system="pendulum", params={"m": 0.5, "l": 1.0, "g": 3.0, "radius": (1.3, 2.3)},
                        n_traj=70_000, t_end=12.75, n_times=256, noise_std=0.0, splits=(5 / 7, 0.0, 2 / 7)),
}


def test_every_recipe_is_in_the_published_table():
    assert sorted(RECIPES.names()) == sorted(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_recipe_matches_published_parameters(name):
    recipe, expected = get_recipe(name), PUBLISHED[name]
    assert recipe.system == expected["system"]
    for key, value in expected["params"].items():
        assert recipe.system_params[key] == value, key
    for key in ("n_traj", "t_end", "n_times", "noise_std", "splits"):
        if expected[key] is not None:
            assert getattr(recipe, key) == expected[key], key
    assert recipe.differences  # each recipe says how it differs from the published one


def test_lnn_and_chnn_recipes_published_details():
    lnn = get_recipe("lnn-double-pendulum")
    assert (lnn.test_set.n_traj, lnn.test_set.t_end, lnn.test_set.n_times) == (40, 100.0, 1001)  # 10 per unit time
    assert lnn.test_set.system_params["velocity_range"] == (0.0, 0.1)
    chnn = get_recipe("chnn-chain-pendulum")
    assert math.isclose(chnn.dt, 0.03) and chnn.random_parameters
    assert round(chnn.n_traj * chnn.splits[0]) == 800 and round(chnn.n_traj * chnn.splits[2]) == 100


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_recipe_builds_small_valid_datasets(name, tmp_path):
    overrides = {"n_traj": 8}
    if PUBLISHED[name]["n_times"] > 60:
        overrides["n_times"], overrides["t_end"] = 11, 10 * get_recipe(name).dt
    recipe = get_recipe(name, **overrides)
    if recipe.test_set is not None:
        recipe = recipe.with_overrides(test_set=type(recipe.test_set)(
            n_traj=2, t_end=1.0, n_times=11, system_params=recipe.test_set.system_params))
    try:
        result = recipe.build(seed=0)
    except UnknownNameError as exc:
        pytest.skip(f"system of {name} not available yet: {exc}")
    path = write_dataset(tmp_path / f"{name}.h5", result)
    assert validate(path) == []
    n = sum(s.n_traj for s in result.splits.values())
    assert n == 8 + (2 if recipe.test_set else 0)
    assert result.metadata["recipe"]["name"] == name
    assert result.energy_spread() < 1e-9  # conservative systems, dopri8 at 1e-12


def test_greydanus_spring_published_sizes_and_grid():
    result = get_recipe("greydanus-spring").build(seed=0)
    assert result.sizes() == {"train": (25, 30), "test": (25, 30)}
    t = result.splits["train"].t
    assert math.isclose(float(t[-1]), 3.0, rel_tol=1e-12) and math.isclose(result.metadata["dt"], 3 / 29)
    radius = result.splits["train"].clean_state[:, 0].norm(dim=-1)
    assert float(radius.min()) >= 0.1 and float(radius.max()) <= 1.0


def test_published_quirks_switch_the_ground_truth_and_wrap_lnn_angles():
    spring = get_recipe("greydanus-spring", n_traj=4, published_quirks=True).build(0)
    assert spring.metadata["integrator"]["name"] == "dopri5"
    assert spring.metadata["integrator"]["atol"] == 1e-6 and spring.metadata["integrator"]["rtol"] == 1e-10
    lnn = get_recipe("lnn-double-pendulum", n_traj=50, published_quirks=True)
    lnn = lnn.with_overrides(test_set=type(lnn.test_set)(n_traj=2, t_end=1.0, n_times=5))
    result = lnn.build(0)
    angles = result.splits["train"].state[..., :2]
    assert float(angles.min()) >= -math.pi and float(angles.max()) < math.pi
    plain = get_recipe("lnn-double-pendulum", n_traj=50).with_overrides(test_set=lnn.test_set).build(0)
    assert float(plain.splits["train"].state[..., :2].max()) > math.pi  # U(0, 2 pi) kept unwrapped
    wrapped = torch.remainder(plain.splits["train"].state[..., :2] + math.pi, 2 * math.pi) - math.pi
    assert torch.allclose(wrapped, angles, atol=1e-12)


def test_unknown_recipe_and_override():
    with pytest.raises(UnknownNameError, match="unknown recipe 'greydanus-sping'. Did you mean 'greydanus-spring'"):
        get_recipe("greydanus-sping")
    with pytest.raises(InvalidArgumentError, match="recipe 'dm-spring' has no field 'n_trajectories'"):
        get_recipe("dm-spring", n_trajectories=3)


def test_simulate_progress_lines_outside_a_terminal_leave_the_data_bit_identical(capsys, monkeypatch):
    """Outside a terminal (pytest captures stderr) progress=True prints plain lines (here at every chunk: the
    interval patched to 0) from the same loop, streamed: the states equal the silent run's bit for bit."""
    import hnnlab.evaluate as evaluate
    from hnnlab.data import simulate
    from hnnlab.systems import get_system

    kwargs = {"dt": 0.05, "n_steps": 200, "integrator": "leapfrog", "substeps": 2, "batch_size": 3, "seed": 1}
    quiet = simulate(get_system("pendulum"), 7, **kwargs)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(evaluate._ProgressLines.__init__, "__defaults__", (0.0,))
    shown = simulate(get_system("pendulum"), 7, progress=True, **kwargs)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) >= 10 and all(line.startswith("simulate: ") for line in lines)
    done = [int(line.split(": ")[1].split("/")[0].replace(",", "")) for line in lines]
    assert done == sorted(done) and all(f"/{7 * 400:,} trajectory-steps (" in line for line in lines)
    for name, split in quiet.splits.items():
        assert torch.equal(split.state, shown.splits[name].state)
        assert torch.equal(split.energy, shown.splits[name].energy)

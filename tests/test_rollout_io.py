"""Tests of the rollout file (hnnlab.rollout_io): the streaming atomic writer and the validating reader."""

from __future__ import annotations

import os

import h5py
import pytest
import torch

from hnnlab.errors import InvalidArgumentError
from hnnlab.integrators import get_integrator
from hnnlab.rollout import rollout
from hnnlab.rollout_io import RolloutFileError, RolloutWriter, read_rollout
from hnnlab.systems import Pendulum
from tests._rollout_helpers import BAD_FILES, grid, make_bad_file, pendulum_states, write_rollout

DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_rollout_file_round_trip_in_batches(tmp_path, dtype):
    system = Pendulum()
    x0 = pendulum_states(5, dtype=dtype)
    path = write_rollout(tmp_path / "r.h5", system, "leapfrog", x0, 0.05, 300, 3, reference=True, batch=2)
    r = read_rollout(path)
    expected = rollout(system, "leapfrog", x0, 0.05, 300, save_every=3)
    assert r.state.dtype == dtype and r.state.shape == (5, 101, 2)
    assert torch.equal(r.state, expected) and torch.equal(r.reference, expected)
    assert torch.allclose(r.t, grid(101, 0.15), atol=1e-12)
    assert r.first_nonfinite_step.tolist() == [-1] * 5
    assert r.metadata.system == system.describe() and r.metadata.integrator["name"] == "leapfrog"
    assert r.metadata.save_every == 3 and r.metadata.dt == 0.05 and r.metadata.command == "pytest"
    assert r.system() == system and r.integrator().name == "leapfrog"
    with h5py.File(path) as f:
        assert f.attrs["schema"] == "hnnlab.rollout" and f.attrs["schema_version"] == 2
        assert f["state"].chunks == (1, 256, 2)  # chunked along time
    part = read_rollout(path, trajectories=slice(1, 3))
    assert torch.equal(part.state, expected[1:3])


def test_rollout_writer_is_atomic_and_refuses_to_overwrite(tmp_path):
    meta = {"integrator": get_integrator("leapfrog").describe(), "dt": 0.1}
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with RolloutWriter(path, 2, 1, torch.float64, meta) as writer:
            writer.append(torch.zeros(2, 3, 2))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []  # no target, no temporary file
    with RolloutWriter(path, 2, 1, torch.float64, meta) as writer:
        writer.append(torch.zeros(2, 3, 2))
    with pytest.raises(InvalidArgumentError, match="already exists; pass overwrite=True"):
        RolloutWriter(path, 2, 1, torch.float64, meta)
    with RolloutWriter(path, 2, 1, torch.float64, meta, overwrite=True) as writer:
        writer.append(torch.ones(2, 4, 2))
    assert read_rollout(path).state.shape == (2, 4, 2)
    # an incomplete trajectory that was not marked non-finite is refused, and nothing is written
    other = tmp_path / "incomplete.h5"
    with pytest.raises(InvalidArgumentError, match="trajectory 1 has 3 saved states but others have 5"):
        with RolloutWriter(other, 2, 1, torch.float64, meta) as writer:
            writer.append(torch.zeros(1, 5, 2), start=0)
            writer.append(torch.zeros(1, 3, 2), start=1)
    assert sorted(os.listdir(tmp_path)) == ["out.h5"]


def test_rollout_writer_rejects_bad_chunks(tmp_path):
    meta = {"integrator": get_integrator("leapfrog").describe(), "dt": 0.1}
    with RolloutWriter(tmp_path / "a.h5", 2, 1, torch.float64, meta, with_reference=True) as writer:
        with pytest.raises(InvalidArgumentError, match=r"states must be a floating tensor \(batch, chunk_len, 2"):
            writer.append(torch.zeros(2, 3, 4), reference=torch.zeros(2, 3, 4))
        with pytest.raises(InvalidArgumentError, match="pass reference= with each chunk"):
            writer.append(torch.zeros(2, 3, 2))
        with pytest.raises(InvalidArgumentError, match="does not fit n_traj = 2"):
            writer.append(torch.zeros(2, 3, 2), reference=torch.zeros(2, 3, 2), start=1)
        writer.append(torch.zeros(2, 3, 2), reference=torch.zeros(2, 3, 2))
    with pytest.raises(InvalidArgumentError, match="metadata.dt must be a finite number > 0, got -1"):
        RolloutWriter(tmp_path / "b.h5", 2, 1, torch.float64, {"integrator": {"name": "rk4"}, "dt": -1})


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_give_clear_errors_naming_file_and_field(tmp_path, kind):
    path = make_bad_file(tmp_path, kind)
    with pytest.raises(RolloutFileError) as info:
        read_rollout(path)
    assert str(path) in str(info.value) and BAD_FILES[kind] in str(info.value)


def test_a_stop_signal_stops_the_writer_at_the_next_chunk_and_leaves_nothing(tmp_path):
    """Under hnnlab._hdf5.stop_on_signals, a SIGTERM that h5py swallowed (the flag set, nothing raised) stops
    the rollout at the next append; the previous file at the target is intact and no temporary remains."""
    import signal

    from hnnlab import _hdf5
    from hnnlab.rollout_io import RolloutMetadata

    target = tmp_path / "r.h5"
    target.write_bytes(b"previous")
    meta = RolloutMetadata(integrator={"name": "leapfrog"}, dt=0.1)
    chunk = torch.zeros(2, 3, 2, dtype=torch.float64)
    with pytest.raises(_hdf5.Interrupted) as info:
        with _hdf5.stop_on_signals(), RolloutWriter(target, 2, 1, torch.float64, meta, overwrite=True) as writer:
            writer.append(chunk)
            _hdf5._received = signal.SIGTERM
            writer.append(chunk)
    assert info.value.exit_code == 143
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["r.h5"]

"""The command line (hnnlab.cli and hnnlab.commands): every subcommand in-process through ``main``, its exit codes,
its one-line errors and what it writes. The training commands (``hnnlab fit/validate/test``) are in
tests/test_training_cli.py, ``hnnlab reproduce`` in tests/test_reproduce_<paper>.py."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hnnlab.audit import audit_file
from hnnlab.cli import main
from hnnlab.data import load_dataset, read_metadata
from hnnlab.errors import HnnlabError
from hnnlab.rollout_io import read_rollout
from hnnlab.systems import Pendulum, get_system
from tests._data_helpers import copy_file
from tests._rollout_helpers import BAD_FILES, make_bad_file, pendulum_states, write_rollout

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


# -- hnnlab rollout --------------------------------------------------------------------------------


def test_rollout_command_streams_prediction_and_exact_reference(hnn_checkpoint: Path, spring8: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "rollout.h5"
    code = main(["rollout", "--ckpt", str(hnn_checkpoint), "--data", str(spring8), "--split", "test",
                 "--steps", "300", "--save-every", "10", "--n-init", "3", "--out", str(out)])
    assert code == 0
    r = read_rollout(out)
    assert r.state.shape == (3, 31, 2) and r.reference.shape == (3, 31, 2)
    assert r.metadata.checkpoint == str(hnn_checkpoint)
    assert r.metadata.integrator["name"] == "implicit_midpoint"  # the default for a general learned H
    # The reference is the true spring integrated on the same grid: equal to the exact solution.
    system = get_system("mass_spring")
    t = torch.arange(31, dtype=torch.float64) * 10 * r.metadata.dt
    exact = system.exact_solution(r.reference[:, 0], t)
    assert torch.allclose(r.reference, exact, atol=1e-8)
    # The prediction starts at the clean test states and is the model's own trajectory.
    assert torch.equal(r.state[:, 0], r.reference[:, 0])
    assert not torch.allclose(r.state[:, -1], r.reference[:, -1], atol=1e-3)
    # An existing output is kept unless --overwrite.
    assert main(["rollout", "--ckpt", str(hnn_checkpoint), "--data", str(spring8), "--steps", "10",
                 "--out", str(out)]) == 2
    assert read_rollout(out).state.shape == (3, 31, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "val"], "--split 'val' is not a non-empty split"),
        (["--n-init", "0"], "--n-init must be between 1 and 4"),
        (["--integrator", "leapfrog"], "is symplectic only for a separable H"),
    ],
)
def test_rollout_command_bad_input(args, message, hnn_checkpoint, spring8, tmp_path, capsys) -> None:
    out = tmp_path / "r.h5"
    code = main(["rollout", "--ckpt", str(hnn_checkpoint), "--data", str(spring8), "--steps", "5",
                 "--out", str(out), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# -- hnnlab audit ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_audit_of_a_bad_file_is_a_one_line_error_naming_it(tmp_path, kind, capsys):
    path = make_bad_file(tmp_path, kind)
    with pytest.raises(HnnlabError):
        audit_file(path)
    assert main(["audit", str(path), "--json", str(tmp_path / "report.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hnnlab audit: error:") and str(path) in err[0]
    assert not (tmp_path / "report.json").exists()


def test_cli_exit_codes_json_and_plots(tmp_path, capsys):
    path = write_rollout(tmp_path / "r.h5", Pendulum(), "leapfrog", pendulum_states(3), 0.1, 400, 4, reference=True)
    report_path, plots = tmp_path / "report.json", tmp_path / "plots"
    ok = main(["audit", str(path), "--json", str(report_path), "--plots", str(plots),
                   "--max-energy-error", "0.05", "--bounded-energy", "--max-symplecticity-error", "1e-12"])
    assert ok == 0
    data = json.loads(report_path.read_text())
    assert data["passed"] is True and data["failures"] == []
    assert data["energy"]["verdict"] == "bounded" and data["accuracy"]["mse"] == 0.0
    assert data["structure"]["symplecticity_error"] < 1e-12
    assert sorted(p.name for p in plots.iterdir()) == [
        "energy_error.png", "phase_portrait.png", "prediction_vs_reference.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots.iterdir())
    capsys.readouterr()
    max_error = data["energy"]["max_error"]
    failed = main(["audit", str(path), "--json", str(report_path), "--overwrite", "--max-energy-error", "1e-6",
                   "--quiet"])
    assert failed == 1
    err = capsys.readouterr().err
    assert f"FAILED max_energy_error: {max_error:.4g} exceeds the limit 1e-06" in err
    data = json.loads(report_path.read_text())
    assert data["passed"] is False and data["failures"][0]["name"] == "max_energy_error"
    assert data["failures"][0]["value"] == pytest.approx(max_error) and data["failures"][0]["limit"] == 1e-6
    assert main(["audit", str(path), "--max-mse", "-1"]) == 2
    assert "threshold max_mse must be a finite number >= 0, got -1.0" in capsys.readouterr().err


# -- hnnlab simulate, hnnlab data check ------------------------------------------------------------


def test_cli_simulate_recipe_then_check(tmp_path, capsys):
    out = tmp_path / "data" / "spring.h5"
    args = ["simulate", "--recipe", "greydanus-spring", "--n-traj", "6", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "train 3 x 30, test 3 x 30" in text and "energy spread" in text
    meta = read_metadata(out)
    assert meta["command"].startswith("hnnlab simulate --recipe greydanus-spring --n-traj 6")
    assert main(["data", "check", str(out)]) == 0
    assert "valid (hnnlab.dataset v1, system mass_spring" in capsys.readouterr().out
    before = out.read_bytes()
    assert main(["simulate", "--recipe", "greydanus-spring", "--n-traj", "4", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before


def test_cli_simulate_system_with_grid(tmp_path, capsys):
    out = tmp_path / "p.h5"
    args = ["simulate", "--system", "pendulum", "--param", "g=3.0", "--n-traj", "5", "--dt", "0.05", "--t-end", "1",
            "--integrator", "rk4", "--substeps", "4", "--splits", "0.6,0.2,0.2", "--out", str(out),
            "--dtype", "float32"]
    assert main(args) == 0
    data = load_dataset(out)
    assert data.metadata["system"]["params"]["g"] == 3.0 and data.splits["train"].state.shape == (3, 21, 2)
    assert data.metadata["integrator"]["substeps"] == 4
    bad_grid = ["simulate", "--system", "pendulum", "--dt", "0.3", "--t-end", "1", "--out", str(tmp_path / "q.h5")]
    assert main(bad_grid) == 2
    assert "--t-end 1.0 is not a whole number of steps of --dt 0.3" in capsys.readouterr().err
    assert not (tmp_path / "q.h5").exists()


def test_cli_data_check_lists_problems(spring_file, tmp_path, capsys):
    bad = copy_file(spring_file, tmp_path / "bad.h5")
    with h5py.File(bad, "a") as f:
        del f["train/t"]
        f["test/state"][1, 2, 1] = np.inf
    assert main(["data", "check", str(bad)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        f"{bad}: /train/t: missing dataset",
        f"{bad}: /test/state: non-finite value (NaN or inf) at index (1, 2, 1)",
        f"{bad}: 2 problems; not a valid hnnlab dataset",
    ]

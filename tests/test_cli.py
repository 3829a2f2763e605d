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
    assert "valid (hnnlab.dataset v2, system mass_spring" in capsys.readouterr().out
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


def test_cli_simulate_observe_q_round_trip_through_data_check(tmp_path, capsys):
    """--observe q: the states stay clean, the observations are the clean positions at t[::every] plus the
    noise of one generator seeded --observe-seed (train split first, then test), and data check names the model."""
    from hnnlab.data.observations import make_observations

    out = tmp_path / "p.h5"
    assert main(["simulate", "--recipe", "greydanus-pendulum", "--n-traj", "4", "--observe", "q", "--noise-std",
                 "0.05", "--observe-every", "2", "--observe-seed", "7", "--out", str(out), "--no-progress"]) == 0
    assert ("  observations: q (q) every 2 saved time(s), 23 times per trajectory, noise_std 0.05, seed 7; the "
            "states are stored clean") in capsys.readouterr().out
    data = load_dataset(out)
    assert data.metadata["observation"] == {"observe": "q", "noise_std": 0.05, "every": 2, "names": ["q"], "seed": 7}
    assert data.metadata["noise_std"] == 0.0
    generator = torch.Generator().manual_seed(7)
    for name in ("train", "test"):
        split = data.splits[name]
        assert torch.equal(split.state, split.clean)  # no noise on the states
        obs_t, obs, _ = make_observations(split.clean, split.t, observe="q", noise_std=0.05, every=2,
                                          state_names=["q", "p"], dof=1, generator=generator)
        assert torch.equal(split.observed_t, split.t[::2]) and torch.equal(split.observed, obs)
    assert main(["data", "check", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  observations: q (q) every 2 saved time(s), noise_std 0.05, seed 7"
    ]


def test_cli_simulate_observe_moves_the_recipes_noise_to_the_observations(tmp_path):
    out = tmp_path / "p.h5"
    assert main(["simulate", "--recipe", "greydanus-pendulum", "--n-traj", "2", "--observe", "state",
                 "--out", str(out), "--no-progress"]) == 0
    data = load_dataset(out)
    assert data.metadata["observation"]["noise_std"] == 0.1  # the recipe's noise_std
    assert data.metadata["observation"]["seed"] == 1  # --seed 0 + 1
    split = data.splits["train"]
    assert torch.equal(split.state, split.clean)
    residual = split.observed - split.clean
    assert split.observed.shape == (1, 45, 2) and 0.05 < float(residual.std()) < 0.15


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (["--observe-every", "2"], "--observe-every needs --observe q or --observe state"),
        (["--observe-seed", "3"], "--observe-seed needs --observe q or --observe state"),
        (["--observe", "q", "--observe-every", "0"], "--observe-every must be an integer >= 1, got 0"),
        (["--observe", "q", "--observe-seed", "-1"], "--observe-seed must be an integer >= 0, got -1"),
    ],
)
def test_cli_simulate_observe_bad_input(args, first_line, tmp_path, capsys):
    out = tmp_path / "p.h5"
    assert main(["simulate", "--recipe", "greydanus-pendulum", *args, "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"hnnlab simulate: error: {first_line}"]
    assert not out.exists()


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


# -- hnnlab identify -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def observed_pendulum(tmp_path_factory) -> Path:
    """The greydanus-pendulum recipe (g = 6, 25 training trajectories x 45 times over 3 s) with positions observed
    under noise 0.05."""
    out = tmp_path_factory.mktemp("identify") / "pend.h5"
    assert main(["simulate", "--recipe", "greydanus-pendulum", "--observe", "q", "--noise-std", "0.05",
                 "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.parametrize("method", ["enkf", "gradient"])
def test_identify_recovers_the_pendulums_g_from_noisy_positions(method, observed_pendulum, tmp_path, capsys):
    """The done-when of issue 17: started at g = 3, each method finds g = 6 within 2 % with the truth inside three
    reported standard deviations, and writes the JSON it prints."""
    out = tmp_path / "g.json"
    assert main(["identify", "--data", str(observed_pendulum), "--system", "pendulum", "--params", "g", "--method",
                 method, "--init", "g=3.0", "--json", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    g = report["parameters"]["g"]
    assert abs(g["estimate"] - 6.0) / 6.0 < 0.02 and abs(g["estimate"] - 6.0) < 3 * g["std"]
    assert g["init"] == 3.0 and g["file_value"] == 6.0
    assert report["method"] == method and report["n_traj"] == 25 and report["n_obs"] == 45
    assert 0.04 < report["residual"] < 0.06 and report["seconds"] > 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"pendulum from 25 trajectories x 45 observations (q, noise_std 0.05), method {method}:"
    assert lines[1] == (f"  g = {g['estimate']:.6g} +- {g['std']:.2g}   (started at 3; the file records 6)")


def _write_unobserved(tmp_path: Path) -> Path:
    out = tmp_path / "plain.h5"
    assert main(["simulate", "--recipe", "greydanus-pendulum", "--n-traj", "2", "--out", str(out),
                 "--no-progress"]) == 0
    return out


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (["--params", "G"], "--params G: pendulum has no parameter 'G'; its parameters are: m, l, g"),
        (["--params", "g", "--init", "g=3.0", "--bounds", "g=4,8"],
         "parameter 'g': initial value 3.0 lies outside its bounds (4.0, 8.0); choose an initial value strictly "
         "inside"),
        (["--params", "g", "--method", "enkf", "--n-ensemble", "1"],
         "--n-ensemble must be an integer >= 2 (an ensemble needs a spread), got 1"),
        (["--params", "g", "--init", "k=2"], "--init names k, which is not in --params (g)"),
        (["--params", "g", "--init", "g"], "--init takes NAME=VALUE items (e.g. --init g=3.0), got 'g'"),
        (["--params", "g", "--system", "mass_spring"],
         "--system mass_spring: {data} holds observations of 'pendulum'; use --system pendulum"),
        (["--params", "g", "--split", "val"], "--split 'val' is not a split of {data} with observations; valid: "
                                              "train, test"),
        ("unobserved", "{data} has no observations; write them with hnnlab simulate --observe q (positions) or "
                       "--observe state"),
        ("existing", "--json file '{json}' already exists; pass --overwrite to replace it"),
    ],
)
def test_identify_bad_input_is_one_line_and_writes_nothing(args, first_line, observed_pendulum, tmp_path, capsys):
    data, out = observed_pendulum, tmp_path / "g.json"
    if args == "unobserved":
        data, args = _write_unobserved(tmp_path), ["--params", "g"]
    if args == "existing":
        out.write_text("previous\n")
        args = ["--params", "g"]
    argv = ["identify", "--data", str(data), "--system", "pendulum", "--method", "gradient", "--json", str(out),
            "--no-progress"]
    capsys.readouterr()
    assert main([*argv, *args]) == 2  # a later --system / --method replaces the one above
    assert capsys.readouterr().err.strip().splitlines() == [
        f"hnnlab identify: error: {first_line.format(data=data, json=out)}"
    ]
    assert not out.exists() or out.read_text() == "previous\n"  # nothing written, an existing file kept
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_identify_refuses_a_separable_only_integrator_in_the_clis_words(tmp_path, capsys):
    data, out = tmp_path / "d.h5", tmp_path / "d.json"
    assert main(["simulate", "--system", "damped_oscillator", "--n-traj", "4", "--dt", "0.1", "--n-steps", "10",
                 "--observe", "state", "--noise-std", "0.02", "--out", str(data), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["identify", "--data", str(data), "--system", "damped_oscillator", "--params", "gamma", "--method",
                 "gradient", "--integrator", "leapfrog", "--json", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("hnnlab identify: error: --integrator leapfrog: integrator 'leapfrog' is symplectic only "
                           "for a separable H") and "allow_nonseparable" not in line
    assert not out.exists()


def test_identify_enkf_without_a_noise_level_asks_for_one(tmp_path, capsys):
    data, out = tmp_path / "exact.h5", tmp_path / "g.json"
    assert main(["simulate", "--recipe", "greydanus-pendulum", "--n-traj", "2", "--observe", "q", "--noise-std", "0",
                 "--out", str(data), "--no-progress"]) == 0
    capsys.readouterr()
    argv = ["identify", "--data", str(data), "--system", "pendulum", "--params", "g", "--method", "enkf", "--json",
            str(out), "--no-progress", "--n-ensemble", "20"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"hnnlab identify: error: {data} records observation noise_std 0; the EnKF needs the noise level: pass "
        "--noise-std X"
    ]
    assert not out.exists()
    assert main([*argv, "--noise-std", "0.01"]) == 0 and json.loads(out.read_text())["method"] == "enkf"


def test_identify_ctrl_c_exits_130_and_leaves_no_json(observed_pendulum, tmp_path, capsys, monkeypatch):
    import hnnlab.identify as identify

    def interrupted(*args, on_step, **kwargs):  # the fit, stopped by Ctrl-C after its first iteration
        on_step(1, 50)
        raise KeyboardInterrupt

    monkeypatch.setattr(identify, "fit_parameters", interrupted)
    out = tmp_path / "g.json"
    assert main(["identify", "--data", str(observed_pendulum), "--system", "pendulum", "--params", "g", "--method",
                 "gradient", "--json", str(out)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "hnnlab identify: stopped by SIGINT (nothing was left half-written)"
    )
    assert list(tmp_path.iterdir()) == []


def test_identify_progress_lines_when_stderr_is_not_a_terminal(observed_pendulum, tmp_path, capsys, monkeypatch):
    import hnnlab.evaluate as evaluate

    monkeypatch.setattr(evaluate._ProgressLines.__init__, "__defaults__", (0.0,))
    argv = ["identify", "--data", str(observed_pendulum), "--system", "pendulum", "--params", "g", "--method",
            "enkf", "--init", "g=3.0", "--n-ensemble", "20", "--trajectories", "2"]
    assert main([*argv, "--json", str(tmp_path / "a.json")]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    done = [int(line.split(": ")[1].split("/")[0]) for line in lines]
    assert all(line.startswith("EnKF: ") and "/45 observation times (" in line for line in lines)
    assert len(lines) >= 5 and done == sorted(done) and done[-1] < 45
    assert main([*argv, "--json", str(tmp_path / "b.json"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


# -- bad input, signals, leftovers and progress of rollout / simulate / audit (issue 13) -------------


def _first_error_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[0]


def _dataset_of(tmp_path: Path, name: str, **params) -> Path:
    from hnnlab.data import simulate, write_dataset

    result = simulate(get_system(name, **params), 2, dt=0.1, n_steps=4, integrator="rk4", splits=(0.0, 0.0, 1.0))
    return write_dataset(tmp_path / f"{name}.h5", result)


def test_rollout_save_every_that_does_not_divide_says_so_once_and_reports_the_steps_run(
    hnn_checkpoint, spring8, tmp_path, capsys
):
    out = tmp_path / "r.h5"
    code = main(["rollout", "--ckpt", str(hnn_checkpoint), "--data", str(spring8), "--steps", "10",
                 "--save-every", "3", "--n-init", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.strip().splitlines() == [
        "hnnlab rollout: warning: --steps 10 is not a multiple of --save-every 3: running 9 steps (the last saved "
        "state); use --steps 9 or 12 to silence this"
    ]
    assert "2 trajectories x 9 steps of" in captured.out
    r = read_rollout(out)
    assert r.state.shape == (2, 4, 2) and r.reference.shape == (2, 4, 2)  # t = 0, 3, 6, 9 steps
    assert torch.allclose(r.t, torch.arange(4, dtype=torch.float64) * 3 * r.metadata.dt)


def test_a_checkpoint_is_refused_on_data_of_another_system_dof_or_coordinates(hnn_checkpoint, spring8, tmp_path,
                                                                            capsys):
    """The checkpoint's HNN (dof 1, canonical) was trained on the spring file: pendulum data (same dof and
    coordinates), Henon-Heiles (dof 2) and a one-link chain pendulum (Lagrangian coordinates) are refused,
    by rollout and by audit --ckpt, naming both sides; nothing is written."""
    pendulum = _dataset_of(tmp_path, "pendulum")
    cases = {
        pendulum: f"checkpoint {str(hnn_checkpoint)!r} was trained on system 'mass_spring' (its training data "
                  f"{str(spring8)!r}), but --data {str(pendulum)!r} is system 'pendulum'",
        _dataset_of(tmp_path, "henon_heiles"): f"checkpoint {str(hnn_checkpoint)!r} holds a model of dof 1 (HNN), "
                                               f"but --data {str(tmp_path / 'henon_heiles.h5')!r} is system "
                                               "'henon_heiles' with dof 2",
        _dataset_of(tmp_path, "chain_pendulum", n=1): f"checkpoint {str(hnn_checkpoint)!r} holds a model in "
                                                      "canonical coordinates, but --data "
                                                      f"{str(tmp_path / 'chain_pendulum.h5')!r} ('chain_pendulum') "
                                                      "is in lagrangian coordinates",
    }
    out = tmp_path / "r.h5"
    for data, message in cases.items():
        code = main(["rollout", "--ckpt", str(hnn_checkpoint), "--data", str(data), "--steps", "5", "--out", str(out)])
        assert code == 2
        assert _first_error_line(capsys).startswith(f"hnnlab rollout: error: {message}")
        assert not out.exists()
    report = tmp_path / "report.json"
    assert main(["audit", str(pendulum), "--ckpt", str(hnn_checkpoint), "--json", str(report)]) == 2
    assert _first_error_line(capsys).startswith(
        f"hnnlab audit: error: {cases[pendulum].replace('--data ', '')}"
    )
    assert not report.exists()
    # the data it was trained on is accepted
    assert main(["rollout", "--ckpt", str(hnn_checkpoint), "--data", str(spring8), "--steps", "5",
                 "--out", str(out)]) == 0


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (["--dt", "0"], "--dt must be a finite number > 0, got 0"),
        (["--dt", "nan"], "--dt must be a finite number > 0, got nan"),
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--save-every", "0"], "--save-every must be >= 1, got 0"),
        (["--save-every", "6"], "--save-every 6 is more than --steps 5: no state after the first would be saved"),
        (["--device", "tpu"], "--device 'tpu' is not a torch device; use cpu, cuda or cuda:N"),
        (["--integrator", "leapfrog"],
         "integrator 'leapfrog' is symplectic only for a separable H = T(p) + V(q), but HNN declares "
         "is_separable=False. Use one of the non-separable methods: {nonseparable}, or pass "
         "--allow-nonseparable to accept a non-symplectic result."),
        (["--allow-nonseparable"], "--allow-nonseparable needs --integrator NAME (a separable-only method)"),
        (["--integrator", "rk4", "--allow-nonseparable"],
         "--allow-nonseparable applies to separable-only methods; 'rk4' accepts any H already"),
    ],
)
def test_rollout_bad_options_are_one_line_in_the_cli_words(args, first_line, hnn_checkpoint, spring8, tmp_path,
                                                          capsys):
    out = tmp_path / "r.h5"
    code = main(["rollout", "--ckpt", str(hnn_checkpoint), "--data", str(spring8), "--steps", "5",
                 "--out", str(out), *args])
    from hnnlab.integrators.base import nonseparable_names

    assert code == 2
    err = capsys.readouterr().err
    first_line = first_line.replace("{nonseparable}", ", ".join(nonseparable_names()))
    assert err.strip().splitlines() == [f"hnnlab rollout: error: {first_line}"]
    assert "metadata." not in err and "allow_nonseparable=True" not in err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA GPU")
@pytest.mark.parametrize("command", ["rollout", "simulate"])
def test_device_cuda_without_a_gpu_is_a_clear_error(command, hnn_checkpoint, spring8, tmp_path, capsys):
    out = tmp_path / "o.h5"
    argv = (["rollout", "--ckpt", str(hnn_checkpoint), "--data", str(spring8), "--steps", "5"] if command == "rollout"
            else ["simulate", "--system", "pendulum", "--n-steps", "5", "--dt", "0.1"])
    assert main([*argv, "--device", "cuda", "--out", str(out)]) == 2
    assert _first_error_line(capsys) == (
        f"hnnlab {command}: error: --device cuda: no CUDA GPU is available on this machine; use --device cpu"
    )
    assert not out.exists()


def test_rollout_allow_nonseparable_runs_leapfrog_with_one_warning_line(hnn_checkpoint, spring8, tmp_path, capsys):
    out = tmp_path / "r.h5"
    code = main(["rollout", "--ckpt", str(hnn_checkpoint), "--data", str(spring8), "--steps", "5",
                 "--integrator", "leapfrog", "--allow-nonseparable", "--out", str(out)])
    assert code == 0
    assert capsys.readouterr().err.strip().splitlines() == [
        "hnnlab rollout: warning: leapfrog is not symplectic for HNN, which declares is_separable=False "
        "(--allow-nonseparable)"
    ]
    assert read_rollout(out).metadata.integrator["name"] == "leapfrog"


def test_rollout_progress_lines_when_stderr_is_not_a_terminal(hnn_checkpoint, spring8, tmp_path, capsys,
                                                             monkeypatch):
    """Not a terminal (pytest captures stderr): plain lines, here one every 0 s (the interval patched), with
    the steps done out of the total; --no-progress prints none."""
    import hnnlab.evaluate as evaluate

    monkeypatch.setattr(evaluate._ProgressLines.__init__, "__defaults__", (0.0,))
    out = tmp_path / "r.h5"
    argv = ["rollout", "--ckpt", str(hnn_checkpoint), "--data", str(spring8), "--steps", "400", "--n-init", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) >= 5
    done = [int(line.split(": ")[1].split("/")[0].replace(",", "")) for line in lines]
    assert all(line.startswith("rollout of 1 trajectories: ") and "/400 steps (" in line for line in lines)
    assert done == sorted(done) and 0 < done[0] and done[-1] < 400
    assert main([*argv, "--out", str(tmp_path / "quiet.h5"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (["--system", "pendulum", "--param", "g=abc"],
         "--param g=abc: g must be a number or a JSON list of numbers (e.g. g=3.0, radius=[1.3,2.3]), got 'abc'"),
        (["--system", "no_such_package_xyz.systems:MySystem"],
         "--system no_such_package_xyz.systems:MySystem: cannot import module 'no_such_package_xyz.systems' "
         "(ModuleNotFoundError: No module named 'no_such_package_xyz'); the module must be importable here: "
         "install its package, or put the directory that holds it on PYTHONPATH (PYTHONPATH=DIR hnnlab simulate ...)"),
        (["--system", "pendulum", "--substeps", "0"], "--substeps must be an integer >= 1, got 0"),
        (["--system", "pendulum", "--n-traj", "0"], "--n-traj must be an integer >= 1, got 0"),
        (["--system", "pendulum", "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["--system", "pendulum", "--noise-std", "-1"], "--noise-std must be a finite number >= 0, got -1"),
        (["--system", "pendulum", "--rtol", "0"], "--rtol must be a finite number > 0, got 0"),
    ],
)
def test_simulate_bad_input_names_the_option_and_what_is_allowed(args, first_line, tmp_path, capsys):
    out = tmp_path / "s.h5"
    assert main(["simulate", *args, "--n-steps", "5", "--dt", "0.1", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"hnnlab simulate: error: {first_line}"]
    assert not out.exists()


def test_list_recipes_shows_real_grids_in_aligned_columns(capsys):
    from hnnlab.data.recipes import RECIPES

    assert main(["simulate", "--list-recipes"]) == 0
    lines = capsys.readouterr().out.rstrip("\n").splitlines()
    header, rows = lines[0], lines[1:]
    assert header.split() == ["NAME", "SYSTEM", "TRAJECTORIES", "TIME", "GRID", "NOISE", "SOURCE"]
    assert len(rows) == len(RECIPES.names())
    for column in ("SYSTEM", "TRAJECTORIES", "TIME GRID", "NOISE", "SOURCE"):
        start = header.index(column)
        assert all(row[start - 2 : start] == "  " and row[start] != " " for row in rows), column
    lnn = next(row for row in rows if row.startswith("lnn-double-pendulum "))
    assert "100000 + 40 test" in lnn
    assert "random states, 1 time each; test: t in [0, 100], 1001 times" in lnn
    spring = next(row for row in rows if row.startswith("greydanus-spring "))
    assert "t in [0, 3], 30 times" in spring
    assert all("t=[0, 0]" not in row for row in rows)


def test_audit_json_refuses_an_existing_report_without_overwrite(tmp_path, capsys):
    path = write_rollout(tmp_path / "r.h5", Pendulum(), "leapfrog", pendulum_states(2), 0.1, 20)
    report = tmp_path / "report.json"
    report.write_text("previous\n")
    assert main(["audit", str(path), "--json", str(report), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"hnnlab audit: error: --json report {str(report)!r} already exists; pass --overwrite to replace it"
    ]
    assert report.read_text() == "previous\n"
    assert main(["audit", str(path), "--json", str(report), "--quiet", "--overwrite"]) == 0
    assert json.loads(report.read_text())["n_traj"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_audit_of_a_dataset_whose_noisy_states_hold_nan_is_refused(spring_file, capsys):
    with h5py.File(spring_file, "a") as f:
        f["test/state"][0, 3, 1] = np.nan
    assert main(["audit", str(spring_file), "--split", "test"]) == 2
    first = _first_error_line(capsys)
    assert first.startswith("hnnlab audit: error: ") and "test/state" in first and "non-finite" in first


def test_audit_ckpt_measures_the_one_step_map_in_the_rollout_dtype(hnn_checkpoint, spring8, tmp_path, capsys):
    """The float32 checkpoint rolled out in float64 with implicit midpoint is symplectic to float64 rounding
    (the map as run); measured in float32 the same map is off by float32 rounding, ~1e-7."""
    from hnnlab.audit import structure
    from hnnlab.integrators import get_integrator
    from hnnlab.training.checkpoint import load_checkpoint

    out, report = tmp_path / "r.h5", tmp_path / "report.json"
    assert main(["rollout", "--ckpt", str(hnn_checkpoint), "--data", str(spring8), "--steps", "20", "--n-init", "2",
                 "--out", str(out)]) == 0
    assert main(["audit", str(out), "--ckpt", str(hnn_checkpoint), "--json", str(report), "--quiet"]) == 0
    data = json.loads(report.read_text())
    assert data["structure"]["field"] == "model" and data["structure"]["integrator"] == "implicit_midpoint"
    assert data["structure"]["symplecticity_error"] < 1e-12
    assert "the model was measured in float32 -> float64" in " ".join(data["structure"]["notes"])
    model32 = load_checkpoint(hnn_checkpoint).model
    x0 = read_rollout(out).state[:, 0].float()
    step = structure.one_step_map(model32, get_integrator("implicit_midpoint"), read_rollout(out).metadata.dt)
    assert float(structure.symplecticity_error(structure.step_jacobian(step, x0)).max()) > 1e-9


# -- signals and leftover temporaries ----------------------------------------------------------------

_TILED_SIMULATE = '''
import dataclasses, importlib, sys
simulate = importlib.import_module("hnnlab.data.simulate")
real = simulate.simulate
def tiled(*args, **kwargs):  # the real simulation, its trajectories repeated: a write of ~100 MB, quickly
    result = real(*args, **kwargs)
    tile = lambda x: None if x is None else x.repeat(50, *([1] * (x.ndim - 1)))
    splits = {name: dataclasses.replace(s, state=tile(s.state), dxdt=tile(s.dxdt), energy=tile(s.energy),
              clean_state=tile(s.clean_state)) for name, s in result.splits.items()}
    return dataclasses.replace(result, splits=splits)
simulate.simulate = tiled
from hnnlab.cli import main
sys.exit(main(sys.argv[1:]))
'''


@pytest.mark.parametrize(("signum", "status", "name"), [(15, 143, "SIGTERM"), (2, 130, "SIGINT")])
def test_a_signal_during_the_simulate_write_stops_it_and_keeps_the_previous_file(tmp_path, signum, status, name):
    """hnnlab simulate in a subprocess, the signal sent as soon as its temporary file appears (the write has
    begun): it stops with the conventional status, the previous file is intact and no temporary remains."""
    import os
    import subprocess
    import sys
    import time

    script = tmp_path / "tiled.py"
    script.write_text(_TILED_SIMULATE)
    target = tmp_path / "out.h5"
    target.write_bytes(b"the previous file")
    argv = [sys.executable, str(script), "simulate", "--system", "pendulum", "--integrator", "leapfrog",
            "--n-traj", "100", "--n-steps", "499", "--dt", "0.01", "--out", str(target), "--overwrite",
            "--no-progress"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".out.h5.*.tmp")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the write never began"
        time.sleep(0.005)
    proc.send_signal(signum)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=120)
    stopped_after = time.monotonic() - sent
    assert proc.returncode == status, (out, err)
    assert err.strip().splitlines()[-1] == f"hnnlab simulate: stopped by {name} (nothing was left half-written)"
    assert "wrote" not in out and "Exception ignored" not in err
    assert target.read_bytes() == b"the previous file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5", "tiled.py"]
    assert stopped_after < 60


def test_the_next_run_removes_stale_temporaries_of_its_target_and_says_so(tmp_path, capsys):
    """A temporary of a writer that is gone (SIGKILL) is removed by the next write of the same target, in one
    line; one of a live process, and the temporaries of another target, are kept."""
    import os
    import subprocess

    from hnnlab._hdf5 import _HOST

    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "s.h5"
    stale = tmp_path / f".s.h5.{_HOST}-{dead.pid}.abcd1234.tmp"
    stale.write_bytes(b"x" * 3000)
    live = tmp_path / f".s.h5.{_HOST}-{os.getppid()}.efgh5678.tmp"
    live.write_bytes(b"y")
    other = tmp_path / f".other.h5.{_HOST}-{dead.pid}.abcd1234.tmp"
    other.write_bytes(b"z")
    assert main(["simulate", "--system", "pendulum", "--n-steps", "3", "--dt", "0.1", "--n-traj", "2",
                 "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().err.strip().splitlines() == [
        f"hnnlab simulate: warning: removed 1 stale temporary file (2.9 KiB) of {str(out)!r} left by an interrupted "
        f"write: {stale.name}; kept 1 that may belong to a running writer: {live.name}"
    ]
    assert not stale.exists() and live.exists() and other.exists() and out.exists()


def test_rollout_refuses_an_existing_output_before_loading_anything(tmp_path, capsys):
    out = tmp_path / "r.h5"
    out.write_bytes(b"previous")
    missing = tmp_path / "missing.ckpt"  # never opened: the target is checked first
    assert main(["rollout", "--ckpt", str(missing), "--data", str(missing), "--steps", "5", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"hnnlab rollout: error: rollout file {str(out)!r} already exists; pass --overwrite to replace it"
    ]
    assert out.read_bytes() == b"previous"


def test_data_check_of_a_missing_file_is_a_bad_argument(tmp_path, capsys):
    missing = tmp_path / "missing.h5"
    assert main(["data", "check", str(missing)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"hnnlab data: error: {str(missing)!r} does not exist; give a dataset file (.h5)"
    ]


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (["--seeds", "0", "-1"], "--seeds must be integers >= 0, got -1"),
        (["--accelerator", "banana"],
         "--accelerator 'banana' is not an accelerator; use one of: cpu, gpu, cuda, mps, auto"),
        pytest.param(["--accelerator", "gpu"],
                     "--accelerator gpu: no CUDA GPU is available on this machine; use --accelerator cpu",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA GPU")),
    ],
)
def test_reproduce_bad_arguments_are_refused_before_any_work(args, first_line, tmp_path, capsys):
    work, results = tmp_path / "work", tmp_path / "results"
    code = main(["reproduce", "greydanus", "--tasks", "spring", "--out", str(work), "--results", str(results), *args])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"hnnlab reproduce: error: {first_line}"]
    assert not work.exists() and not results.exists()


def test_audit_plots_refuses_to_replace_existing_plots_without_overwrite(tmp_path, capsys):
    path = write_rollout(tmp_path / "r.h5", Pendulum(), "leapfrog", pendulum_states(2), 0.1, 20, reference=True)
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "energy_error.png").write_bytes(b"previous")
    (plots / "notes.txt").write_text("the user's own file")
    assert main(["audit", str(path), "--plots", str(plots), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"hnnlab audit: error: --plots {str(plots)!r} already holds energy_error.png; pass --overwrite to replace them"
    ]
    assert (plots / "energy_error.png").read_bytes() == b"previous"
    assert main(["audit", str(path), "--plots", str(plots), "--quiet", "--overwrite"]) == 0
    assert (plots / "energy_error.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (plots / "notes.txt").read_text() == "the user's own file"


@pytest.mark.parametrize("command", ["rollout", "simulate", "audit"])
def test_help_shows_each_default_once(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    expected = {
        "rollout": ["--save-every SAVE_EVERY save every k-th step (default: 1)",
                    "--device DEVICE torch device (default: cpu)"],
        "simulate": ["--dtype {float64,float32} stored dtype (default: float64)",
                     "--device DEVICE device for the integration (cpu, cuda) (default: cpu)"],
        "audit": ["--split SPLIT dataset split to audit (dataset files; default: test)",
                  "--structure-samples STRUCTURE_SAMPLES states used by the structural checks (default: 16)"],
    }[command]
    for line in expected:
        assert line in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_the_training_system_is_read_from_the_record_then_the_recipe_then_the_data_file(hnn_checkpoint, spring8,
                                                                                      tmp_path, capsys):
    """Where a checkpoint's training system comes from, in order: its own record (checkpoint["hnnlab"]
    ["system"]), the recipe named in the data module's hyperparameters, the dataset file they name; when
    none is known (the file moved), only dof and coordinates are checked and the rollout runs."""
    from hnnlab.evaluate import trained_system

    ckpt = torch.load(hnn_checkpoint, map_location="cpu", weights_only=False)
    variants = {
        "record": ({**ckpt, "hnnlab": {**ckpt["hnnlab"], "system": get_system("pendulum").describe()}},
                   "the checkpoint's record"),
        "recipe": ({**ckpt, "datamodule_hyper_parameters": {"path": None, "recipe": "greydanus-pendulum"}},
                   "its training recipe 'greydanus-pendulum'"),
        "moved": ({**ckpt, "datamodule_hyper_parameters": {"path": str(tmp_path / "gone.h5"), "recipe": None}},
                  "unknown"),
    }
    assert trained_system(hnn_checkpoint) == (read_metadata(spring8)["system"], f"its training data {str(spring8)!r}")
    out = tmp_path / "r.h5"
    for name, (content, origin) in variants.items():
        path = tmp_path / f"{name}.ckpt"
        torch.save(content, path)
        system, found = trained_system(path)
        assert found == origin
        code = main(["rollout", "--ckpt", str(path), "--data", str(spring8), "--steps", "5", "--out", str(out)])
        if name == "moved":
            assert system is None and code == 0
            continue
        assert system["name"] == "pendulum" and code == 2
        assert _first_error_line(capsys).startswith(
            f"hnnlab rollout: error: checkpoint {str(path)!r} was trained on system 'pendulum' ({origin}), but "
            f"--data {str(spring8)!r} is system 'mass_spring'"
        )
        assert not out.exists()


def test_output_into_a_closed_pipe_stops_quietly_with_the_sigpipe_status(monkeypatch, capsys):
    """`hnnlab simulate --list-recipes | head -1`: the reader has gone; no traceback, status 128 + SIGPIPE."""
    import io
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    closed = io.TextIOWrapper(os.fdopen(write_end, "wb", buffering=0), write_through=True)
    monkeypatch.setattr("sys.stdout", closed)
    try:
        assert main(["simulate", "--list-recipes"]) == 141
    finally:
        closed.close()
    assert capsys.readouterr().err == ""


def test_audit_ckpt_refuses_a_checkpoint_of_another_model_than_the_rollout(hnn_checkpoint, spring8, tmp_path,
                                                                          capsys):
    from hnnlab.evaluate import predict_to_file
    from hnnlab.models import SeparableHNN

    torch.manual_seed(0)
    other = SeparableHNN(1, hidden=(8,)).double()
    out = tmp_path / "separable.h5"
    x0 = load_dataset(spring8).splits["test"].clean[:2, 0]
    predict_to_file(other, x0, dt=0.1, n_steps=10, out=out, system=get_system("mass_spring"), progress=False)
    assert main(["audit", str(out), "--ckpt", str(hnn_checkpoint), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"hnnlab audit: error: checkpoint {str(hnn_checkpoint)!r} holds model hnnlab.models.hnn:HNN, but "
        f"{str(out)!r} is a rollout of model hnnlab.models.separable_hnn:SeparableHNN; give the checkpoint the "
        "rollout was made from"
    ]


def test_second_look_cli_mistakes_are_one_line_in_the_commands_words(spring_file, tmp_path, capsys):
    # python -m hnnlab is the same command line
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "hnnlab", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("hnnlab ")
    # an option the subcommand does not have: the subcommand's usage
    with pytest.raises(SystemExit) as exc:
        main(["audit", str(spring_file), "--no-such-option"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: hnnlab audit ") and "unrecognized arguments: --no-such-option" in err
    # --plots naming a file
    note = tmp_path / "notes.txt"
    note.write_text("mine")
    assert main(["audit", str(spring_file), "--plots", str(note)]) == 2
    assert capsys.readouterr().err.strip() == (f"hnnlab audit: error: --plots {str(note)!r} is a file; give a "
                                               "directory for the PNG plots")
    assert note.read_text() == "mine"
    # simulate --out that is not an HDF5 name
    out = tmp_path / "a.txt"
    assert main(["simulate", "--recipe", "greydanus-spring", "--out", str(out)]) == 2
    assert "give a name ending in .h5, .hdf5, .hdf" in capsys.readouterr().err and not out.exists()


def test_audit_split_on_a_rollout_file_is_refused(tmp_path, capsys):
    from hnnlab.systems import Pendulum
    from tests._rollout_helpers import pendulum_states, write_rollout

    path = write_rollout(tmp_path / "r.h5", Pendulum(), "leapfrog", pendulum_states(), 0.1, 10)
    assert main(["audit", str(path), "--split", "train"]) == 2
    assert "--split applies to dataset files" in capsys.readouterr().err

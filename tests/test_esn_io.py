"""The echo state network as a user-facing model (hnnlab/esn_io.py, evaluate.forecast_to_file, `hnnlab esn fit`,
`hnnlab rollout --ckpt ESN.h5`, the audit of its rollout file): fitted on a simulated Henon-Heiles dataset, its
forecast follows the truth where null readouts do not; the file round-trips bit for bit; the rollout file follows
the spec; bad data is refused with exact messages."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import torch

from hnnlab.audit import audit_file
from hnnlab.cli import main
from hnnlab.data import load_dataset, simulate, write_dataset
from hnnlab.data.schema import DatasetError
from hnnlab.errors import InvalidArgumentError
from hnnlab.esn_io import EsnFileError, check_forecast_data, fit_esn, is_esn_file, load_esn, save_esn
from hnnlab.evaluate import forecast_to_file
from hnnlab.rollout_io import DISCRETE_MAP, read_rollout
from hnnlab.systems import get_system

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "henon_heiles_esn.yaml"
WASHOUT, UNITS, WARMUP = 20, 200, 21
# Normalised error ||x_pred - x|| / ||std(x)|| over the first 10 forecast steps (one time unit). Measured on this
# dataset for reservoir seeds 0..4: 2.4e-2, 2.6e-2, 1.5e-2, 2.5e-2, 4.8e-2; the zero readout (persistence,
# x_{k+1} = x_k) 1.04; a random readout of the fitted one's scale 3.8 to 11. The limit is twice the worst seed.
FIRST_STEPS, LIMIT = 10, 0.1
DISCRETE_REASON = "a discrete-time forecaster (esn) has no vector field: no integrator step to check"


def _simulate(path: Path, *, dt: float = 0.1, n_steps: int = 200, energy=(0.05, 0.08)) -> Path:
    system = get_system("henon_heiles", energy_range=energy)  # regular orbits at these energies
    return write_dataset(path, simulate(system, 16, dt=dt, n_steps=n_steps, seed=0, splits=(0.75, 0.0, 0.25)))


@pytest.fixture(scope="module")
def henon_heiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 Henon-Heiles trajectories of 201 states at dt = 0.1: 12 train, 4 test."""
    return _simulate(tmp_path_factory.mktemp("esn") / "hh.h5")


@pytest.fixture(scope="module")
def fitted(henon_heiles: Path):
    return fit_esn(henon_heiles, washout=WASHOUT, n_reservoir=UNITS, seed=0)


def _first_steps_error(model, test: torch.Tensor) -> float:
    pred = model.forecast(test[:, :WARMUP], FIRST_STEPS)  # (n, FIRST_STEPS + 1, 4), from the last warm-up state
    truth = test[:, WARMUP - 1:WARMUP + FIRST_STEPS]
    return float(((pred - truth).norm(dim=-1) / test.std(dim=(0, 1)).norm()).max())


def test_fitted_network_follows_the_truth_and_null_readouts_do_not(fitted, henon_heiles):
    test = load_dataset(henon_heiles).splits["test"].clean  # (4, 201, 4)
    assert fitted.dt == pytest.approx(0.1) and fitted.washout == WASHOUT and fitted.default_warmup == WARMUP
    assert fitted.data == {"path": str(henon_heiles), "split": "train", "n_traj": 12, "n_times": 201}
    assert fitted.fit["n_samples"] == 12 * (200 - WASHOUT) and fitted.system["name"] == "henon_heiles"
    assert _first_steps_error(fitted.model, test) < LIMIT
    model = load_esn_copy(fitted)
    readout = model.w_out.clone()
    model.w_out.zero_()  # persistence: the forecast stays at the last warm-up state
    assert _first_steps_error(model, test) > 5 * LIMIT
    model.w_out.copy_(torch.randn(readout.shape, generator=torch.Generator().manual_seed(0), dtype=readout.dtype)
                      * readout.std())
    assert _first_steps_error(model, test) > 5 * LIMIT


def load_esn_copy(fitted):
    from hnnlab.models.esn import EchoStateNetwork

    model = EchoStateNetwork(**fitted.model.hyperparameters())
    model.load_state_dict(fitted.model.state_dict())
    return model


def test_fit_on_a_file_is_the_fit_on_its_first_trajectories(henon_heiles):
    from hnnlab.models.esn import EchoStateNetwork

    fitted = fit_esn(henon_heiles, trajectories=5, washout=WASHOUT, n_reservoir=30, seed=2)
    direct = EchoStateNetwork(4, 30, seed=2)
    info = direct.fit(load_dataset(henon_heiles).splits["train"].state[:5], washout=WASHOUT)
    assert torch.equal(fitted.model.w_out, direct.w_out) and fitted.fit["train_mse"] == info["train_mse"]
    assert fitted.data["n_traj"] == 5 and fitted.fit["n_samples"] == 5 * (200 - WASHOUT)


def test_file_round_trip_forecasts_bit_for_bit(fitted, henon_heiles, tmp_path):
    path = save_esn(fitted, tmp_path / "esn.h5", command="hnnlab esn fit ...")
    assert is_esn_file(path) and not is_esn_file(henon_heiles) and not is_esn_file(tmp_path / "missing.h5")
    loaded = load_esn(path)
    warm = load_dataset(henon_heiles).splits["test"].clean[:, :WARMUP]
    assert torch.equal(loaded.model.forecast(warm, 150), fitted.model.forecast(warm, 150))
    assert (loaded.dt, loaded.washout, loaded.system, loaded.data) == (fitted.dt, fitted.washout, fitted.system,
                                                                        fitted.data)
    assert loaded.model.hyperparameters() == fitted.model.hyperparameters()
    with pytest.raises(InvalidArgumentError) as excinfo:
        save_esn(fitted, path)
    assert str(excinfo.value) == (f"echo state network file {str(path)!r} already exists; pass --overwrite "
                                  "(overwrite=True) to replace it")


def test_float32_forecast_agrees_with_float64(fitted, henon_heiles):
    warm = load_dataset(henon_heiles).splits["test"].clean[:, :WARMUP]
    reference = fitted.model.forecast(warm, 20)
    model32 = load_esn_copy(fitted).to(torch.float32)
    single = model32.forecast(warm.to(torch.float32), 20)
    assert single.dtype == torch.float32 and model32.w_out.dtype == torch.float32
    # round-off of float32 over 20 steps (measured 2.5e-7 max), far below the forecast error itself
    assert float((single.double() - reference).abs().max()) < 1e-5


def test_broken_files_are_refused(fitted, henon_heiles, tmp_path):
    with pytest.raises(EsnFileError) as excinfo:
        load_esn(henon_heiles)
    assert str(excinfo.value) == (f"{str(henon_heiles)!r}: root attribute 'schema' is 'hnnlab.dataset', expected "
                                  "'hnnlab.esn' (not an hnnlab echo state network file)")
    path = save_esn(fitted, tmp_path / "esn.h5")
    with h5py.File(path, "r+") as f:
        del f["w_out"]
    with pytest.raises(EsnFileError, match=r"missing dataset\(s\) w_out"):
        load_esn(path)


def test_bad_data_is_refused_with_exact_messages(fitted, henon_heiles, tmp_path):
    system = dict(fitted.system)
    where = "data 'x.h5'"
    cases = [
        ((system, 0.05, 201, WARMUP),
         "data 'x.h5' is saved every dt = 0.05, but the echo state network was fitted on dt = 0.1: an echo state "
         "network is a discrete-time map that forecasts only on the step it was fitted on; use data saved every 0.1"),
        ((get_system("pendulum").describe(), 0.1, 201, WARMUP),
         "the echo state network was fitted on system 'henon_heiles', but data 'x.h5' is system 'pendulum'; forecast "
         "data of 'henon_heiles'"),
        ((system, 0.1, 15, WARMUP),
         "data 'x.h5' has 15 states per trajectory, fewer than the warm-up of 21 true states that drive the reservoir "
         "before the forecast; use warmup <= 15"),
        ((system, 0.1, 201, 0),
         "warmup must be an integer >= 1 (true states that drive the reservoir before the forecast), got 0"),
    ]
    for args, message in cases:
        with pytest.raises(InvalidArgumentError) as excinfo:
            check_forecast_data(fitted, *args, where=where)
        assert str(excinfo.value) == message
    with pytest.raises(InvalidArgumentError) as excinfo:
        fit_esn(henon_heiles, washout=200, n_reservoir=20)
    assert str(excinfo.value) == (
        f"split 'train' of {str(henon_heiles)!r} has 201 states per trajectory, too few for washout 200: the fit "
        "needs at least washout + 2 = 202 (a driven state and its successor after the washout); lower the washout "
        "to at most 199")
    with pytest.raises(InvalidArgumentError) as excinfo:
        fit_esn(henon_heiles, trajectories=13, n_reservoir=20)
    assert str(excinfo.value) == (f"trajectories must be an integer in 1..12 (split 'train' of {str(henon_heiles)!r}), "
                                  "got 13")
    with pytest.raises(InvalidArgumentError) as excinfo:
        fit_esn(henon_heiles, split="val", n_reservoir=20)
    assert str(excinfo.value) == f"split 'val' is not a non-empty split of {str(henon_heiles)!r}; valid: train, test"
    nan = tmp_path / "nan.h5"
    nan.write_bytes(henon_heiles.read_bytes())
    with h5py.File(nan, "r+") as f:
        f["train"]["state"][0, 3, 0] = float("nan")
    with pytest.raises(DatasetError) as excinfo:
        fit_esn(nan, washout=WASHOUT, n_reservoir=20)
    assert str(excinfo.value) == f"{nan}: /train/state: non-finite value (NaN or inf) at index (0, 3, 0)"


@pytest.mark.parametrize("save_every", [1, 3])
def test_forecast_file_follows_the_spec_and_is_audited_without_structure(fitted, henon_heiles, tmp_path, save_every):
    data = load_dataset(henon_heiles)
    test = data.splits["test"].clean  # (4, 201, 4)
    out = tmp_path / "esn_rollout.h5"
    summary = forecast_to_file(fitted.model, test[:, :WARMUP], dt=0.1, n_steps=150, out=out, save_every=save_every,
                               t0=float(data.splits["test"].t[WARMUP - 1]), system=data.system,
                               metadata={"checkpoint": "esn.h5"}, progress=False)
    r = read_rollout(out)
    assert summary["n_steps"] == 150 and r.state.shape == (4, 150 // save_every + 1, 4)
    assert r.metadata.integrator["name"] == DISCRETE_MAP and r.integrator() is None
    assert r.metadata.extra == {"warmup": WARMUP} and r.metadata.model["discrete_time"] is True
    assert r.metadata.dt == pytest.approx(0.1) and r.metadata.save_every == save_every
    torch.testing.assert_close(r.t, (2.0 + torch.arange(r.state.shape[1]) * 0.1 * save_every).double())
    # The states are the forecast, every save_every-th; the reference starts at the last warm-up state and is the
    # true flow there: the dataset's own clean states (dopri8 at 1e-12) to the reference method's error.
    assert torch.equal(r.state, fitted.model.forecast(test[:, :WARMUP], 150)[:, ::save_every])
    assert torch.equal(r.state[:, 0], r.reference[:, 0])
    truth = test[:, WARMUP - 1:WARMUP + 150:save_every]
    assert float((r.reference - truth).abs().max()) < 1e-8
    report = audit_file(out, lyapunov=True, lyapunov_steps=200)
    assert report.structure is None
    assert report.skipped["symplecticity"] == report.skipped["reversibility"] == DISCRETE_REASON
    assert report.skipped["model_energy"] == "esn has no energy function"
    assert "lyapunov_model" in report.skipped and report.lyapunov.model_l1 is None
    energy = data.system.energy(r.state)  # the true energy along the forecast judges it: (4, n_times)
    assert report.energy.expected_conserved
    assert report.energy.max_error == pytest.approx(float(((energy - energy[:, :1]) / energy[:, :1]).abs().max()))
    assert report.accuracy.vpt_min > 0.5 and report.lyapunov.reference_l1 < 0.1 and not report.failures()


def test_cli_fit_rollout_audit_end_to_end(henon_heiles, tmp_path, capsys):
    esn = tmp_path / "esn.h5"
    assert main(["esn", "fit", "--config", str(CONFIG), "--data", str(henon_heiles), "--out", str(esn)]) == 0
    assert f"wrote {esn}: echo state network (500 units, seed 0) fitted on 12 trajectories" in capsys.readouterr().out
    fitted = load_esn(esn)
    assert fitted.model.n_reservoir == 500 and fitted.washout == 20 and fitted.model.ridge == 1e-6
    out = tmp_path / "rollout.h5"
    assert main(["rollout", "--ckpt", str(esn), "--data", str(henon_heiles), "--steps", "60", "--n-init", "3",
                 "--dtype", "float32", "--out", str(out), "--no-progress"]) == 0
    r = read_rollout(out)
    assert r.state.dtype == torch.float32 and r.state.shape == (3, 61, 4) and r.metadata.checkpoint == str(esn)
    assert r.metadata.extra == {"warmup": 21} and float(r.t[0]) == pytest.approx(2.0)
    report_path = tmp_path / "report.json"
    assert main(["audit", str(out), "--lyapunov", "--lyapunov-steps", "100", "--json", str(report_path),
                 "--quiet"]) == 0
    report = json.loads(report_path.read_text())
    assert report["skipped"]["symplecticity"] == DISCRETE_REASON and report["lyapunov"]["reference_l1"] is not None
    # A symplecticity threshold on such a rollout fails as not measured, naming the reason.
    assert main(["audit", str(out), "--max-symplecticity-error", "1e-6", "--quiet"]) == 1
    assert f"max_symplecticity_error: not measured ({DISCRETE_REASON})" in capsys.readouterr().err


def test_config_inherits_with_base_and_seed_overrides(henon_heiles, tmp_path):
    child = _write(tmp_path / "child.yaml", f"base: {CONFIG}\nmodel: {{n_reservoir: 60}}\nfit: {{washout: 5}}\n")
    assert main(["esn", "fit", "--config", str(child), "--data", str(henon_heiles), "--out", str(tmp_path / "a.h5"),
                 "--seed", "3"]) == 0
    a = load_esn(tmp_path / "a.h5")
    # the child's keys win, the base's others stay, --seed wins over the config's model.seed
    assert a.model.hyperparameters() == {"dim": 4, "n_reservoir": 60, "spectral_radius": 0.9, "leak": 1.0,
                                         "input_scale": 0.5, "density": 0.05, "ridge": 1e-6, "seed": 3}
    assert a.washout == 5 and a.default_warmup == 6
    direct = fit_esn(henon_heiles, washout=5, n_reservoir=60, seed=3, ridge=1e-6)
    assert torch.equal(a.model.w_out, direct.model.w_out)


def test_cli_refusals_are_one_line_and_write_nothing(henon_heiles, hnn_checkpoint, tmp_path, capsys):
    esn = tmp_path / "esn.h5"
    assert main(["esn", "fit", "--data", str(henon_heiles), "--out", str(esn)]) == 0
    other_step = _simulate(tmp_path / "hh_dt005.h5", dt=0.05, n_steps=100)
    out = tmp_path / "r.h5"
    base = ["rollout", "--ckpt", str(esn), "--data", str(henon_heiles), "--steps", "10", "--out", str(out)]
    name = f"echo state network {str(esn)!r}"
    cases = [
        (base + ["--dt", "0.05"],
         f"--dt 0.05: {name} was fitted on dt = 0.1 and forecasts only on that step (the dataset's); leave --dt out"),
        (base + ["--integrator", "rk4"],
         f"--integrator applies to vector-field models; {name} is a discrete-time map, which no integrator steps"),
        (base + ["--warmup", "300"],
         f"--data {str(henon_heiles)!r} split 'test' has 201 states per trajectory, fewer than the warm-up of 300 "
         "true states that drive the reservoir before the forecast; use --warmup <= 201"),
        (["rollout", "--ckpt", str(esn), "--data", str(other_step), "--steps", "10", "--out", str(out)],
         f"--data {str(other_step)!r} split 'test' is saved every dt = 0.05, but {name} was fitted on dt = 0.1: an "
         "echo state network is a discrete-time map that forecasts only on the step it was fitted on; use data saved "
         "every 0.1"),
        (["rollout", "--ckpt", str(hnn_checkpoint), "--data", str(henon_heiles), "--steps", "10", "--warmup", "5",
          "--out", str(out)],
         f"--warmup applies to echo state network files (hnnlab esn fit); {str(hnn_checkpoint)!r} is a checkpoint of "
         "a vector field, which starts from one state"),
        (["audit", str(henon_heiles), "--ckpt", str(esn)],
         f"--ckpt {str(esn)!r} is an echo state network file: a discrete-time forecaster has no vector field whose "
         "one-step map or energy could be checked; audit its rollout file without --ckpt"),
        (["esn", "fit", "--data", str(henon_heiles), "--out", str(tmp_path / "e2.h5"), "--config",
          str(_write(tmp_path / "bad.yaml", "model: {units: 10}\n"))],
         f"config {str(tmp_path / 'bad.yaml')!r}: unknown key model.units; allowed: model.n_reservoir, "
         "model.spectral_radius, model.leak, model.input_scale, model.density, model.ridge, model.seed"),
        (["esn", "fit", "--out", str(tmp_path / "e2.h5")], "no dataset: give --data FILE.h5 or data.path in --config"),
    ]
    capsys.readouterr()
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"hnnlab {argv[0]}: error: {message}"]
    assert not out.exists() and not (tmp_path / "e2.h5").exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_forecast_that_overflows_is_recorded_at_its_first_nonfinite_step(fitted, henon_heiles, tmp_path):
    data = load_dataset(henon_heiles)
    warm = data.splits["test"].clean[:, :WARMUP]
    model = load_esn_copy(fitted)
    model.w_out[1:5] = torch.eye(4, dtype=model.w_out.dtype)  # the increment's u-term: u_{k+1} ~ 2 u_k, overflows
    pred = model.forecast(warm, 1100)  # (4, 1101, 4)
    bad = ~torch.isfinite(pred).all(dim=-1)
    first = [int(row.nonzero()[0]) for row in bad]  # every row overflows after about 1000 doublings
    out = tmp_path / "overflow.h5"
    forecast_to_file(model, warm, dt=0.1, n_steps=1100, out=out, t0=2.0, progress=False)  # no reference: fast
    r = read_rollout(out)
    assert r.first_nonfinite_step.tolist() == first and min(first) > 900
    report = audit_file(out, check_structure=False)
    assert report.nonfinite.n_nonfinite == 4 and report.nonfinite.first_step == min(first)
    assert report.nonfinite.per_trajectory_step == first and report.nonfinite.first_time == pytest.approx(
        2.0 + 0.1 * min(first))
    assert [f.name for f in report.failures()] == ["allow_nonfinite"]


def test_hnnlab_fit_on_the_esn_config_names_the_command_that_fits_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(CONFIG)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "hnnlab fit: error: Subcommand 'fit' does not accept option 'model.n_reservoir'",
        "(an echo state network config: its readout is fitted in closed form by hnnlab esn fit --config FILE)",
        "(hnnlab fit --help lists the options)",
    ]
    assert list(tmp_path.iterdir()) == []  # nothing written

"""The command line (hnnlab.cli and hnnlab.commands): every subcommand in-process through ``main``, its exit codes,
its one-line errors and what it writes. The training commands (``hnnlab fit/validate/test``) are in
tests/test_training_cli.py, ``hnnlab reproduce`` in tests/test_reproduce_<paper>.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hnnlab.cli import main
from hnnlab.rollout_io import read_rollout
from hnnlab.systems import get_system

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

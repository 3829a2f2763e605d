"""The audit's constraint drift ``max |Phi(x)|``: round-off for Gauss methods, rk4's error otherwise, measured with the
system's constraints (or a CHNN's own), gated by ``max_constraint_violation``, in rows, JSON and ``hnnlab audit``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hnnlab.audit import Thresholds, audit_trajectories
from hnnlab.cli import main
from hnnlab.data import write_dataset
from hnnlab.data.recipes import get_recipe
from hnnlab.integrators import get_integrator
from hnnlab.models import CHNN
from hnnlab.rollout import rollout
from hnnlab.systems import get_system
from hnnlab.systems.constrained import CartesianChainPendulum

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


def chain_rollout(method: str, dt: float = 0.05, n_steps: int = 40):
    system = CartesianChainPendulum.with_random_parameters(3, torch.Generator().manual_seed(2))
    x0 = system.sample_initial_states(4, torch.Generator().manual_seed(0))
    ys = rollout(system, get_integrator(method), x0, dt, n_steps)
    t = dt * torch.arange(n_steps + 1, dtype=torch.float64)
    return system, ys, t


def test_the_drift_is_round_off_for_midpoint_and_rk4s_error_otherwise_and_gates_the_verdict() -> None:
    system, ys, t = chain_rollout("implicit_midpoint")
    report = audit_trajectories(ys, t, system=system, check_structure=False)
    c = report.constraints
    assert c.source == "system" and c.n_constraints == 3 and not c.relative_to_first_state
    assert c.max_violation < 1e-12 and c.max_velocity_violation < 1e-12
    assert c.max_violation == float(system.constraint_set().phi(ys[..., :6]).abs().max())

    system, ys, t = chain_rollout("rk4")
    limit = 1e-10
    report = audit_trajectories(ys, t, system=system, check_structure=False,
                                thresholds=Thresholds(max_constraint_violation=limit))
    drift = report.constraints.max_violation
    assert drift == float(system.constraint_set().phi(ys[..., :6]).abs().max()) and drift > limit
    assert report.constraints.initial_violation < 1e-12  # the sampled states are on the manifold
    (failure,) = [f for f in report.failures() if f.name == "max_constraint_violation"]
    assert failure.value == drift and not report.passed
    (row,) = [r for r in report.rows() if r[0].startswith("constraint drift max |Phi(x)|")]
    assert row[0] == "constraint drift max |Phi(x)| (3 constraints, system's)" and row[3] == "FAIL"
    saved = json.loads(json.dumps(report.to_dict()))
    assert saved["constraints"]["max_violation"] == drift and len(saved["constraints"]["per_trajectory"]) == 4


def test_a_models_rollout_is_measured_with_its_own_constraints_without_the_lengths() -> None:
    system, ys, t = chain_rollout("rk4")
    torch.manual_seed(0)
    model = CHNN.for_system(system, known_lengths=False, hidden=(8,)).double()
    x0 = model.momenta(system.positions_and_velocities(ys[:, 0])).detach()
    with torch.no_grad():
        pred = rollout(model, get_integrator("rk4"), x0, 0.05, 40)
    report = audit_trajectories(pred, t, model=model, check_structure=False)
    c = report.constraints
    assert c.source == "model" and c.relative_to_first_state
    squared = model.constraints.squared_distances(pred[..., :6])
    assert c.max_violation == float((squared - squared[:, :1]).abs().max()) > 0
    assert c.initial_violation == 0.0


def test_an_unconstrained_system_skips_the_section_with_the_reason() -> None:
    system = get_system("pendulum")
    x0 = system.sample_initial_states(2, torch.Generator().manual_seed(0))
    ys = rollout(system, get_integrator("leapfrog"), x0, 0.1, 5)
    report = audit_trajectories(ys, 0.1 * torch.arange(6.0), system=system, check_structure=False,
                                thresholds=Thresholds(max_constraint_violation=1.0))
    assert report.constraints is None
    assert report.skipped["constraints"] == "Pendulum: no holonomic constraints"
    (failure,) = report.failures()
    assert failure.message == "max_constraint_violation: not measured (Pendulum: no holonomic constraints)"


def test_hnnlab_audit_reports_and_gates_the_constraint_drift_of_a_dataset(tmp_path: Path, capsys) -> None:
    path = write_dataset(tmp_path / "chain.h5",
                         get_recipe("chnn-chain-pendulum-cartesian", n_traj=4, n_times=11, t_end=0.3).build(0))
    out = tmp_path / "report.json"
    assert main(["audit", str(path), "--split", "train", "--no-structure", "--max-constraint-violation", "1e-9",
                 "--json", str(out)]) == 0
    assert "constraint" in capsys.readouterr().out  # the table row (rich wraps its label)
    drift = json.loads(out.read_text())["constraints"]["max_violation"]
    assert drift < 1e-9  # dopri8 at 1e-12
    status = main(["audit", str(path), "--split", "train", "--no-structure", "--max-constraint-violation", "0"])
    assert status == 1
    assert f"hnnlab audit: FAILED max_constraint_violation: {drift:.4g} exceeds the limit 0" in capsys.readouterr().err

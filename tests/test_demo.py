"""The demo (hnnlab.demo)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


@pytest.mark.slow
def test_demo_runs_every_stage_and_separates_symplectic_from_rk4(tmp_path: Path) -> None:
    from hnnlab.demo import DemoConfig, run_demo

    summary = run_demo(DemoConfig(out=tmp_path, train_steps=20, rollout_steps=200, n_rollouts=2,
                                  integrator_steps=4000))
    verdicts = {row["integrator"]: row["verdict"] for row in summary["integrators"]}
    assert verdicts == {"leapfrog": "bounded", "yoshida4": "bounded", "rk4": "drifting"}
    assert [(m["system"], m["model"]) for m in summary["models"]] == [
        ("spring", "HNN"), ("spring", "baseline"), ("pendulum", "HNN"), ("pendulum", "baseline")]
    for m in summary["models"]:
        assert math.isfinite(m["test_loss"]) and Path(m["rollout_file"]).is_file()
        assert all(Path(p).is_file() for p in m["plots"].values())
    assert json.loads((tmp_path / "summary.json").read_text())["models"][0]["integrator"] == "implicit_midpoint"
    assert "HNN against baseline" in (tmp_path / "summary.md").read_text()

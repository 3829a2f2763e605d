"""Small simulated datasets for tests/test_data.py, tests/test_cli.py and the ``spring_file`` fixture
(tests/conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from hnnlab.data import simulate
from hnnlab.systems import MassSpring


def small_result(noise_std: float = 0.0, dtype: str = "float64", seed: int = 0, n_traj: int = 10):
    return simulate(
        MassSpring(), n_traj, dt=0.1, n_steps=12, integrator="dopri8",
        integrator_options={"rtol": 1e-12, "atol": 1e-12},
        noise_std=noise_std, seed=seed, splits=(0.6, 0.2, 0.2), dtype=dtype,
    )


def copy_file(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` (to damage the copy); returns ``dst``."""
    shutil.copy(src, dst)
    return dst

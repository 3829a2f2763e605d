"""Fixtures shared by several test files (one file per module: see tests/README.md).

The datasets are built once per session into a temporary directory and only read by the tests.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from hnnlab.data import get_recipe, write_dataset
from hnnlab.data.datamodule import HDF5DataModule
from hnnlab.models import HNN
from hnnlab.training.module import DynamicsModule
from tests._data_helpers import small_result
from tests._training_helpers import SMALL


@pytest.fixture
def wandb_disabled_one_thread(monkeypatch: pytest.MonkeyPatch):
    """W&B off; one intra-op thread (these small models run 5-10x slower on a shared, busy CPU otherwise).

    Training test files use it for every test: ``pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")``.
    """
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("CI", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def spring_file(tmp_path: Path) -> Path:
    """A small simulated mass-spring dataset (10 trajectories of 13 times, noise 0.1), written afresh for each
    test that may damage or overwrite it."""
    return write_dataset(tmp_path / "spring.h5", small_result(noise_std=0.1))


@pytest.fixture(scope="session")
def spring(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Greydanus mass-spring dataset, 4 trajectories: 60 training pairs (3 steps per epoch at batch
    size 20)."""
    path = tmp_path_factory.mktemp("data") / "spring.h5"
    write_dataset(path, get_recipe("greydanus-spring", n_traj=4).build(0))
    return path


@pytest.fixture(scope="session")
def spring_full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full Greydanus mass-spring dataset (750 train / 750 test pairs)."""
    path = tmp_path_factory.mktemp("spring") / "spring.h5"
    write_dataset(path, get_recipe("greydanus-spring").build(0))
    return path


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small dataset file per recipe (sizes in ``tests._training_helpers.SMALL``), built on first use."""
    root = tmp_path_factory.mktemp("data")

    class Files(dict):
        def __missing__(self, recipe: str) -> Path:
            path = root / f"{recipe}.h5"
            write_dataset(path, get_recipe(recipe, **SMALL[recipe]).build(0))
            self[recipe] = path
            return path

    return Files()


@pytest.fixture(scope="session")
def spring8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Greydanus mass-spring dataset with 8 trajectories (4 in the test split)."""
    path = tmp_path_factory.mktemp("data") / "spring.h5"
    write_dataset(path, get_recipe("greydanus-spring", n_traj=8).build(seed=0))
    return path


@pytest.fixture(scope="session")
def hnn_checkpoint(tmp_path_factory: pytest.TempPathFactory, spring8: Path) -> Path:
    """An HNN (hidden (16, 16)) trained for 3 steps on ``spring8``, saved by Lightning's trainer."""
    root = tmp_path_factory.mktemp("ckpt")
    pl.seed_everything(0, verbose=False)
    module = DynamicsModule(HNN(1, hidden=(16, 16)))
    trainer = pl.Trainer(
        max_steps=3, logger=False, enable_progress_bar=False, enable_model_summary=False, inference_mode=False,
        use_distributed_sampler=False, default_root_dir=root, num_sanity_val_steps=0, accelerator="cpu",
    )
    trainer.fit(module, datamodule=HDF5DataModule(str(spring8)))
    path = root / "model.ckpt"
    trainer.save_checkpoint(path)
    return path

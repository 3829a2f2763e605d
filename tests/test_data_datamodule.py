"""Reading datasets for training: the PyTorch Dataset, spawn workers, the sampler and the DataModule."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader

from hnnlab.data import DatasetError, load_dataset, simulate, write_dataset
from hnnlab.data.datamodule import EpochBatchSampler, FullBatchLoader, HDF5DataModule
from hnnlab.data.dataset import TrajectoryDataset
from hnnlab.errors import InvalidArgumentError
from hnnlab.systems import Pendulum


@pytest.fixture(scope="module")
def pendulum_file(tmp_path_factory) -> Path:
    result = simulate(Pendulum(), 10, dt=0.1, n_steps=9, integrator="rk4", substeps=8, noise_std=0.01, seed=2,
                      splits=(0.6, 0.2, 0.2))
    return write_dataset(tmp_path_factory.mktemp("d") / "pend.h5", result)


@pytest.mark.parametrize("in_memory", [True, False])
def test_pairs_are_every_state_with_its_derivative(pendulum_file, in_memory):
    data = load_dataset(pendulum_file).splits["train"]
    ds = TrajectoryDataset(pendulum_file, "train", in_memory=in_memory)
    assert len(ds) == 6 * 10 and ds.dof == 1 and ds.dt == pytest.approx(0.1)
    batch = ds[list(range(len(ds)))]
    assert torch.equal(batch["x"], data.state.reshape(-1, 2))
    assert torch.equal(batch["dxdt"], data.dxdt.reshape(-1, 2))
    item = ds[13]
    assert torch.equal(item["x"], data.state[1, 3]) and torch.equal(item["dxdt"], data.dxdt[1, 3])
    clean = TrajectoryDataset(pendulum_file, "train", use_noisy=False, in_memory=in_memory)
    assert torch.equal(clean[13]["x"], data.clean_state[1, 3])
    with pytest.raises(IndexError, match="index 60 is out of range for a dataset of 60 items"):
        ds[60]


@pytest.mark.parametrize("in_memory", [True, False])
def test_windows_are_consecutive_states_of_one_trajectory(pendulum_file, in_memory):
    data = load_dataset(pendulum_file).splits["val"]
    ds = TrajectoryDataset(pendulum_file, "val", mode="windows", window=3, in_memory=in_memory)
    assert len(ds) == 2 * (10 - 3)
    for index in range(len(ds)):
        traj, start = divmod(index, 7)
        item = ds[index]
        assert item["states"].shape == (4, 2)
        assert torch.equal(item["states"], data.state[traj, start : start + 4])
        assert torch.equal(item["t"], data.t[start : start + 4])
    batch = ds[[13, 0, 13]]
    assert torch.equal(batch["states"][0], batch["states"][2]) and torch.equal(batch["states"][1], data.state[0, :4])


def test_dataset_errors_name_the_file_and_field(pendulum_file, tmp_path):
    with pytest.raises(DatasetError, match=r"split 'valid' is absent \(splits present: train, val, test\)"):
        TrajectoryDataset(pendulum_file, "valid")
    message = "has 10 saved times per trajectory; windows of window=10 steps need at least 11"
    with pytest.raises(DatasetError, match=message):
        TrajectoryDataset(pendulum_file, "train", mode="windows", window=10)
    with pytest.raises(DatasetError, match="does not exist"):
        TrajectoryDataset(tmp_path / "missing.h5")
    with pytest.raises(InvalidArgumentError, match="mode must be 'pairs' or 'windows', got 'pair'"):
        TrajectoryDataset(pendulum_file, mode="pair")


def test_lazy_handle_is_opened_on_use_and_dropped_when_pickled(pendulum_file):
    ds = TrajectoryDataset(pendulum_file, "train", in_memory=False)
    assert ds._file is None  # nothing opened in __init__
    first = ds[5]
    assert ds._file is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    assert torch.equal(clone[5]["x"], first["x"])


def test_dataloader_with_two_spawn_workers_reads_correct_windows(pendulum_file):
    data = load_dataset(pendulum_file).splits["train"]
    ds = TrajectoryDataset(pendulum_file, "train", mode="windows", window=2, in_memory=False)
    loader = DataLoader(ds, batch_size=8, num_workers=2, multiprocessing_context="spawn", shuffle=False)
    states = torch.cat([batch["states"] for batch in loader])
    expected = torch.stack([data.state[i // 8, i % 8 : i % 8 + 3] for i in range(len(ds))])
    assert torch.equal(states, expected)


def test_sampler_order_depends_only_on_seed_and_epoch_and_shards_disjointly():
    def epoch(sampler, e):
        sampler.set_epoch(e)
        return [i for batch in sampler for i in batch]

    a, b = EpochBatchSampler(10, 4, seed=7), EpochBatchSampler(10, 4, seed=7)
    assert epoch(a, 3) == epoch(b, 3) and sorted(epoch(a, 3)) == list(range(10))
    assert epoch(a, 3) != epoch(a, 4)
    assert [len(x) for x in a] == [4, 4, 2] and len(a) == 3
    ranks = [EpochBatchSampler(10, 2, seed=1, rank=r, world_size=2) for r in (0, 1)]
    shards = [epoch(s, 0) for s in ranks]
    assert len(shards[0]) == len(shards[1]) == 5 and sorted(shards[0] + shards[1]) == list(range(10))
    padded = [epoch(EpochBatchSampler(7, None, seed=1, rank=r, world_size=2), 0) for r in (0, 1)]
    assert len(padded[0]) == len(padded[1]) == 4 and set(padded[0] + padded[1]) == set(range(7))
    assert list(EpochBatchSampler(5, 2, shuffle=False)) == [[0, 1], [2, 3], [4]]


def test_datamodule_builds_from_recipe_and_serves_global_batches(tmp_path):
    path = tmp_path / "spring.h5"
    dm = HDF5DataModule(str(path), recipe="greydanus-spring", batch_size=10, seed=3, recipe_overrides={"n_traj": 4})
    dm.prepare_data()
    assert path.exists()
    dm.setup("fit")
    assert dm.dof == 1 and dm.dt == pytest.approx(3 / 29) and dm.system.k == 2.0
    assert dm.metadata["recipe"]["name"] == "greydanus-spring"
    loader = dm.train_dataloader()
    batches = list(loader)
    assert [b["x"].shape for b in batches] == [(10, 2)] * 6  # 2 trajectories x 30 times
    loader.sampler.set_epoch(0)
    again = torch.cat([b["x"] for b in loader])
    assert torch.equal(again, torch.cat([b["x"] for b in batches]))
    assert dm.val_dataloader() == []  # the recipe has no val split
    test = torch.cat([b["x"] for b in dm.test_dataloader()])
    assert torch.equal(test, load_dataset(path).splits["test"].state.reshape(-1, 2))  # in order


def test_datamodule_refuses_a_batch_the_world_size_does_not_divide(pendulum_file):
    dm = HDF5DataModule(str(pendulum_file), batch_size=10)
    dm.trainer = SimpleNamespace(world_size=3, global_rank=1)
    with pytest.raises(InvalidArgumentError, match=r"batch_size=10 is the global batch and must be divisible by the "
                                                    r"world size 3 \(each rank takes batch_size // world_size\)"):
        dm.setup("fit")
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)
    dm.setup("fit")
    assert dm.per_rank_batch_size() == 5
    assert all(b["x"].shape == (5, 2) for b in dm.train_dataloader())


def test_datamodule_without_file_or_recipe(tmp_path):
    dm = HDF5DataModule(str(tmp_path / "none.h5"))
    with pytest.raises(DatasetError, match="does not exist and no recipe was given to build it"):
        dm.prepare_data()
    with pytest.raises(InvalidArgumentError, match="batch_size must be an integer >= 1 or None"):
        HDF5DataModule("x.h5", batch_size=0)


@pytest.mark.parametrize("batch_size", [20, None])  # a DataLoader, and the FullBatchLoader of full-batch runs
def test_lightning_sets_the_epoch_so_resumed_runs_see_the_same_batches(pendulum_file, batch_size):
    import lightning as L

    class Record(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)
            self.seen: list[torch.Tensor] = []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch["x"].clone())
            return torch.nn.functional.mse_loss(self.layer(batch["x"].float()), batch["dxdt"].float())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    def run(epochs: int) -> list[torch.Tensor]:
        dm = HDF5DataModule(str(pendulum_file), batch_size=batch_size, seed=5)
        model = Record()
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                            limit_val_batches=0)
        trainer.fit(model, datamodule=dm)
        return model.seen

    seen = run(2)
    per_epoch = 3 if batch_size else 1  # 60 pairs / 20 per batch, or all of them
    assert len(seen) == 2 * per_epoch
    first, second = torch.cat(seen[:per_epoch]), torch.cat(seen[per_epoch:])
    assert not torch.equal(first, second)  # epoch 1 is reshuffled, so set_epoch reached the sampler
    sampler = EpochBatchSampler(60, batch_size, seed=5)
    sampler.set_epoch(1)
    data = TrajectoryDataset(pendulum_file, "train")
    assert torch.equal(second, torch.cat([data[batch]["x"] for batch in sampler]))


@pytest.mark.parametrize(("mode", "rank", "world_size"), [("pairs", 0, 1), ("windows", 1, 2)])
def test_full_batch_in_memory_yields_the_dataloaders_batches_bit_for_bit(pendulum_file, mode, rank, world_size):
    """Full batch from a file held in memory: a FullBatchLoader (the split gathered once), whose batch at every
    epoch equals the DataLoader's over the same sampler, key by key and bit for bit, this rank's shard included;
    a lazy file or worker processes keep the DataLoader."""
    dm = HDF5DataModule(str(pendulum_file), mode=mode, window=2, batch_size=None, seed=5)
    dm.trainer = SimpleNamespace(world_size=world_size, global_rank=rank)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader, FullBatchLoader) and len(loader) == 1
    dataset = dm.datasets["train"]
    sampler = EpochBatchSampler(len(dataset), None, seed=5, rank=rank, world_size=world_size)
    reference = DataLoader(dataset, batch_size=None, sampler=sampler)
    seen = []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        sampler.set_epoch(epoch)
        (batch,), (expected,) = list(loader), list(reference)
        assert batch.keys() == expected.keys() and all(torch.equal(batch[k], expected[k]) for k in batch)
        assert len(batch["t"]) == -(-len(dataset) // world_size)  # this rank's shard, padded to equal sizes
        seen.append(batch["t"])
    assert not torch.equal(seen[0], seen[1])  # reshuffled by epoch
    assert isinstance(HDF5DataModule(str(pendulum_file), batch_size=None, in_memory=False).train_dataloader(),
                      DataLoader)
    assert isinstance(HDF5DataModule(str(pendulum_file), batch_size=None, num_workers=1).train_dataloader(),
                      DataLoader)
    assert isinstance(HDF5DataModule(str(pendulum_file), batch_size=6).train_dataloader(), DataLoader)

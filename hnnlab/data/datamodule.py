"""A LightningDataModule over an hnnlab dataset file, built from a recipe when the file is missing.

``batch_size`` is the global batch: each of ``world_size`` ranks gets ``batch_size // world_size``
items per step (refused unless divisible). The train loader's order depends only on ``(seed, epoch)``
and the sampler shards by ``(rank, world_size)`` itself, so resuming from a checkpoint replays the
same batches; use it with ``Trainer(use_distributed_sampler=False)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from hnnlab.data.dataset import TrajectoryDataset
from hnnlab.data.io import raise_if_invalid, read_metadata, rebuild_system
from hnnlab.data.schema import DatasetError
from hnnlab.errors import InvalidArgumentError
from hnnlab.systems.base import AbstractSystem


class EpochBatchSampler(Sampler[list[int]]):
    """Yields this rank's batches of indices; the order is a function of ``(seed, epoch)`` only.

    Every epoch the ``n`` indices are permuted with a generator seeded by ``seed + epoch`` (or kept in
    order without ``shuffle``), padded by wrapping around to a multiple of ``world_size`` (so all ranks
    take the same number of steps), and rank ``r`` takes positions ``r, r + world_size, ...``, cut into
    batches of ``batch_size`` (``None``: one batch with the whole shard).
    """

    def __init__(
        self,
        n: int,
        batch_size: int | None,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if n < 1:
            raise InvalidArgumentError(f"the dataset is empty (n = {n}); nothing to sample")
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
            raise InvalidArgumentError(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")
        if not 0 <= rank < world_size:
            raise InvalidArgumentError(f"rank must lie in [0, world_size = {world_size}), got {rank}")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shard_size(self) -> int:
        return self.n // self.world_size if self.drop_last else math.ceil(self.n / self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.index_batches():
            yield batch.tolist()

    def index_batches(self) -> Iterator[Tensor]:
        """The batches of :meth:`__iter__` as index tensors ``(batch,)``."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=generator)
        else:
            order = torch.arange(self.n)
        total = self._shard_size() * self.world_size
        order = order[:total] if total <= self.n else torch.cat([order, order[: total - self.n]])
        mine = order[self.rank :: self.world_size]
        size = self.batch_size or len(mine)
        for start in range(0, len(mine), size):
            batch = mine[start : start + size]
            if self.drop_last and len(batch) < size:
                return
            yield batch

    def __len__(self) -> int:
        shard = self._shard_size()
        size = self.batch_size or max(shard, 1)
        return shard // size if self.drop_last else math.ceil(shard / size)


class FullBatchLoader:
    """The loader of a full-batch split held in memory, for one process: what ``DataLoader(dataset,
    batch_size=None, sampler=sampler)`` yields, bit for bit, without building a DataLoader iterator and gathering
    the dataset at every epoch (a full-batch run has one step per epoch). The split is gathered once, on first
    use, and each batch is those tensors indexed by the sampler's order of the epoch (``sampler.set_epoch``, as
    for a DataLoader: Lightning sets it through ``loader.sampler``)."""

    batch_sampler = None  # as a DataLoader with batch_size=None: the sampler yields the batches (Lightning reads it)

    def __init__(self, dataset: TrajectoryDataset, sampler: EpochBatchSampler) -> None:
        self.dataset, self.sampler = dataset, sampler
        self._items: dict[str, Tensor] | None = None  # every item of the split, in order, with a batch axis

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        if self._items is None:
            self._items = self.dataset[torch.arange(len(self.dataset))]
        for index in self.sampler.index_batches():
            yield {k: v[index] for k, v in self._items.items()}


class HDF5DataModule(L.LightningDataModule):
    """Train/val/test loaders over an hnnlab dataset file.

    Args:
        path: the dataset file.
        recipe: a recipe name; when the file is missing, ``prepare_data`` builds it from the recipe.
        mode: ``"pairs"`` (``{"x", "dxdt"}``) or ``"windows"`` (``{"states", "t"}`` of ``window + 1`` states).
        window: steps per window (windows mode).
        with_dxdt: windows also carry the exact ``"dxdt"`` at their states (for ``DynamicsModule``'s
            ``derivative_weight``); pairs always do.
        batch_size: global batch size (divided among ranks); ``None`` is full batch (from a file held in memory,
            with ``num_workers=0``: served by :class:`FullBatchLoader`, the split gathered once).
        num_workers: DataLoader worker processes.
        seed: seed of the train order (with the epoch).
        in_memory: read the file fully into memory; ``None`` decides by size.
        use_noisy: train on the observed (noisy) states; ``False`` uses the clean ones.
        overwrite: rebuild the file from the recipe even if it exists.
        recipe_seed: seed of the recipe build.
        recipe_overrides: recipe fields to change (``{"n_traj": 100}``).
    """

    def __init__(
        self,
        path: str,
        recipe: str | None = None,
        mode: Literal["pairs", "windows"] = "pairs",
        window: int = 1,
        batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        in_memory: bool | None = None,
        use_noisy: bool = True,
        overwrite: bool = False,
        recipe_seed: int = 0,
        recipe_overrides: dict[str, Any] | None = None,
        with_dxdt: bool = False,
    ) -> None:
        super().__init__()
        if mode not in ("pairs", "windows"):
            raise InvalidArgumentError(f"mode must be 'pairs' or 'windows', got {mode!r}")
        bad_batch = isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        if batch_size is not None and bad_batch:
            raise InvalidArgumentError(f"batch_size must be an integer >= 1 or None (full batch), got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise InvalidArgumentError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        self.save_hyperparameters()
        self.path, self.recipe, self.mode, self.window = str(path), recipe, mode, window
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.in_memory, self.use_noisy, self.overwrite = in_memory, use_noisy, overwrite
        self.recipe_seed, self.recipe_overrides = recipe_seed, dict(recipe_overrides or {})
        self.with_dxdt = with_dxdt
        self.datasets: dict[str, TrajectoryDataset] = {}
        self._metadata: dict[str, Any] | None = None
        self._samplers: dict[str, EpochBatchSampler] = {}

    # -- data ---------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Build the file from the recipe if it is missing (or with ``overwrite``); runs on rank zero."""
        exists = Path(self.path).exists()
        if exists and not (self.overwrite and self.recipe):
            return
        if self.recipe is None:
            raise DatasetError(f"dataset file {self.path!r} does not exist and no recipe was given to build it")
        from hnnlab.data.recipes import get_recipe
        from hnnlab.data.writer import write_dataset

        recipe = get_recipe(self.recipe, **self.recipe_overrides)
        command = f"HDF5DataModule(recipe={self.recipe!r}) seed={self.recipe_seed}"
        result = recipe.build(self.recipe_seed, command=command)
        write_dataset(self.path, result, overwrite=self.overwrite)

    def setup(self, stage: str | None = None) -> None:
        raise_if_invalid(self.path, check_values=False)
        self._metadata = read_metadata(self.path)
        self.per_rank_batch_size()  # refuse an indivisible batch before any loader is built
        for split in self._metadata["splits"]:
            if split not in self.datasets:
                self.datasets[split] = TrajectoryDataset(
                    self.path, split, mode=self.mode, window=self.window, use_noisy=self.use_noisy,
                    in_memory=self.in_memory, with_dxdt=self.with_dxdt,
                )

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def per_rank_batch_size(self) -> int | None:
        """``batch_size // world_size``; raises if the world size does not divide the batch size."""
        _, world_size = self._world()
        if self.batch_size is None:
            return None
        if self.batch_size % world_size:
            raise InvalidArgumentError(
                f"batch_size={self.batch_size} is the global batch and must be divisible by the world size "
                f"{world_size} (each rank takes batch_size // world_size); use e.g. "
                f"{max(world_size, self.batch_size // world_size * world_size)}"
            )
        return self.batch_size // world_size

    def _loader(self, split: str, *, shuffle: bool) -> DataLoader | FullBatchLoader | list:
        if split not in self.datasets:
            if self._metadata is None:
                self.setup()
            if split not in self.datasets:
                return []
        rank, world_size = self._world()
        dataset = self.datasets[split]
        sampler = EpochBatchSampler(
            len(dataset), self.per_rank_batch_size(), shuffle=shuffle, seed=self.seed, rank=rank, world_size=world_size,
        )
        self._samplers[split] = sampler
        if sampler.batch_size is None and self.num_workers == 0 and dataset.in_memory:
            return FullBatchLoader(dataset, sampler)
        return DataLoader(
            dataset, batch_size=None, sampler=sampler, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader | FullBatchLoader:
        loader = self._loader("train", shuffle=True)
        if isinstance(loader, list):
            raise DatasetError(f"{self.path}: the dataset has no 'train' split")
        return loader

    def val_dataloader(self) -> DataLoader | FullBatchLoader | list:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader | FullBatchLoader | list:
        return self._loader("test", shuffle=False)

    # -- what the model needs -----------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            self._metadata = read_metadata(self.path)
        return self._metadata

    @property
    def dof(self) -> int:
        return int(self.metadata["dof"])

    @property
    def dt(self) -> float:
        """Time between saved states."""
        return float(self.metadata["dt"])

    @property
    def system(self) -> AbstractSystem:
        """The analytic system that generated the data."""
        return rebuild_system(self.metadata)

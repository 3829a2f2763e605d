"""Datasets: a written, validated HDF5 format; simulation; literature recipes; PyTorch and Lightning access.

The format is specified in ``docs/data_format.md`` and checked by :func:`validate`.
"""

from hnnlab.data.io import (
    LoadedDataset as LoadedDataset,
)
from hnnlab.data.io import (
    SplitData as SplitData,
)
from hnnlab.data.io import (
    load_dataset as load_dataset,
)
from hnnlab.data.io import (
    read_metadata as read_metadata,
)
from hnnlab.data.recipes import RECIPES as RECIPES
from hnnlab.data.recipes import Recipe as Recipe
from hnnlab.data.recipes import get_recipe as get_recipe
from hnnlab.data.schema import (
    SCHEMA_NAME as SCHEMA_NAME,
)
from hnnlab.data.schema import (
    SCHEMA_VERSION as SCHEMA_VERSION,
)
from hnnlab.data.schema import (
    DatasetError as DatasetError,
)
from hnnlab.data.schema import (
    open_file as open_file,
)
from hnnlab.data.schema import (
    validate as validate,
)
from hnnlab.data.simulate import SimulationResult as SimulationResult
from hnnlab.data.simulate import simulate as simulate
from hnnlab.data.writer import write_dataset as write_dataset
from hnnlab.systems.registry import rebuild_system as rebuild_system


def __getattr__(name: str):  # lazy: Lightning is slow to import
    if name == "HDF5DataModule":
        from hnnlab.data.datamodule import HDF5DataModule

        return HDF5DataModule
    if name == "TrajectoryDataset":
        from hnnlab.data.dataset import TrajectoryDataset

        return TrajectoryDataset
    raise AttributeError(f"module 'hnnlab.data' has no attribute {name!r}")


__all__ = [
    "DatasetError",
    "HDF5DataModule",
    "TrajectoryDataset",
    "LoadedDataset",
    "RECIPES",
    "Recipe",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SimulationResult",
    "SplitData",
    "get_recipe",
    "load_dataset",
    "open_file",
    "read_metadata",
    "rebuild_system",
    "simulate",
    "validate",
    "write_dataset",
]

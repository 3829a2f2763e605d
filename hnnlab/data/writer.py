"""Atomic writes of dataset files: the file appears at its path only when complete.

Data is written to a hidden temporary file in the target's directory and then linked (or, with
``overwrite``, renamed) onto the target path. An interrupted or failing write removes the temporary
file and leaves the target path exactly as it was; an existing file is never replaced unless
``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from hnnlab.data.schema import NOISY_FIELD, ROOT_ATTRS, SPLITS, DatasetError

if TYPE_CHECKING:
    from hnnlab.data.simulate import SimulationResult


def check_target(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Refuse a target that exists (unless ``overwrite``) or that is a directory; return it as a Path."""
    target = Path(path)
    if target.is_dir():
        raise DatasetError(f"output path {str(target)!r} is a directory; give a file name such as data/spring.h5")
    if target.exists() and not overwrite:
        raise DatasetError(
            f"output file {str(target)!r} already exists; pass --overwrite (overwrite=True) to replace it"
        )
    return target


@contextmanager
def atomic_target(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is moved onto ``path`` in one step.

    The parent directory is created if needed. Without ``overwrite`` the move is a hard link, which
    fails rather than replace a file that appeared meanwhile.
    """
    target = check_target(path, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if overwrite:
            os.replace(tmp, target)
        else:
            _link_no_clobber(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _link_no_clobber(tmp: Path, target: Path) -> None:
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise DatasetError(
            f"output file {str(target)!r} appeared while writing; nothing was overwritten "
            "(pass --overwrite to replace it)"
        ) from None
    except OSError:  # file systems without hard links
        if target.exists():
            raise DatasetError(f"output file {str(target)!r} already exists; nothing was overwritten") from None
        os.replace(tmp, target)


def write_dataset(path: str | os.PathLike, result: SimulationResult, *, overwrite: bool = False) -> Path:
    """Write ``result`` as a spec-following HDF5 file at ``path``, atomically; return the path.

    Each array of shape ``(n_traj, n_times, ...)`` is stored with one chunk per trajectory. Splits
    with no trajectories are omitted.
    """
    import h5py

    with atomic_target(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as file:
            for key, value in result.metadata.items():
                is_json = key in ROOT_ATTRS and ROOT_ATTRS[key][1]
                file.attrs[key] = json.dumps(value, sort_keys=True) if is_json else value
            for name in SPLITS:
                split = result.splits.get(name)
                if split is None or split.n_traj == 0:
                    continue
                group = file.create_group(name)
                group.attrs["n_traj"] = split.n_traj
                group.attrs["n_times"] = split.n_times
                group.attrs["dt"] = float(split.dt)
                group.create_dataset("t", data=split.t.numpy())
                arrays = {"state": split.state, "dxdt": split.dxdt, "energy": split.energy}
                if split.clean_state is not None:
                    arrays[NOISY_FIELD] = split.clean_state
                for field, tensor in arrays.items():
                    array = tensor.detach().cpu().numpy()
                    group.create_dataset(field, data=array, chunks=(1, *array.shape[1:]))
    return Path(path)

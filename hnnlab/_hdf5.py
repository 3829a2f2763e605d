"""The HDF5 leaf under dataset and rollout files: open read-only, root attributes, atomic writes, schema check.

Every function takes the exception class to raise (``error``, a :class:`~hnnlab.errors.HnnlabError`) and
the words that name the file (``what``, ``where``), so that a dataset file fails with a ``DatasetError``
and a rollout file with a ``RolloutFileError``, each message naming the file and the field. This module
imports nothing from hnnlab but :mod:`hnnlab.errors`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hnnlab.errors import FileFormatError, HnnlabError

ErrorType = type[HnnlabError]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (h5py's run to several), or its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------
# Reading


def open_read(path: str | os.PathLike[str], *, what: str = "file", error: ErrorType = FileFormatError) -> h5py.File:
    """Open ``path`` read-only as an ``h5py.File``.

    Raises:
        error: ``path`` is missing, a directory, empty, not HDF5, or damaged; the message starts with
            ``what`` and the path (``"dataset file 'x.h5' does not exist"``).
    """
    p = Path(path)
    name = f"{what} {str(p)!r}"
    if not p.exists():
        raise error(f"{name} does not exist")
    if p.is_dir():
        raise error(f"{name} is a directory, not an HDF5 file")
    if not p.is_file():
        raise error(f"{name} is not a regular file")
    if p.stat().st_size == 0:
        raise error(f"{name} is empty (0 bytes); it is not an HDF5 file")
    try:
        is_hdf5 = h5py.is_hdf5(p)
    except OSError as exc:
        raise error(f"{name} cannot be read: {first_line(exc)}") from None
    if not is_hdf5:
        raise error(f"{name} is not an HDF5 file (no HDF5 signature)")
    try:
        return h5py.File(p, "r")
    except (OSError, RuntimeError) as exc:
        raise error(
            f"{name} is corrupted or truncated (an interrupted write?): HDF5 open failed: {first_line(exc)}"
        ) from None


def read_attr(obj: Any, key: str) -> Any:
    """Attribute ``key`` of a file, group or dataset as a plain Python value; ``None`` when absent."""
    if key not in obj.attrs:
        return None
    value = obj.attrs[key]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def read_json_attr(
    file: Any, key: str, *, where: str, error: ErrorType = FileFormatError, required: bool = False
) -> Any:
    """Root attribute ``key``, stored as a JSON string, decoded; ``None`` when absent and not ``required``.

    Raises:
        error: the attribute is missing (and ``required``), not a string, or not valid JSON; the message
            starts with ``where`` (the file's name).
    """
    value = read_attr(file, key)
    if value is None:
        if required:
            raise error(f"{where}: missing root attribute {key!r}")
        return None
    if not isinstance(value, str):
        raise error(f"{where}: root attribute {key!r} must be a JSON string, got {type(value).__name__} {value!r}")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: root attribute {key!r} is not valid JSON ({exc.msg})") from None


def check_schema(
    file: Any, *, schema: str, version: int, kind: str, where: str, error: ErrorType = FileFormatError
) -> None:
    """Raise unless the root attributes ``schema`` and ``schema_version`` are ``schema`` and ``version``.

    Args:
        kind: what such a file is, for the message (``"hnnlab dataset"``).
        where: the file's name, which starts the message.
    """
    found = read_attr(file, "schema")
    if found != schema:
        raise error(f"{where}: root attribute 'schema' is {found!r}, expected {schema!r} (not an {kind})")
    found_version = read_attr(file, "schema_version")
    if isinstance(found_version, bool) or not isinstance(found_version, int) or found_version != version:
        raise error(
            f"{where}: root attribute 'schema_version' is {found_version!r}; this hnnlab reads version {version} only"
        )


# --------------------------------------------------------------------------------------------------
# Writing


def write_attrs(obj: Any, attrs: Mapping[str, Any], *, json_keys: Collection[str] = ()) -> None:
    """Set the attributes of a file, group or dataset; the values of ``json_keys`` are stored as JSON strings."""
    for key, value in attrs.items():
        obj.attrs[key] = json.dumps(value, sort_keys=True) if key in json_keys else value


def check_target(
    path: str | os.PathLike[str],
    *,
    overwrite: bool,
    what: str = "file",
    error: ErrorType = FileFormatError,
    overwrite_flag: str = "overwrite=True",
) -> Path:
    """Refuse a target that is a directory, or that exists unless ``overwrite``; return it as a Path.

    Args:
        overwrite_flag: how the caller's user asks to replace a file (``"--overwrite (overwrite=True)"``),
            for the message.
    """
    target = Path(path)
    if target.is_dir():
        raise error(f"{what} {str(target)!r} is a directory; give a file name")
    if target.exists() and not overwrite:
        raise error(f"{what} {str(target)!r} already exists; pass {overwrite_flag} to replace it")
    return target


class AtomicWrite:
    """A file that appears at its path only when complete.

    It is written under a hidden temporary name in the target's directory (created if needed), flushed to
    disk (``fsync``), and moved onto the target in one step (``os.replace`` with ``overwrite``, else a hard
    link, which fails rather than replace a file that appeared meanwhile). On any exception, including
    ``KeyboardInterrupt``, the temporary file is removed and the target path is left as it was. An existing
    target is refused when the ``AtomicWrite`` is made, unless ``overwrite=True``.

    Usage::

        with AtomicWrite(path) as tmp:       # tmp: the temporary Path
            with h5py.File(tmp, "w") as f:
                ...

    A writer that keeps the file open across calls uses :meth:`begin`, then :meth:`commit` or
    :meth:`discard`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        what: str = "file",
        error: ErrorType = FileFormatError,
        overwrite_flag: str = "overwrite=True",
    ) -> None:
        self.target = check_target(path, overwrite=overwrite, what=what, error=error, overwrite_flag=overwrite_flag)
        self.overwrite, self.what, self.error, self.overwrite_flag = overwrite, what, error, overwrite_flag
        self.tmp: Path | None = None

    def begin(self) -> Path:
        """Create the (empty) temporary file beside the target and return its path."""
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent)
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def commit(self) -> None:
        """Flush the temporary file to disk and move it onto the target (the file must be closed)."""
        if self.tmp is None:
            raise RuntimeError("AtomicWrite.commit called before begin")
        try:
            _fsync(self.tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp makes 0o600; give the file the usual permissions
            if self.overwrite:
                os.replace(self.tmp, self.target)
            else:
                self._link_no_clobber()
            _fsync_directory(self.target.parent)
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the temporary file; the target path is untouched."""
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None

    def __enter__(self) -> Path:
        return self.begin()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def _link_no_clobber(self) -> None:
        appeared = (
            f"{self.what} {str(self.target)!r} appeared while writing; nothing was overwritten "
            f"(pass {self.overwrite_flag} to replace it)"
        )
        try:
            os.link(self.tmp, self.target)
        except FileExistsError:
            raise self.error(appeared) from None
        except OSError:  # file systems without hard links
            if self.target.exists():
                raise self.error(appeared) from None
            os.replace(self.tmp, self.target)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    """Make the rename durable; best effort (not every platform can open a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

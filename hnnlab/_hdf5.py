"""The HDF5 leaf under dataset and rollout files: open read-only, root attributes, atomic writes, schema check.

Every function takes the exception class to raise (``error``, a :class:`~hnnlab.errors.HnnlabError`) and
the words that name the file (``what``, ``where``), so that a dataset file fails with a ``DatasetError``
and a rollout file with a ``RolloutFileError``, each message naming the file and the field. This module
imports nothing from hnnlab but :mod:`hnnlab.errors`.

Stopping a write: under :func:`stop_on_signals` (the file-writing CLI commands run in it) SIGINT and SIGTERM
raise :class:`Interrupted` in ordinary Python code, never inside an h5py callback where Python would ignore
the exception, so an :class:`AtomicWrite` is discarded and the previous file kept. A writer killed outright
(SIGKILL) leaves its temporary; the next write of the same target removes it (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
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


def write_array(
    group: Any, name: str, array: np.ndarray, *, chunks: Any = None, slice_bytes: int = 16 * 2**20
) -> Any:
    """Create dataset ``name`` in ``group`` holding ``array``, written in slices along its first axis of at
    most ``slice_bytes`` each, with a check for a stop signal between slices (:func:`raise_if_interrupted`):
    one h5py call on a large array cannot be interrupted, so a SIGTERM would wait for the whole write."""
    array = np.asarray(array)
    dataset = group.create_dataset(name, shape=array.shape, dtype=array.dtype, chunks=chunks)
    if array.size == 0:
        return dataset
    if array.ndim == 0:
        dataset[()] = array
        return dataset
    row_bytes = max(1, array.nbytes // array.shape[0])
    step = max(1, slice_bytes // row_bytes)
    for start in range(0, array.shape[0], step):
        raise_if_interrupted()
        dataset[start : start + step] = array[start : start + step]
    return dataset


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
        """Create the (empty) temporary file beside the target and return its path.

        Its name, ``.NAME.HOST-PID.XXXXXXXX.tmp``, records the writing process; temporaries of the same
        target left by a writer that is gone (killed with SIGKILL, a crash) are removed first, with a
        :class:`StaleTemporaryWarning` that names them (:func:`remove_stale_temporaries`)."""
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.target)
        fd, name = tempfile.mkstemp(prefix=_tmp_prefix(self.target), suffix=".tmp", dir=self.target.parent)
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def commit(self) -> None:
        """Flush the temporary file to disk and move it onto the target (the file must be closed)."""
        if self.tmp is None:
            raise RuntimeError("AtomicWrite.commit called before begin")
        try:
            raise_if_interrupted()  # a stop request that h5py swallowed never becomes a complete-looking file
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
        try:
            return self.begin()
        except BaseException:  # a stop signal between creating the temporary and recording it
            for leftover in self.target.parent.glob(_tmp_prefix(self.target) + "*.tmp"):  # this process's own
                leftover.unlink(missing_ok=True)
            self.tmp = None
            raise

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


# --------------------------------------------------------------------------------------------------
# Leftover temporaries


class StaleTemporaryWarning(UserWarning):
    """Temporary files of an interrupted write of the same target were found (and removed when stale)."""


_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"
_LEGACY_MAX_AGE_S = 3600.0  # temporaries named before the writer's pid was recorded: removed after an hour


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.{_HOST}-{os.getpid()}."


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else (or cannot tell): keep its file
    return True


def remove_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of ``target`` (``.NAME.HOST-PID.*.tmp`` beside it) whose writer is gone.

    A temporary is stale when it was made on this host by a process that no longer exists, or, for the
    names of older hnnlab versions (``.NAME.XXXXXXXX.tmp``, no process recorded), when it was last modified
    more than an hour ago. Temporaries that may belong to a live writer are kept. Warns once
    (:class:`StaleTemporaryWarning`) naming what was removed and what was kept; returns the removed paths.
    """
    target = Path(target)
    name = re.escape(target.name)
    named = re.compile(rf"^\.{name}\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
    legacy = re.compile(rf"^\.{name}\.[A-Za-z0-9_]{{8}}\.tmp$")
    removed: list[tuple[Path, int]] = []
    kept: list[Path] = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return []
    now = time.time()
    for path in entries:
        match = named.match(path.name)
        try:
            if match:
                pid = int(match["pid"])
                stale = match["host"] == _HOST and pid != os.getpid() and not _process_alive(pid)
            elif legacy.match(path.name):
                stale = now - path.stat().st_mtime > _LEGACY_MAX_AGE_S
            else:
                continue
            if not stale:
                kept.append(path)
                continue
            size = path.stat().st_size
            path.unlink()
        except OSError:
            continue  # vanished meanwhile, or not ours to remove
        removed.append((path, size))
    if removed:
        total = sum(size for _, size in removed)
        names = ", ".join(p.name for p, _ in removed)
        kept_names = ", ".join(p.name for p in kept)
        note = f"; kept {len(kept)} that may belong to a running writer: {kept_names}" if kept else ""
        warnings.warn(
            f"removed {len(removed)} stale temporary file{'s' if len(removed) > 1 else ''} ({human_bytes(total)}) of "
            f"{str(target)!r} left by an interrupted write: {names}{note}",
            StaleTemporaryWarning,
            stacklevel=3,
        )
    return [p for p, _ in removed]


class TrajectoryArrays:
    """Shape properties of a record whose ``state`` is ``(n_traj, n_times, 2 * dof)`` (a dataset split, a rollout)."""

    state: Any

    @property
    def n_traj(self) -> int:
        return self.state.shape[0]

    @property
    def n_times(self) -> int:
        return self.state.shape[1]


def human_bytes(n: float) -> str:
    """``n`` bytes in B, KiB, MiB or GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# --------------------------------------------------------------------------------------------------
# Stopping on SIGINT / SIGTERM


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM received under :func:`stop_on_signals`; ``exit_code`` is ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_received: int | None = None  # the signal received under stop_on_signals, until it is left
_active = False  # inside stop_on_signals
_profile_before: Any = None  # the profile function replaced by _hook
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_H5PY_DIR = os.path.dirname(h5py.__file__)


def _unsafe(frame: FrameType | None) -> bool:
    """True when an exception raised in ``frame`` would be swallowed: inside a weakref callback or a
    finaliser (h5py releases its identifiers in them, and Python ignores exceptions there), inside h5py's
    own code, or in the signal handler itself (raising as it returns lands in the frame it interrupted)."""
    if frame is None:
        return True
    while frame is not None:
        code = frame.f_code
        if (
            code.co_filename.startswith(_H5PY_DIR)
            or os.path.basename(code.co_filename) == "weakref.py"
            or code.co_name == "__del__"
            or code in _OWN_CODE
        ):
            return True
        frame = frame.f_back
    return False


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received, _profile_before
    _received = signum
    if not _unsafe(frame):
        raise Interrupted(signum)
    # Raising here would be lost. Raise instead from the first Python call or return that happens in ordinary
    # code (a profile hook on this thread, removed as soon as it fires); should none come, the stop still
    # happens: AtomicWrite.commit and the end of stop_on_signals check the flag.
    if sys.getprofile() is not _hook:
        _profile_before = sys.getprofile()
        sys.setprofile(_hook)


def _hook(frame: FrameType, event: str, arg: Any) -> None:
    if _received is not None and not _unsafe(frame):
        _unhook()
        raise Interrupted(_received)


def _unhook() -> None:
    global _profile_before
    if sys.getprofile() is _hook:
        sys.setprofile(_profile_before)
    _profile_before = None


_OWN_CODE = frozenset({_handler.__code__, _hook.__code__, _unhook.__code__})


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` when a stop signal arrived under :func:`stop_on_signals` (writers call this
    before they commit a file, so that a signal swallowed by a callback still stops the write)."""
    if _received is not None:
        raise Interrupted(_received)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` (a ``KeyboardInterrupt``) inside the block.

    A file being written with :class:`AtomicWrite` is then discarded (its temporary removed, the target
    as it was) and the exception carries the conventional exit status (130, 143). The signal is delivered
    in ordinary Python code, never inside an h5py callback where it would be ignored; a signal that still
    goes unseen stops the block at its end (and any commit before it). Outside the main thread the block
    runs unchanged. The previous handlers are restored afterwards.
    """
    global _received, _active
    if _active or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in _STOP_SIGNALS}
    _received, _active = None, True
    try:
        yield
        raise_if_interrupted()
    finally:
        _active = False
        _unhook()  # a hook that never fired
        for s, handler in previous.items():
            signal.signal(s, handler)
        _received = None

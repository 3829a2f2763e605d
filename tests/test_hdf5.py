"""Tests of the HDF5 leaf under dataset and rollout files (hnnlab._hdf5): opening, attributes, atomic
writes, the schema check."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from hnnlab._hdf5 import (
    AtomicWrite,
    check_schema,
    check_target,
    open_read,
    read_attr,
    read_json_attr,
    write_attrs,
)
from hnnlab.errors import FileFormatError, InvalidArgumentError


class NamedError(FileFormatError):
    """Stands for DatasetError / RolloutFileError: the leaf raises the class it is given."""


def write_h5(path, **attrs):
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3.0)
        for key, value in attrs.items():
            f.attrs[key] = value
    return path


# -- atomic writes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_leaves_nothing_at_the_target(tmp_path, error):
    target = tmp_path / "out" / "x.h5"
    with pytest.raises(error):
        with AtomicWrite(target) as tmp:
            tmp.write_bytes(b"partial")
            raise error("interrupted")
    assert not target.exists()
    assert os.listdir(target.parent) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_overwrite_keeps_the_previous_file_and_leaves_no_temporary_file(tmp_path, error):
    target = write_h5(tmp_path / "x.h5", version=1)
    before = target.read_bytes()
    with pytest.raises(error):
        with AtomicWrite(target, overwrite=True) as tmp:
            write_h5(tmp, version=2)
            raise error("interrupted")
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["x.h5"]


def test_completed_write_replaces_the_target_in_one_step(tmp_path):
    target = write_h5(tmp_path / "x.h5", version=1)
    with AtomicWrite(target, overwrite=True) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".x.h5.") and tmp.name.endswith(".tmp")
        write_h5(tmp, version=2)
        with h5py.File(target) as f:
            assert read_attr(f, "version") == 1  # the old file until the block ends
    with h5py.File(target) as f:
        assert read_attr(f, "version") == 2
    assert os.listdir(tmp_path) == ["x.h5"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600


def test_existing_target_is_refused_with_the_callers_words_and_error(tmp_path):
    target = write_h5(tmp_path / "x.h5")
    with pytest.raises(NamedError, match=r"^output file '.*x\.h5' already exists; pass --overwrite to replace it$"):
        AtomicWrite(target, what="output file", error=NamedError, overwrite_flag="--overwrite")
    with pytest.raises(InvalidArgumentError, match=r"rollout file '.*x\.h5' already exists; pass overwrite=True"):
        check_target(target, overwrite=False, what="rollout file", error=InvalidArgumentError)
    with pytest.raises(NamedError, match="is a directory; give a file name"):
        check_target(tmp_path, overwrite=True, error=NamedError)
    assert check_target(target, overwrite=True) == target


def test_a_file_that_appears_while_writing_is_not_overwritten(tmp_path):
    target = tmp_path / "x.h5"
    writer = AtomicWrite(target, error=NamedError)
    tmp = writer.begin()
    write_h5(tmp, version=2)
    target.write_bytes(b"someone else's")
    with pytest.raises(NamedError, match="appeared while writing; nothing was overwritten"):
        writer.commit()
    assert target.read_bytes() == b"someone else's"
    assert os.listdir(tmp_path) == ["x.h5"]


# -- opening ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, fragment",
    [
        ("missing", "does not exist"),
        ("directory", "is a directory, not an HDF5 file"),
        ("empty", "is empty (0 bytes); it is not an HDF5 file"),
        ("text", "is not an HDF5 file (no HDF5 signature)"),
        ("truncated", "is corrupted or truncated"),
    ],
)
def test_open_of_a_bad_file_names_it_with_the_callers_words(tmp_path, damage, fragment):
    path = tmp_path / "f.h5"
    if damage == "directory":
        path.mkdir()
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("q,p\n1,2\n")
    elif damage == "truncated":
        data = write_h5(tmp_path / "good.h5", note="x" * 4096).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NamedError) as info:
        open_read(path, what="dataset file", error=NamedError)
    assert str(info.value).startswith(f"dataset file {str(path)!r} ")
    assert fragment in str(info.value)


def test_open_is_read_only(tmp_path):
    path = write_h5(tmp_path / "f.h5")
    with open_read(path) as f:
        assert f.mode == "r"
        np.testing.assert_array_equal(f["x"][()], np.arange(3.0))


# -- attributes ---------------------------------------------------------------------------------------------


def test_attributes_round_trip_as_plain_python_and_json(tmp_path):
    system = {"class": "hnnlab.systems:Pendulum", "params": {"g": 3.0, "radius": [1.3, 2.3]}}
    attrs = {"schema": "hnnlab.x", "dof": 2, "dt": 0.1, "names": ["q", "p"], "system": system, "extra": {}}
    with h5py.File(tmp_path / "a.h5", "w") as f:
        write_attrs(f, attrs, json_keys={"system", "extra"})
        f.attrs["raw"] = np.bytes_(b"bytes")
    with open_read(tmp_path / "a.h5") as f:
        assert isinstance(f.attrs["system"], str)  # stored as a JSON string
        assert read_json_attr(f, "system", where="a.h5") == system
        assert read_json_attr(f, "extra", where="a.h5") == {}
        plain = {key: read_attr(f, key) for key in ("schema", "dof", "dt", "names", "raw")}
        assert plain == {"schema": "hnnlab.x", "dof": 2, "dt": 0.1, "names": ["q", "p"], "raw": "bytes"}
        assert type(plain["dof"]) is int and type(plain["dt"]) is float
        assert read_attr(f, "absent") is None and read_json_attr(f, "absent", where="a.h5") is None


def test_bad_json_attributes_name_the_file_and_attribute(tmp_path):
    path = write_h5(tmp_path / "a.h5", broken="{not json", number=3)
    with open_read(path) as f:
        with pytest.raises(NamedError, match=r"^a\.h5: root attribute 'broken' is not valid JSON \("):
            read_json_attr(f, "broken", where="a.h5", error=NamedError)
        with pytest.raises(NamedError, match="root attribute 'number' must be a JSON string, got int 3"):
            read_json_attr(f, "number", where="a.h5", error=NamedError)
        with pytest.raises(NamedError, match="a.h5: missing root attribute 'absent'"):
            read_json_attr(f, "absent", where="a.h5", error=NamedError, required=True)


# -- schema -------------------------------------------------------------------------------------------------


def test_schema_check_names_the_expected_schema_and_version(tmp_path):
    good = write_h5(tmp_path / "good.h5", schema="hnnlab.x", schema_version=1)
    other = write_h5(tmp_path / "other.h5", schema="someone.else", schema_version=1)
    newer = write_h5(tmp_path / "newer.h5", schema="hnnlab.x", schema_version=2)
    none = write_h5(tmp_path / "none.h5")
    check = {"schema": "hnnlab.x", "version": 1, "kind": "hnnlab x file", "error": NamedError}
    with open_read(good) as f:
        check_schema(f, where="good.h5", **check)
    expected = {
        other: "other.h5: root attribute 'schema' is 'someone.else', expected 'hnnlab.x' (not an hnnlab x file)",
        none: "none.h5: root attribute 'schema' is None, expected 'hnnlab.x' (not an hnnlab x file)",
        newer: "newer.h5: root attribute 'schema_version' is 2; this hnnlab reads version 1 only",
    }
    for path, message in expected.items():
        with open_read(path) as f, pytest.raises(NamedError) as info:
            check_schema(f, where=path.name, **check)
        assert str(info.value) == message


# -- stop signals and leftover temporaries -----------------------------------------------------------


def test_a_stop_signal_that_arrives_inside_h5py_is_raised_at_the_next_ordinary_call(tmp_path):
    """SIGTERM delivered while h5py's own code runs (here a visit callback, where the handler would raise
    into h5py) is not lost: the visit completes, the next ordinary call raises Interrupted (exit 143), and the
    AtomicWrite around it leaves neither the target nor its temporary."""
    import signal

    from hnnlab._hdf5 import AtomicWrite, Interrupted, stop_on_signals

    target = tmp_path / "out.h5"
    visited = []

    def visit(name):
        signal.raise_signal(signal.SIGTERM)
        visited.append(name)  # the handler ran just before this line, inside h5py's visit: nothing raised here

    with pytest.raises(Interrupted) as info:
        with stop_on_signals(), AtomicWrite(target) as tmp:
            with h5py.File(tmp, "w") as f:
                f.create_group("a")
                f.visit(visit)
                assert visited == ["a"]
                len(visited)  # ordinary code: raises here
                visited.append("not reached")
    assert info.value.exit_code == 143 and info.value.signum == signal.SIGTERM
    assert visited == ["a"]
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_a_swallowed_stop_signal_still_refuses_the_commit(tmp_path):
    """If no ordinary call comes before the file is committed, AtomicWrite.commit checks the flag."""
    import signal

    from hnnlab import _hdf5

    target = tmp_path / "out.h5"
    with pytest.raises(_hdf5.Interrupted):
        with _hdf5.stop_on_signals():
            writer = _hdf5.AtomicWrite(target)
            tmp = writer.begin()
            tmp.write_bytes(b"data")
            _hdf5._received = signal.SIGINT  # what the handler records when it cannot raise
            writer.commit()
    assert list(tmp_path.iterdir()) == []


def test_write_array_matches_one_write_and_stops_between_slices(tmp_path):
    import signal

    from hnnlab import _hdf5

    array = np.random.default_rng(0).standard_normal((50, 7, 3))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        _hdf5.write_array(f, "x", array, chunks=(1, 7, 3), slice_bytes=7 * 3 * 8 * 4)  # 4 rows per slice
        _hdf5.write_array(f, "empty", np.zeros((0, 2)))
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert np.array_equal(f["x"][()], array) and f["x"].chunks == (1, 7, 3) and f["empty"].shape == (0, 2)
    with pytest.raises(_hdf5.Interrupted), _hdf5.stop_on_signals(), h5py.File(tmp_path / "b.h5", "w") as f:
        _hdf5._received = signal.SIGTERM
        _hdf5.write_array(f, "x", array)


def test_stale_temporaries_of_a_gone_writer_are_removed_and_others_kept(tmp_path):
    import os
    import subprocess
    import time

    from hnnlab import _hdf5

    dead = subprocess.Popen(["true"])
    dead.wait()
    target = tmp_path / "x.h5"
    names = {
        "gone": f".x.h5.{_hdf5._HOST}-{dead.pid}.abcdefgh.tmp",
        "live": f".x.h5.{_hdf5._HOST}-{os.getppid()}.abcdefgh.tmp",
        "other_host": f".x.h5.otherhost-{dead.pid}.abcdefgh.tmp",
        "legacy_old": ".x.h5.k2j4h5g6.tmp",
        "legacy_new": ".x.h5.a1b2c3d4.tmp",
        "other_target": f".y.h5.{_hdf5._HOST}-{dead.pid}.abcdefgh.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"12")
    hour_ago = time.time() - 2 * 3600
    os.utime(tmp_path / names["legacy_old"], (hour_ago, hour_ago))
    with pytest.warns(_hdf5.StaleTemporaryWarning, match=r"removed 2 stale temporary files \(4 B\)"):
        removed = _hdf5.remove_stale_temporaries(target)
    assert sorted(p.name for p in removed) == sorted([names["gone"], names["legacy_old"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        names[k] for k in ("live", "other_host", "legacy_new", "other_target"))
    # the writer's own temporary records its process, so that a later run can tell
    with _hdf5.AtomicWrite(target) as tmp:
        assert tmp.name.startswith(f".x.h5.{_hdf5._HOST}-{os.getpid()}.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done"


def test_a_stop_between_creating_the_temporary_and_recording_it_leaves_nothing(tmp_path, monkeypatch):
    import os
    import tempfile

    from hnnlab import _hdf5

    real = tempfile.mkstemp

    def interrupted(*args, **kwargs):  # the file exists, then the signal lands before begin() records it
        fd, _ = real(*args, **kwargs)
        os.close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(_hdf5.tempfile, "mkstemp", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with _hdf5.AtomicWrite(tmp_path / "x.h5", what="file", error=ValueError):
            pass
    assert list(tmp_path.iterdir()) == []

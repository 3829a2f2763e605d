"""The W&B logger (hnnlab.training.logging)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


def test_wandb_logger_does_not_pass_the_deprecated_anonymous_setting(tmp_path, monkeypatch, capfd) -> None:
    from hnnlab.training.logging import HnnlabWandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = HnnlabWandbLogger(name="quiet", save_dir=str(tmp_path), log_model=False)
    assert "anonymous" not in logger._wandb_init
    logger.experiment.finish()
    captured = capfd.readouterr()
    assert "anonymous" not in captured.out + captured.err
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1


# -- a resumed run continues the same W&B run, and everything stays under runs/ ----------------------


def _wandb_records(path):
    """The records of a W&B transaction log (``run-<id>.wandb``: a 7-byte header, then leveldb's log format)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, pending = path.read_bytes(), 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # full, or last part
            record = pb.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record
        else:  # first or middle part
            pending = chunk if kind == 2 else pending + chunk


def _history_summary_config(run_dir):
    import json

    (log,) = run_dir.glob("run-*.wandb")
    steps, summary, config = [], {}, {}
    for record in _wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            steps.append(int(record.history.step.num))
        elif kind == "summary":
            summary.update({item.key: json.loads(item.value_json) for item in record.summary.update})
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    return steps, summary, config


def test_a_resumed_fit_continues_the_wandb_history_and_summary_and_writes_only_under_runs(
    small_data, tmp_path, monkeypatch
) -> None:
    """``hnnlab fit`` offline: fit 3 epochs, resume from last.ckpt to 5 (logging every 50 steps: the resumed part
    logs no train loss). The resumed part's W&B steps go on from the checkpoint's (not from 0), its summary still
    lists the train loss, its config names the run's own config file (which exists) and the checkpoint it
    resumed from; nothing is written to the home directory or left in the temporary directory."""
    import os
    import subprocess
    import sys

    import torch

    ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "XDG_"))}
    env.update(HOME=str(home), TMPDIR=str(temp), WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT))

    def fit(*args: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "hnnlab.cli", "fit", *common, *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    common = ["--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(small_data["greydanus-spring"]),
              "--trainer.accelerator", "cpu", "--checkpoint.every_n_epochs", "1",
              "--model.model.init_args.hidden", "[16]"]
    fit("--trainer.max_epochs", "3", "--trainer.log_every_n_steps", "1")
    (first,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    run_id = first.name.rsplit("-", 1)[1]
    last = tmp_path / "runs" / "hnnlab" / run_id / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=False)["hnnlab"]
    assert saved["wandb_run_id"] == run_id and saved["wandb_step"] > 0 and "train/loss" in saved["metrics"]
    fit("--trainer.max_epochs", "5", "--trainer.log_every_n_steps", "50", "--ckpt_path", str(last))
    (resumed,) = set((tmp_path / "runs" / "wandb").glob("offline-run-*")) - {first}
    assert resumed.name.endswith(f"-{run_id}")
    first_steps, _, first_config = _history_summary_config(first)
    steps, summary, config = _history_summary_config(resumed)
    assert first_steps[0] == 0
    assert steps and steps[0] == saved["wandb_step"] and steps == sorted(steps)
    assert summary["train/loss"] == pytest.approx(saved["metrics"]["train/loss"])  # not logged since the resume
    assert "rollout/energy_error" in summary
    run_dir = tmp_path / "runs" / "hnnlab" / run_id
    assert first_config["config_file"] == str(run_dir / "config.yaml")
    assert config["config_file"] == str(run_dir / "config.1.yaml")
    assert (run_dir / "config.yaml").is_file() and (run_dir / "config.1.yaml").is_file()
    assert "max_epochs: 3" in (run_dir / "config.yaml").read_text()  # each its own
    assert "max_epochs: 5" in (run_dir / "config.1.yaml").read_text()
    assert config["resumed_from"] == str(last)
    assert config["config_sources"] == [str(ROOT / "configs/spring_hnn.yaml")]
    assert not (tmp_path / "runs" / "config.yaml").exists()
    assert list((tmp_path / "runs" / "wandb" / "data").rglob("*")), "artifacts are staged under runs/"
    assert [p for p in home.rglob("*") if "wandb" in str(p)] == []
    assert list(temp.iterdir()) == []

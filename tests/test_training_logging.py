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

"""Weights & Biases tracking: offline by default, online when the environment allows it.

The mode is steered with the environment only (``WANDB_MODE``), because ``WandbLogger(offline=True)``
would override ``WANDB_MODE=disabled``:

- ``WANDB_MODE`` already set (``online``, ``offline``, ``disabled``): respected as is;
- otherwise, an API key (``WANDB_API_KEY``, or a ``~/.netrc`` entry for the W&B host) means online;
- otherwise offline: runs land in ``<save_dir>/wandb/offline-run-*`` and can be uploaded later with
  ``wandb sync``.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger


def wandb_mode() -> str:
    """Choose (and export) the W&B mode as described in the module docstring."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    mode = "online" if _has_api_key() else "offline"
    os.environ["WANDB_MODE"] = mode
    return mode


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


class HnnlabWandbLogger(WandbLogger):
    """:class:`WandbLogger` with hnnlab's defaults: project ``hnnlab``, runs under ``runs/``,
    checkpoints logged as artifacts, and the mode chosen from the environment (:func:`wandb_mode`).

    Pass ``id`` and ``resume="allow"`` to continue an earlier run (``hnnlab fit --ckpt_path`` does
    this automatically from the run id stored in the checkpoint).
    """

    def __init__(
        self,
        project: str = "hnnlab",
        name: str | None = None,
        save_dir: str = "runs",
        id: str | None = None,  # noqa: A002 - W&B's name
        resume: str | None = None,
        log_model: bool | str = True,
        tags: list[str] | None = None,
        group: str | None = None,
        **kwargs: Any,
    ) -> None:
        wandb_mode()
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {}
        if resume is not None:
            extra["resume"] = resume
        super().__init__(
            project=project,
            name=name,
            save_dir=save_dir,
            id=id,
            log_model=log_model,
            tags=tags,
            group=group,
            **extra,
            **kwargs,
        )
        # Lightning always passes anonymous=None to wandb.init, which current wandb answers with a
        # deprecation warning on every run ("The anonymous setting has no effect"); None means "not set".
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)

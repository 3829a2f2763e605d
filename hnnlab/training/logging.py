"""Weights & Biases tracking: offline by default, online when the environment allows it.

The mode is steered with the environment only (``WANDB_MODE``), because ``WandbLogger(offline=True)``
would override ``WANDB_MODE=disabled``:

- ``WANDB_MODE`` already set (``online``, ``offline``, ``disabled``): respected as is;
- otherwise, an API key (``WANDB_API_KEY``, or a ``~/.netrc`` entry for the W&B host) means online;
- otherwise offline: runs land in ``<save_dir>/wandb/offline-run-*`` and can be uploaded later with
  ``wandb sync``.

Everything a run writes stays under ``save_dir`` (``runs/`` by default): W&B's run directories, and its
artifact staging, cache and download folders (``WANDB_DATA_DIR``, ``WANDB_CACHE_DIR``, ``WANDB_ARTIFACT_DIR``
under ``<save_dir>/wandb/``, unless the environment already sets them), not the user's home.

A resumed run continues the same W&B run (same id, ``resume="allow"``): its history goes on from the W&B step
stored in the checkpoint, and its summary starts from the metrics the checkpoint recorded (so train and
validation metrics not logged again since the resume are still listed). Offline, W&B writes each resumed part
to its own ``offline-run-*`` directory under the same id; ``wandb sync`` uploads them in order of start time.
"""

from __future__ import annotations

import math
import netrc
import os
from collections.abc import Mapping
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
        keep_under(save_dir)
        self._continue_at: int | None = None
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

    def continue_from(self, info: Mapping[str, Any]) -> None:
        """Continue the run that wrote a checkpoint (``checkpoint["hnnlab"]``): the history goes on after its
        W&B step, and the summary starts from its recorded metrics (the resumed part's own values replace them)."""
        step = info.get("wandb_step")
        self._continue_at = int(step) if isinstance(step, int) and step > 0 else None
        metrics = {k: v for k, v in (info.get("metrics") or {}).items() if isinstance(v, int | float)}
        if metrics and self._experiment_started():
            summary = self.experiment.summary
            for key, value in metrics.items():
                if key not in summary.keys():
                    summary[key] = value

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._continue_at is not None:
            at, self._continue_at = self._continue_at, None
            run = self.experiment
            if at > run.step:  # offline, W&B restarts a resumed run's step at 0; online it knows the step
                payload = dict(metrics) if step is None else {**metrics, "trainer/global_step": step}
                run.log(payload, step=at)
                return
        super().log_metrics(metrics, step)

    def _experiment_started(self) -> bool:
        try:
            return self.experiment is not None
        except Exception:  # noqa: BLE001 - W&B disabled or failing: nothing to continue
            return False


_DIRS_SET: dict[str, str] = {}  # the W&B folders that keep_under set, and to what


def keep_under(save_dir: str | os.PathLike) -> None:
    """Point W&B's staging, cache and artifact folders into ``<save_dir>/wandb/`` unless already set
    (:func:`release_dirs` undoes it)."""
    root = Path(save_dir).resolve() / "wandb"
    for name, sub in (("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_ARTIFACT_DIR", "artifacts")):
        if name not in os.environ:
            os.environ[name] = _DIRS_SET[name] = str(root / sub)


def release_dirs() -> None:
    """Unset the folders :func:`keep_under` set (once the run is finished), so the next run picks its own."""
    for name, value in list(_DIRS_SET.items()):
        if os.environ.get(name) == value:
            del os.environ[name]
        del _DIRS_SET[name]


def wandb_step(trainer: Any) -> int | None:
    """The W&B step of the trainer's W&B run (the step of its next log call), or ``None``."""
    for logger in getattr(trainer, "loggers", []):
        if isinstance(logger, WandbLogger) and getattr(logger, "_experiment", None) is not None:
            try:
                return int(logger.experiment.step)
            except Exception:  # noqa: BLE001 - disabled runs and shared mode have no step
                return None
    return None


def scalar_metrics(trainer: Any) -> dict[str, float]:
    """The trainer's finite scalar metrics (``callback_metrics``), as floats."""
    out: dict[str, float] = {}
    for key, value in getattr(trainer, "callback_metrics", {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError):
            continue
        if math.isfinite(number):
            out[key] = number
    return out

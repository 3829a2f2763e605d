"""Lightning callbacks: checkpoints that end with the final weights, plain progress lines for CI logs,
and rollout metrics during training.

Side effects (printing, plots, media) live here, not in the LightningModule, and run on rank zero;
metrics are logged from every rank with ``sync_dist`` so that all ranks agree.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor

from hnnlab.errors import ConvergenceError, InvalidArgumentError, NonFiniteStateError


class HnnlabCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (same arguments), except that with ``save_last`` the end of training
    always writes ``last.ckpt`` with the final weights.

    Lightning's own writes ``last.ckpt`` only beside a periodic save, and at the end only when nothing was
    saved at all: a run of 250 steps that checkpoints every 100 would keep the weights of step 200.

    At the end of a training epoch that saves nothing (not an ``every_n_epochs``-th one), it returns before
    Lightning's copy of every logged metric (``_monitor_candidates``, a deepcopy of ``callback_metrics``), which
    a full-batch run, one step per epoch, would otherwise pay at every step.
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning's method saves at this point only on an every_n_epochs-th epoch, or a "link" last checkpoint.
        due = self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0
        if due or (self.save_last == "link" and self._last_checkpoint_saved):
            super().on_train_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A save at this step (best-k, periodic or last) has written last.ckpt beside it already.
        if self.save_last and not trainer.fast_dev_run and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)


class PlainProgressLog(pl.Callback):
    """One plain line per epoch (for CI and log files, where a live progress bar is noise).

    A line is printed after the first and the last epoch, after every ``every_n_epochs``-th epoch, and
    otherwise at most once every ``min_interval_s`` seconds (full-batch runs have thousands of
    one-step epochs).
    """

    def __init__(self, every_n_epochs: int = 1, min_interval_s: float = 5.0) -> None:
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise InvalidArgumentError(f"every_n_epochs must be an integer >= 1, got {every_n_epochs!r}")
        self.every_n_epochs = every_n_epochs
        self.min_interval_s = float(min_interval_s)
        self._start = self._last = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.perf_counter()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        now = time.perf_counter()
        due = (
            epoch == 0
            or _is_last_epoch(trainer)
            or (self.every_n_epochs > 1 and (epoch + 1) % self.every_n_epochs == 0)
            or (self.every_n_epochs == 1 and now - self._last >= self.min_interval_s)
        )
        if not due:
            return
        self._last = now
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        shown = "  ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        total = trainer.max_epochs if trainer.max_epochs not in (None, -1) else "?"
        print(f"epoch {epoch + 1}/{total} step {trainer.global_step} ({now - self._start:.1f}s)  {shown}", flush=True)

    def state_dict(self) -> dict[str, Any]:
        return {}


def _is_last_epoch(trainer: pl.Trainer) -> bool:
    """Whether the epoch that just ended is the last one of this fit (epoch or step limit, fast_dev_run)."""
    if trainer.fast_dev_run:
        return True
    if trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs:
        return True
    return trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps


class RolloutMetricsCallback(pl.Callback):
    """Roll the model out from held-out initial states and log conservation and accuracy metrics.

    Every ``every_n_epochs`` training epochs (and after the last one), the first ``n_states``
    trajectories of the ``split`` split (``"val"``, or ``"test"`` when the dataset has no val split)
    give initial states ``x_0``; the model is integrated for ``n_steps`` steps of the dataset's ``dt``
    with ``integrator`` (by default :func:`hnnlab.evaluate.default_integrator` of the model), and the
    datamodule's analytic system is integrated from the same states at high accuracy
    (:func:`hnnlab.evaluate.reference_integrator`). Logged (means over the initial states):

    - ``rollout/energy_error``: ``max_t |E(x_t) - E(x_0)| / |E(x_0)|`` with the true energy ``E``;
    - ``rollout/model_energy_error``: the same with the model's learned energy (models that have one);
    - ``rollout/mse``: mean squared error against the reference over all times and components;
    - ``rollout/vpt``: valid prediction time (normalised error threshold ``vpt_threshold``);
    - ``rollout/finite``: 1 when the rollout stayed finite, else 0 (then the other metrics are inf,
      and ``vpt`` is the time of the last finite state, 0 when an implicit solve or an LNN mass matrix
      failed; a warning gives the reason).

    Under DDP each rank rolls out its share of the states and the metrics are averaged over ranks
    (``sync_dist``); phase portraits and energy-error plots are drawn on rank zero only and sent to
    Weights & Biases as images (skipped when no W&B logger is attached or ``WANDB_MODE=disabled``).
    ``hnnlab test`` runs it once on the test split with the prefix ``test_rollout/``.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        n_states: int = 8,
        n_steps: int = 100,
        integrator: str | None = None,
        split: str = "val",
        vpt_threshold: float = 0.01,
        plots: bool = True,
    ) -> None:
        for name, value in (("every_n_epochs", every_n_epochs), ("n_states", n_states), ("n_steps", n_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
        if split not in ("val", "test"):
            raise InvalidArgumentError(f"split must be 'val' or 'test', got {split!r}")
        if not (isinstance(vpt_threshold, int | float) and math.isfinite(vpt_threshold) and vpt_threshold > 0):
            raise InvalidArgumentError(f"vpt_threshold must be a finite number > 0, got {vpt_threshold!r}")
        if integrator is not None:
            from hnnlab.integrators import get_integrator

            get_integrator(integrator)  # refuse an unknown name before training starts
        self.every_n_epochs, self.n_states, self.n_steps = every_n_epochs, n_states, n_steps
        self.integrator, self.split, self.vpt_threshold, self.plots = integrator, split, vpt_threshold, plots
        self._reference: dict[tuple[str, int, int], tuple[Tensor, Tensor]] = {}

    # -- hooks --------------------------------------------------------------------------------------

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0 or _is_last_epoch(trainer):
            self.evaluate(trainer, pl_module, self.split, prefix="rollout")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.evaluate(trainer, pl_module, "test", prefix="test_rollout")

    # -- work ---------------------------------------------------------------------------------------

    def evaluate(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str, *, prefix: str
    ) -> dict[str, float]:
        """Roll out, log the metrics (synced over ranks), draw plots on rank zero; returns this rank's metrics."""
        from hnnlab.audit import metrics as M
        from hnnlab.evaluate import default_integrator
        from hnnlab.integrators import get_integrator
        from hnnlab.rollout import rollout

        datamodule = trainer.datamodule
        model = pl_module.model
        split = self._available_split(datamodule, split)
        x0, reference, t = self._reference_rollout(datamodule, split, trainer.global_rank, trainer.world_size)
        dtype = next(model.parameters()).dtype
        integrator = get_integrator(self.integrator or default_integrator(model))
        integrator.check_compatible(model)  # a wrong pairing is a configuration error, raised as such
        was_training = model.training
        model.eval()
        finite, stop = True, 0.0
        try:
            with torch.no_grad():
                pred = rollout(model, integrator, x0.to(pl_module.device, dtype), datamodule.dt, self.n_steps)
            pred = pred.detach().to("cpu", torch.float64)  # (n, n_steps + 1, 2 * dof)
        except NonFiniteStateError as exc:  # an untrained model may well blow up: a metric, not a crash
            finite, stop, reason = False, max(exc.time - datamodule.dt, 0.0), str(exc)
        except (ConvergenceError, InvalidArgumentError) as exc:  # implicit solver, singular LNN mass matrix
            finite, reason = False, str(exc)
        finally:
            model.train(was_training)
        if not finite:
            rank_zero_warn(f"RolloutMetricsCallback: the rollout at epoch {trainer.current_epoch} failed: {reason}")
        system = datamodule.system
        values: dict[str, float] = {}
        errors: dict[str, Tensor] = {}  # (n, n_steps + 1) relative energy errors, for the plots
        if finite:
            errors["system"] = M.relative_energy_error(system.energy(pred))
            values["energy_error"] = float(errors["system"].amax(dim=1).mean())
            if model.has_energy:  # declared by every model class (hnnlab.fields protocol)
                with torch.no_grad():
                    learned = model.energy(pred.to(pl_module.device, dtype)).to("cpu", torch.float64)
                errors["model"] = M.relative_energy_error(learned)
                values["model_energy_error"] = float(errors["model"].amax(dim=1).mean())
            values["mse"] = M.mse(pred, reference)
            vpt, _ = M.valid_prediction_time(pred, reference, t, threshold=self.vpt_threshold)
            values["vpt"] = float(vpt.mean())
        else:
            values["energy_error"] = math.inf
            if model.has_energy:
                values["model_energy_error"] = math.inf
            values["mse"] = math.inf
            values["vpt"] = float(stop)
        values["finite"] = 1.0 if finite else 0.0
        for key, value in values.items():  # the same keys on every rank: sync_dist reduces them together
            pl_module.log(f"{prefix}/{key}", value, sync_dist=True, on_step=False, on_epoch=True)
        if finite and self.plots:
            self._plot(trainer, prefix, t, pred, reference, errors, system, dtype)
        return values

    def _available_split(self, datamodule: Any, split: str) -> str:
        splits = datamodule.metadata["splits"]
        if split in splits:
            return split
        if split == "val" and "test" in splits:
            return "test"
        raise InvalidArgumentError(
            f"RolloutMetricsCallback: the dataset has no {split!r} split for initial states "
            f"(splits: {', '.join(splits)})"
        )

    def _reference_rollout(
        self, datamodule: Any, split: str, rank: int, world_size: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """This rank's initial states ``(n, 2 * dof)``, their true trajectories ``(n, n_steps + 1, 2 * dof)``
        and the times ``(n_steps + 1,)``, all float64 on the CPU; computed once and cached."""
        key = (split, rank, world_size)
        if key not in self._reference:
            from hnnlab.data.io import open_file
            from hnnlab.data.schema import CLEAN_FIELD
            from hnnlab.evaluate import reference_integrator
            from hnnlab.rollout import rollout

            with open_file(datamodule.path) as file:
                group = file[split]
                states = group[CLEAN_FIELD] if CLEAN_FIELD in group else group["state"]  # clean states if noisy
                n = min(self.n_states, states.shape[0])
                x0_all = torch.from_numpy(states[:n, 0]).to(torch.float64)  # (n, 2 * dof)
            # Each rank takes its share (all ranks the same states when there are fewer than ranks).
            x0 = x0_all[rank::world_size] if n >= world_size else x0_all
            system = datamodule.system
            integ, substeps = reference_integrator(system)
            dt = datamodule.dt
            with torch.no_grad():
                reference = rollout(system, integ, x0, dt / substeps, self.n_steps * substeps, substeps)
            t = torch.arange(self.n_steps + 1, dtype=torch.float64) * dt
            self._reference[key] = (x0, reference, t)
        return self._reference[key]

    @rank_zero_only
    def _plot(self, trainer: pl.Trainer, prefix: str, t: Tensor, pred: Tensor, reference: Tensor,
              errors: dict[str, Tensor], system: Any, dtype: torch.dtype) -> None:
        from lightning.pytorch.loggers import WandbLogger

        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers or os.environ.get("WANDB_MODE") == "disabled":
            return
        from hnnlab.audit.plots import save_figure

        figures = rollout_figures(t, pred, reference, errors, system, dtype)
        with tempfile.TemporaryDirectory(prefix="hnnlab-plots-") as tmp:
            paths = {name: save_figure(fig, os.path.join(tmp, f"{name}.png")) for name, fig in figures.items()}
            for logger in loggers:
                for name, path in paths.items():
                    logger.log_image(f"{prefix}/{name}", [str(path)], step=trainer.global_step)


def rollout_figures(
    t: Tensor, pred: Tensor, reference: Tensor, errors: dict[str, Tensor], system: Any, dtype: torch.dtype
) -> dict[str, Any]:
    """The figures :class:`RolloutMetricsCallback` sends to W&B: ``phase_portrait`` (prediction against the
    reference, the first trajectories) and ``energy_error`` (``errors``: label -> ``(n, n_times)`` relative
    energy errors, median and band over the states; log floors from the model's ``dtype``)."""
    from hnnlab.audit.plots import energy_error_figure, log_floor, phase_portrait_figure

    names = system.state_names()  # every AbstractSystem names its state components
    return {
        "phase_portrait": phase_portrait_figure(pred, reference=reference, state_names=names, t=t, field=system),
        "energy_error": energy_error_figure(t, errors, floor=log_floor(dtype)),
    }


def wandb_run_id(trainer: pl.Trainer) -> str | None:
    """The id of the trainer's W&B run, or None without one."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            return getattr(run, "id", None)
    return None

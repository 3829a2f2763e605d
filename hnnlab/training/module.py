"""The LightningModule that trains any hnnlab model.

It receives the network as an ``nn.Module`` (a :class:`hnnlab.models.AbstractModel`), never builds
it from flags, and only computes losses and calls ``self.log``; plots and media live in callbacks.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from hnnlab.data.io import read_metadata
from hnnlab.data.schema import INPUTS_ATTR
from hnnlab.errors import HnnlabError, InvalidArgumentError
from hnnlab.inputs import INTERPOLATIONS
from hnnlab.integrators import get_integrator
from hnnlab.models.base import AbstractModel
from hnnlab.training import losses
from hnnlab.training.callbacks import wandb_run_id
from hnnlab.training.checkpoint import model_entry
from hnnlab.training.logging import scalar_metrics, wandb_step


class NonFiniteLossError(HnnlabError, FloatingPointError):
    """A loss term became NaN or infinite: training stops instead of producing a NaN model."""


def check_model_inputs(model: str, n_inputs: int, metadata: dict[str, Any], path: str, *,
                       flag: str = "n_inputs") -> None:
    """Refuse a model (named ``model``, taking ``n_inputs`` inputs) whose inputs are not the dataset's: a model that
    takes inputs given a file without the root attribute ``inputs`` (and per-split ``inputs`` datasets), a model
    that takes none given a file with them, or different counts. ``flag`` names the model's option in the
    message (the CLI's ``--model.model.init_args.n_inputs``)."""
    info = metadata.get(INPUTS_ATTR)
    names = list(info["names"]) if isinstance(info, dict) and "names" in info else []
    if n_inputs and not names:
        raise InvalidArgumentError(
            f"{path}: the dataset has no inputs (no root attribute 'inputs', no per-split 'inputs' dataset), but "
            f"{model} takes {flag} = {n_inputs} inputs; train it on a file simulated with inputs (hnnlab simulate "
            f"--inputs FAMILY) or set {flag} = 0"
        )
    if names and n_inputs != len(names):
        allowed = f"set {flag} = {len(names)}" if n_inputs else f"use a model that takes {len(names)} input(s) (phnn)"
        raise InvalidArgumentError(
            f"{path}: the dataset has {len(names)} input(s) ({', '.join(names)}; root attribute 'inputs', per-split "
            f"dataset 'inputs'), but {model} takes {flag} = {n_inputs}; {allowed}, or use data without inputs"
        )


def _default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


class DynamicsModule(pl.LightningModule):
    """Train a dynamics model by derivative matching or multi-step rollouts through an integrator.

    Args:
        model: the network, an :class:`~hnnlab.models.AbstractModel` (``vector_field(t, x)``, ``energy(x)``
            and the declared ``is_separable``, ``has_energy``, ...); checkpoints rebuild it, injected
            networks included (:mod:`hnnlab.training.checkpoint`).
        loss: ``"derivative"`` matches ``dx/dt`` at data states (needs the datamodule's ``"pairs"``
            mode); ``"rollout"`` integrates windows of ``k`` steps with ``integrator`` and matches the
            states (``"windows"`` mode), backpropagating through every step.
        integrator: registered integrator name for ``"rollout"`` loss (and used by callbacks).
        substeps: integrator steps per saved time step in the rollout loss.
        metric: ``"mse"`` or ``"l1"``.
        energy_weight: weight of the energy-conservation penalty (0 disables it). With derivatives:
            ``(grad E . dx/dt_true)^2``; with rollouts: ``(E(x_t) - E(x_0))^2`` along the prediction.
        derivative_weight: with ``loss="rollout"``, adds this weight times the derivative loss at the first
            state of every window (the exact ``dx/dt`` there: the datamodule's ``with_dxdt=True``), so that a
            model trained through an integrator also matches the field's shape (0 disables it). Each saved
            state but a trajectory's last ``window`` starts one window, so each is counted once.
        allow_nonseparable: let a separable-only integrator run on a non-separable model (warns).
        input_interpolation: how the windows' inputs are interpolated between saved times in the rollout loss
            (``"zoh"`` or ``"linear"``); ``None`` takes the dataset file's (read when the trainer's datamodule is an
            :class:`~hnnlab.data.datamodule.HDF5DataModule`).
        optimizer: optimizer factory (``params -> Optimizer``); Adam with lr 1e-3 by default.
        scheduler: optional learning-rate scheduler factory (``optimizer -> LRScheduler``).
    """

    def __init__(
        self,
        model: AbstractModel,
        loss: Literal["derivative", "rollout"] = "derivative",
        integrator: str = "leapfrog",
        substeps: int = 1,
        metric: Literal["mse", "l1"] = "mse",
        energy_weight: float = 0.0,
        derivative_weight: float = 0.0,
        allow_nonseparable: bool = False,
        input_interpolation: str | None = None,
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if loss not in ("derivative", "rollout"):
            raise InvalidArgumentError(f"loss must be 'derivative' or 'rollout', got {loss!r}")
        if metric not in ("mse", "l1"):
            raise InvalidArgumentError(f"metric must be 'mse' or 'l1', got {metric!r}")
        if not isinstance(substeps, int) or substeps < 1:
            raise InvalidArgumentError(f"substeps must be an integer >= 1, got {substeps!r}")
        if not math.isfinite(energy_weight) or energy_weight < 0:
            raise InvalidArgumentError(f"energy_weight must be a finite number >= 0, got {energy_weight!r}")
        if (isinstance(derivative_weight, bool) or not isinstance(derivative_weight, int | float)
                or not math.isfinite(derivative_weight) or derivative_weight < 0):
            raise InvalidArgumentError(f"derivative_weight must be a finite number >= 0, got {derivative_weight!r}")
        if derivative_weight > 0 and loss != "rollout":
            raise InvalidArgumentError(
                "derivative_weight applies to loss='rollout' (with loss='derivative' the derivative loss is the whole "
                f"loss), got derivative_weight={derivative_weight!r} with loss={loss!r}"
            )
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"])
        self.model = model
        self.loss_kind = loss
        self.integrator = get_integrator(integrator, allow_nonseparable=allow_nonseparable)
        self.substeps = substeps
        self.metric = metric
        self.energy_weight = energy_weight
        self.derivative_weight = float(derivative_weight)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.last_train_loss: Tensor | None = None  # the latest training step's loss
        if input_interpolation is not None and input_interpolation not in INTERPOLATIONS:
            raise InvalidArgumentError(
                f"input_interpolation must be one of {', '.join(map(repr, INTERPOLATIONS))} or None (the dataset's), "
                f"got {input_interpolation!r}"
            )
        self.input_interpolation = input_interpolation
        if loss == "rollout":
            self.integrator.check_compatible(model)
        if energy_weight > 0 and not model.has_energy:
            raise InvalidArgumentError(
                f"energy_weight > 0 needs a model with an energy, but {type(model).__name__}.energy returns None"
            )

    def setup(self, stage: str) -> None:
        """Refuse, before any step, a model that needs inputs given a dataset file without them, or the reverse
        (:func:`check_model_inputs`), when the trainer's datamodule reads a file."""
        from hnnlab.data.datamodule import HDF5DataModule

        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if isinstance(datamodule, HDF5DataModule):
            model = self.model
            metadata = read_metadata(datamodule.path)
            check_model_inputs(type(model).__name__, model.n_inputs, metadata, datamodule.path)
            info = metadata.get(INPUTS_ATTR)
            stored = info.get("interpolation") if isinstance(info, dict) else None
            if model.n_inputs and self.input_interpolation is None:
                self.input_interpolation = stored
            elif model.n_inputs and stored is not None and self.input_interpolation != stored:
                raise InvalidArgumentError(
                    f"{datamodule.path}: the dataset's inputs are interpolated by {stored!r} (root attribute "
                    f"'inputs'), but input_interpolation (--model.input_interpolation) = {self.input_interpolation!r}; "
                    "leave it unset (None) to use the dataset's"
                )

    # ----------------------------------------------------------------------------------------------

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self.model(t, x)

    def loss_terms(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The (unweighted) loss terms of a batch, by name."""
        terms: dict[str, Tensor] = {}
        if self.loss_kind == "derivative":
            if "dxdt" not in batch:
                raise InvalidArgumentError(
                    "loss='derivative' needs (state, dx/dt) pairs: set the datamodule's mode to 'pairs'"
                )
            x, dxdt = batch["x"], batch["dxdt"]
            t = batch.get("t", 0.0)
            u = batch.get("u") if self.model.n_inputs else None
            terms["derivative"] = losses.derivative_loss(self.model, x, dxdt, self.metric, t, u)
            penalty = self.model.penalty(t, x)
            if penalty is not None:
                terms["penalty"] = penalty
            if self.energy_weight > 0:
                terms["energy"] = losses.energy_flow_penalty(self.model.energy, x, dxdt)
        else:
            if "states" not in batch:
                raise InvalidArgumentError(
                    "loss='rollout' needs windows of consecutive states: set the datamodule's mode to 'windows'"
                )
            states, t = batch["states"], batch["t"]
            dt = float(t[0, 1] - t[0, 0])
            u = self._window_inputs(batch)
            terms["rollout"], pred = losses.rollout_loss(
                self.model, self.integrator, states, dt, self.metric, self.substeps,
                t=t if self.model.time_dependent or u is not None else None, u=u,
                interpolation=self.input_interpolation or "zoh",
            )
            if self.energy_weight > 0:
                terms["energy"] = losses.energy_drift_penalty(self.model.energy, pred, states[:, 0])
            if self.derivative_weight > 0:
                if "dxdt" not in batch:
                    raise InvalidArgumentError(
                        "derivative_weight > 0 needs the exact dx/dt in the windows: set the datamodule's with_dxdt "
                        "to true"
                    )
                # at the windows' first states: each saved state of a trajectory (but its last few) counted once
                terms["derivative"] = losses.derivative_loss(self.model, states[:, 0], batch["dxdt"][:, 0], self.metric,
                                                             t[:, 0], None if u is None else u[:, 0])
        return terms

    def _window_inputs(self, batch: dict[str, Tensor]) -> Tensor | None:
        """The windows' inputs ``(B, k + 1, n_inputs)`` for a model that takes them (``None`` for one that takes
        none); refuses windows without them, or without a known interpolation."""
        if not self.model.n_inputs:
            return None
        if "u" not in batch:
            raise InvalidArgumentError(
                f"{type(self.model).__name__} takes n_inputs = {self.model.n_inputs} inputs, but the windows carry "
                "none (no 'u'): train it on a dataset file with inputs (hnnlab simulate --inputs FAMILY)"
            )
        if self.input_interpolation is None:
            raise InvalidArgumentError(
                "loss='rollout' with inputs needs their interpolation between saved times: train through "
                "HDF5DataModule (it reads the dataset's) or set input_interpolation to 'zoh' or 'linear'"
            )
        return batch["u"]

    def _weight(self, term: str) -> float:
        """The weight of a loss term in the total: the energy penalty's and, beside a rollout loss, the
        derivative term's; every other term counts once."""
        if term == "energy":
            return self.energy_weight
        if term == "derivative" and self.loss_kind == "rollout":
            return self.derivative_weight
        return 1.0

    def _step(self, batch: dict[str, Tensor], batch_idx: int, stage: str) -> Tensor:
        terms = self.loss_terms(batch)
        total = sum(
            (self._weight(k) * v for k, v in terms.items()),
            start=torch.zeros((), dtype=next(iter(terms.values())).dtype, device=self.device),
        )
        if not bool(torch.isfinite(total)):
            bad = [f"{k} = {float(v.detach())}" for k, v in terms.items() if not bool(torch.isfinite(v))]
            raise NonFiniteLossError(
                f"{stage} loss became non-finite at global step {self.global_step} (epoch {self.current_epoch}, "
                f"batch {batch_idx}): loss term {', '.join(bad) or 'total'}; lower the learning rate, check the "
                "data for NaNs, or use a smaller step size"
            )
        if stage == "train":
            self.last_train_loss = total.detach()  # for progress lines between logging steps
        if stage == "train" and not self._logging_step():
            return total  # self.log costs ~1 ms of Python per call: skip steps the logger would not write
        batch_size = next(iter(batch.values())).shape[0]
        sync = stage != "train"
        self.log(f"{stage}/loss", total, prog_bar=True, batch_size=batch_size, sync_dist=sync)
        if len(terms) > 1:
            for k, v in terms.items():
                self.log(f"{stage}/{k}_loss", v, batch_size=batch_size, sync_dist=sync)
        return total

    def _logging_step(self) -> bool:
        """Whether the trainer writes logs after this training step (every ``log_every_n_steps``)."""
        connector = getattr(self._trainer, "_logger_connector", None) if self._trainer is not None else None
        return bool(getattr(connector, "should_update_logs", True))

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        """Cast floating batch entries to the model's dtype (datasets are stored in float64)."""
        dtype = self.dtype if isinstance(self.dtype, torch.dtype) else torch.get_default_dtype()
        return {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, batch_idx, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._require_grad_mode()
        return self._step(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._require_grad_mode()
        return self._step(batch, batch_idx, "test")

    def _require_grad_mode(self) -> None:
        if torch.is_inference_mode_enabled():
            raise InvalidArgumentError(
                "hnnlab models differentiate their energy with respect to the state, which inference mode forbids: "
                "build the Trainer with inference_mode=False"
            )

    def configure_optimizers(self) -> Any:
        try:
            optimizer = self.optimizer_factory(self.parameters())
        except ValueError as exc:  # torch's "Invalid learning rate: -0.1" and the like
            raise InvalidArgumentError(f"the optimizer refuses its arguments: {exc}") from None
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add ``checkpoint["hnnlab"]``: what rebuilds the model (its description and any injected
        network, :func:`hnnlab.training.checkpoint.model_entry`), the integrator, the W&B run id and step, and
        the scalar metrics (a resumed run's W&B summary starts from them)."""
        trainer = self._trainer
        checkpoint["hnnlab"] = {
            **model_entry(self.model),
            "integrator": self.integrator.describe(),
            "wandb_run_id": wandb_run_id(trainer) if trainer is not None else None,
            # A resumed run continues the W&B history after this step and starts its summary from these.
            "wandb_step": wandb_step(trainer) if trainer is not None else None,
            "metrics": scalar_metrics(trainer) if trainer is not None else {},
        }

"""Training with Lightning: losses, the LightningModule, callbacks, the W&B logger, the CLI, and the one
entry that trains, :func:`fit` (``hnnlab fit`` runs through it too)."""

from hnnlab.training.runner import FitResult as FitResult
from hnnlab.training.runner import build_trainer as build_trainer
from hnnlab.training.runner import fit as fit

"""Training with Lightning: losses, the LightningModule, callbacks, the W&B logger and the CLI."""

"""Lightning's side: the LightningModule, the project's callbacks, the diagnostics monitors, the checkpoint writer."""

"""What trains: the LightningModule, its callbacks, optimizers and schedules, probes, the host-sync counter."""

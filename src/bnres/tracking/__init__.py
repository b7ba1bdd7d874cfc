"""Where results are seen: loggers, W&B groups and local runs, the sweep dashboard, the filtered third-party messages."""

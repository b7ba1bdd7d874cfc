"""The run lifecycle: the Hydra task, one job, its folder and record, preflight, progress, preemption."""

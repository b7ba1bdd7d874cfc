"""W&B run groups: a short, stable name per sweep, not a filesystem path.

A sweep's runs share one W&B group named after the sweep folder's last two path parts:
``multirun/train/2026-12-01_08-53-35`` -> ``train/2026-12-01_08-53-35``, ``results/reproduce/cpu/bn_lr``
-> ``cpu/bn_lr``. The name depends only on the folder (not on the working directory), so a rerun
or a resumed job lands in the same group. One-off runs are in group ``single``.

Set it yourself with ``logger.wandb.group=NAME`` (for a run or a whole sweep).
``scripts/reproduce.py`` puts every preset of one call into :func:`reproduce_group`
(``reproduce/cpu`` or ``reproduce/cifar10``); the presets differ by ``job_type`` (their ``task_name``).
"""

from __future__ import annotations

import os
from pathlib import PurePath

SINGLE_RUN_GROUP = "single"
#: how many trailing folder names make up a sweep's group
GROUP_PARTS = 2
#: job_type of the analysis run (bnres.analysis.wandb_run), kept out of the claim panels of reports
ANALYSIS_JOB_TYPE = "analysis"


def sweep_group(sweep_dir: str | os.PathLike | None) -> str:
    """The W&B group of the runs of the sweep in ``sweep_dir`` (``single`` when there is no sweep)."""
    if not sweep_dir:
        return SINGLE_RUN_GROUP
    parts = [p for p in PurePath(os.path.abspath(sweep_dir)).parts if p not in ("/", "\\") and not p.endswith(":\\")]
    return "/".join(parts[-GROUP_PARTS:]) or SINGLE_RUN_GROUP


def reproduce_group(kind: str) -> str:
    """The one group of every preset run by one ``scripts/reproduce.py`` call (``kind``: ``cpu`` or ``cifar10``)."""
    return f"reproduce/{kind}"

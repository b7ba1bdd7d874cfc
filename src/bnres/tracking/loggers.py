"""Loggers for a run: W&B (offline unless the user says otherwise), CSV, or none."""

from __future__ import annotations

import logging
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from bnres.tracking import quiet

log = logging.getLogger(__name__)


def finish_active_wandb_run() -> None:
    """A second ``wandb.init`` in one process silently returns the active run, and
    ``WandbLogger`` reuses it: finish any run left over (e.g. by an earlier sweep job)."""
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency
        return
    if wandb.run is not None:
        wandb.finish()


def list_installed_packages_once() -> None:
    """At every ``wandb.init`` W&B lists the installed packages for the run's ``requirements.txt`` by
    reading every distribution's metadata (about 50 ms per job here, 190 packages). They cannot change
    while a sweep's process runs, so they are read at the first run and kept: every run still gets
    the same ``requirements.txt``."""
    try:
        import wandb.util
    except ImportError:  # pragma: no cover - wandb is a dependency
        return
    original = getattr(wandb.util, "working_set", None)
    if original is None or getattr(original, "listed_once", False):
        return
    packages: list[Any] = []

    def working_set():
        if not packages:
            packages.extend(original())
        return iter(packages)

    working_set.listed_once = True
    wandb.util.working_set = working_set


def build_loggers(logger_cfg: DictConfig | None, group: str | None, name: str | None, run_id: str | None = None) -> list[Any]:
    """Instantiate every logger in the ``logger`` group; W&B gets the sweep as group and a run
    name from the job's overrides unless the config sets them."""
    loggers = []
    if not logger_cfg:
        return loggers
    for key, conf in logger_cfg.items():
        if conf is None or "_target_" not in conf:
            continue
        conf = conf.copy()
        if "WandbLogger" in conf._target_:
            finish_active_wandb_run()
            list_installed_packages_once()
            with open_dict(conf):
                if conf.get("group") is None:
                    conf.group = group
                if conf.get("name") is None:
                    conf.name = name
                if run_id:
                    conf.id = run_id
                    conf.resume = "allow"
        loggers.append(instantiate(conf, _convert_="all"))
    quiet.drop_wandb_anonymous(loggers)
    return loggers


def wandb_loggers(loggers: list[Any]) -> list[Any]:
    from pytorch_lightning.loggers import WandbLogger

    return [lg for lg in loggers if isinstance(lg, WandbLogger)]

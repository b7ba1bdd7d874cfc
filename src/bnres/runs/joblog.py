"""A Hydra job's log: Lightning's messages and the project's in ``<job dir>/train.log``, the noise filtered.

Lightning, imported before Hydra sets up logging, finds no handler on the root logger and gives its
own loggers (``pytorch_lightning``, ``lightning_fabric``) a handler of their own with
``propagate=False``: its messages then reach the terminal but never Hydra's ``train.log``.
:class:`JobLog` (a Hydra callback, ``conf/hydra/default.yaml``) hands them back to the root logger
when each job starts — after Hydra has configured that job's logging, in whichever process runs the
job — so they land in the job's ``train.log`` and, through Hydra's console handler, on the terminal
as before. It also installs :mod:`bnres.tracking.quiet`'s filters in that process.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bnres.tracking import quiet

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning")


def route_lightning_logs() -> None:
    """Lightning's loggers propagate to the root logger (Hydra's console and file handlers), without a
    handler of their own, so each message is written once, to both."""
    if not logging.getLogger().handlers:
        return  # nothing above to propagate to: keep Lightning's own handler
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # the one Lightning adds at import
                logger.removeHandler(handler)
        logger.propagate = True


class JobLog(Callback):
    """Hydra callback: :func:`route_lightning_logs` and :func:`bnres.tracking.quiet.install` for every job."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        quiet.install()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        quiet.install()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        quiet.install()
        route_lightning_logs()

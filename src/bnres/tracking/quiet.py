"""Known-harmless third-party messages, silenced where they come from — each one by its source and text.

Every run printed the same noise that says nothing about the run: torch's deprecation of ``LeafSpec``
raised from inside Lightning, Lightning's advertisement for ``litlogger``, W&B's warning about the
``anonymous`` argument that Lightning's ``WandbLogger`` always passes, and W&B's multi-line history and
summary after every job (the run's outcome is the one line of :mod:`bnres.runs.progress`; its W&B run is
still announced where it starts, and ``wandb leet`` shows it). Nothing else is filtered: any other
warning, and these ones raised from other places, still show. ``WANDB_QUIET=false`` brings W&B's
summary back.

:func:`install` is idempotent; the Hydra callback of :mod:`bnres.runs.progress` calls it in every process
that runs a job (joblib workers too), and ``bnres`` (the CLI) at its start.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Iterable

# torch 2.14 deprecates `isinstance(x, LeafSpec)`; Lightning 2.6's own pytree helper still does it
_LEAFSPEC_MESSAGE = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
_LEAFSPEC_MODULES = r"(pytorch_lightning|lightning\.pytorch)\.utilities\._pytree"
# Lightning's rank_zero_info goes through these loggers (the standalone and the unified package)
_RANK_ZERO_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)
_LITLOGGER_TIP = "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]"


class _DropLitloggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_LITLOGGER_TIP)


_TIP_FILTER = _DropLitloggerTip()


def install() -> None:
    """Filter the known-harmless messages (idempotent)."""
    warnings.filterwarnings("ignore", message=_LEAFSPEC_MESSAGE, category=FutureWarning, module=_LEAFSPEC_MODULES)
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _TIP_FILTER not in logger.filters:
            logger.addFilter(_TIP_FILTER)
    # W&B's own switch: no history/summary/"sync it with"/"logs at" block after each run; the start
    # of a run (mode, where its data is saved, `wandb leet`) and every W&B warning still show
    os.environ.setdefault("WANDB_QUIET", "true")


def drop_wandb_anonymous(loggers: Iterable[Any]) -> None:
    """Lightning's ``WandbLogger`` passes ``anonymous=None`` to ``wandb.init``, which W&B 0.31 warns
    about on every run ("The anonymous setting has no effect"); leave it out unless it was asked for."""
    from bnres import _lightning

    for logger in loggers:
        init = _lightning.wandb_init_kwargs(logger)
        if init is not None and init.get("anonymous") is None:
            init.pop("anonymous", None)

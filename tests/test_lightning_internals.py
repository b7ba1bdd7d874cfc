"""Lightning's private names that bnres relies on (all in bnres._lightning) still exist and still mean
what the code assumes. A failure here after a Lightning upgrade names what moved; fix bnres._lightning
(and the pin in pyproject.toml) rather than the callers."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.demos.boring_classes import BoringModel
from pytorch_lightning.plugins.layer_sync import TorchSyncBatchNorm

from bnres import _lightning

ROOT = Path(__file__).resolve().parents[1]


def _trainer(**kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**defaults, **kwargs})


def test_ddp_strategy_launcher_and_layer_sync():
    trainer = _trainer(strategy="ddp", devices=2, sync_batchnorm=True)
    strategy = trainer.strategy
    launcher = _lightning.strategy_launcher(strategy)
    assert type(launcher) is _lightning.SubprocessScriptLauncher
    assert type(_lightning.layer_sync(strategy)) is TorchSyncBatchNorm
    # what HydraJobLauncher (bnres.distributed.ranks) reads from and overrides on the launcher
    for name in ("cluster_environment", "num_processes", "num_nodes", "procs"):
        assert hasattr(launcher, name), name
    for name in ("launch", "_call_children_scripts", "_check_can_spawn_children"):
        assert callable(getattr(_lightning.SubprocessScriptLauncher, name, None)), name
    replacement = object()
    _lightning.set_strategy_launcher(strategy, replacement)
    assert strategy.launcher is replacement  # the public read of the same slot
    _lightning.set_layer_sync(strategy, None)
    assert _lightning.layer_sync(strategy) is None
    # one-device strategies: a launcher slot (None), no layer sync
    single = _trainer().strategy
    assert _lightning.strategy_launcher(single) is None and _lightning.layer_sync(single) is None


def test_set_num_threads_and_batchnorm_xd():
    assert "num_processes" in inspect.signature(_lightning.set_num_threads_if_needed).parameters
    assert issubclass(_lightning.BatchNormXd, torch.nn.modules.batchnorm._BatchNorm)
    # what Lightning's own revert turns SyncBatchNorm into, and ours too (bnres.distributed.sync_batchnorm)
    assert "_BatchNormXd" in inspect.getsource(TorchSyncBatchNorm.revert)


def test_graceful_stop_flag_is_the_one_lightning_reads():
    trainer = _trainer()
    assert trainer.received_sigterm is False
    _lightning.request_graceful_stop(trainer)
    assert trainer.received_sigterm is True


class _Probe(pl.Callback):
    def __init__(self) -> None:
        self.logging_steps: list[bool] = []
        self.batches_done: list[tuple[int, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches_done.append((batch_idx, _lightning.batches_done(trainer)))

    def on_before_backward(self, trainer, pl_module, loss) -> None:  # inside the training step
        self.logging_steps.append(_lightning.is_logging_step(trainer))


def test_loop_state_logging_steps_and_batches_done():
    probe = _Probe()
    trainer = _trainer(max_epochs=1, limit_train_batches=6, limit_val_batches=0, log_every_n_steps=3, callbacks=[probe])
    trainer.fit(BoringModel())
    # Lightning sends step values to the loggers on every 3rd step; a batch starts after `batch_idx` completed ones
    assert probe.logging_steps == [False, False, True, False, False, True]
    assert probe.batches_done == [(i, i) for i in range(6)]


def test_wandb_logger_privates(tmp_path):
    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    logger = WandbLogger(project="bnres", mode="offline", save_dir=str(tmp_path))
    assert _lightning.wandb_experiment_started(logger) is False  # and no run was started to find out
    init = _lightning.wandb_init_kwargs(logger)
    assert isinstance(init, dict) and init["project"] == "bnres" and init["dir"] == str(tmp_path)
    assert _lightning.wandb_init_kwargs(CSVLogger(str(tmp_path))) is None


def test_overridden_private_hooks_are_still_called():
    # bnres.training.callbacks.ProgressBar overrides _should_update(current, total); Lightning's bar must still ask it
    hook = getattr(TQDMProgressBar, _lightning.PROGRESS_BAR_SHOULD_UPDATE)
    assert list(inspect.signature(hook).parameters) == ["self", "current", "total"]
    assert f"self.{_lightning.PROGRESS_BAR_SHOULD_UPDATE}(" in inspect.getsource(TQDMProgressBar.on_train_batch_end)
    # bnres.training.module.Classifier short-cuts the attribute Lightning sets around every hook
    from pytorch_lightning.trainer import call

    assert hasattr(BoringModel(), _lightning.CURRENT_FX_NAME)
    assert f".{_lightning.CURRENT_FX_NAME} = " in inspect.getsource(call._call_lightning_module_hook)


def test_no_private_lightning_names_outside_bnres_lightning():
    """Every private Lightning attribute goes through bnres._lightning (the one module this test vets)."""
    pattern = re.compile(
        r"_signal_connector|_logger_connector|\._launcher\b|\._layer_sync\b|_SubprocessScriptLauncher|_BatchNormXd"
        r"|batch_progress|\._experiment\b|\._wandb_init\b|_set_num_threads_if_needed|(pytorch_lightning|lightning_fabric)[\w.]*\._\w"
    )
    offenders = []
    for path in sorted((ROOT / "src" / "bnres").rglob("*.py")):
        if path.name == "_lightning.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line.split("#")[0]):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_installed_lightning_is_within_the_pin():
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(Requirement(d) for d in deps if Requirement(d).name == "pytorch-lightning")
    assert pin.specifier and any(s.operator == "<" for s in pin.specifier), f"{pin}: no upper bound"
    assert pin.specifier.contains(pl.__version__), f"pytorch-lightning {pl.__version__} is outside {pin.specifier}"

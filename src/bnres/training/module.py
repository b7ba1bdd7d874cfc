"""The one LightningModule: trains any network of the library as an image classifier."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import Metric

from bnres import _lightning

OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


PARTIAL_EPOCH_KEY = "bnres_partial_epoch_sums"
#: the learning rate's key in the loggers (W&B, CSV), logged every step by the lr monitor
LR_KEY = "train/lr"


def default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)


class EpochMean(Metric):
    """Mean of a per-sample quantity over a loop run (an epoch): ``sum / count``.

    ``update(batch_sum, batch_size)`` is two in-place additions on the device: no host sync and
    none of the argument checks of torchmetrics' classification metrics. ``compute`` sums both
    states over DDP ranks first, so the value is the mean over every sample of every rank.
    """

    full_state_update = False
    higher_is_better = None
    is_differentiable = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, batch_sum: torch.Tensor, batch_size: int) -> None:
        self.total.add_(batch_sum)
        self.count.add_(batch_size)

    def compute(self) -> torch.Tensor:
        return self.total / self.count


class Classifier(pl.LightningModule):
    """Cross-entropy classifier around ``net``.

    ``optimizer`` maps parameters to an optimizer (a Hydra ``_partial_`` or a LightningCLI
    ``OptimizerCallable``). ``scheduler`` maps the optimizer — and, when it accepts it, the
    run's ``total_steps`` — to a scheduler stepped every optimizer step.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory = default_optimizer,
        scheduler: SchedulerFactory | None = None,
        num_classes: int | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.channels_last = channels_last
        self.compile = compile
        if num_classes is None:
            num_classes = _infer_num_classes(net)
        self.num_classes = num_classes
        # Epoch means per stage, accumulated on the device and reduced over DDP ranks once per
        # epoch (at compute). Accuracy is micro accuracy: correct / seen, over the whole epoch.
        self.train_loss, self.train_acc = EpochMean(), EpochMean()
        self.val_loss, self.val_acc = EpochMean(), EpochMean()
        self.test_loss, self.test_acc = EpochMean(), EpochMean()
        self._log_pending: dict[str, bool] = {"train": True, "val": True, "test": True}
        self.loss_fn = nn.CrossEntropyLoss()
        # The callable that runs the network: the network itself, or its compiled wrapper. Kept out of
        # the module tree so that state_dict (and every checkpoint) holds the weights once, as "net.*".
        object.__setattr__(self, "_forward", self.net)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` (a string) ~40 times per training step; nn.Module's
        # __setattr__ checks for parameters, modules and buffers first, which adds up to a few
        # percent of a small network's step. It is never one of those: plain attribute.
        if name == _lightning.CURRENT_FX_NAME:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def configure_model(self) -> None:
        # compile the forward only, so checkpoints keep the plain network's parameter names
        if self.compile and self._forward is self.net:
            object.__setattr__(self, "_forward", torch.compile(self.net))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # checkpoints written before `_forward` left the module tree hold a second copy of the weights
        # under "_forward." (or "_forward._orig_mod." when compiled): the "net." copy is the same
        state = checkpoint.get("state_dict")
        if state:
            for key in [k for k in state if k.startswith("_forward.")]:
                del state[key]
        # saved part-way through an epoch (see on_save_checkpoint): continue that epoch's sums. They are
        # the sums over all ranks, so under DDP rank 0 takes them and the other ranks start from zero.
        rank_zero = self._trainer is None or self._trainer.global_rank == 0
        for name, values in checkpoint.get(PARTIAL_EPOCH_KEY, {}).items():
            metric = getattr(self, name)
            for state_name, value in values.items():
                getattr(metric, state_name).copy_(value if rank_zero else torch.zeros_like(value))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint saved at a signal (bnres.runs.preemption) is part-way through an epoch: it keeps the
        # epoch's training sums so far, so the resumed run reports the mean over all of that epoch's
        # batches, as an uninterrupted run does. End-of-epoch checkpoints leave them out: the next
        # epoch starts from zero.
        trainer = self._trainer
        if trainer is not None and trainer.received_sigterm:
            checkpoint[PARTIAL_EPOCH_KEY] = {
                # summed over ranks (every rank saves; the file is rank 0's)
                name: {key: trainer.strategy.reduce(getattr(getattr(self, name), key).detach().clone(), reduce_op="sum").cpu() for key in ("total", "count")}
                for name in ("train_loss", "train_acc")
            }

    def num_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward(x)

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        n = y.shape[0]
        with torch.no_grad():
            # device-side accumulation only: nothing here waits for the device
            loss_metric, acc_metric = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
            loss_metric.update(loss.detach().float() * n, n)
            acc_metric.update((logits.detach().argmax(-1) == y).sum(), n)
        if self._log_pending[stage]:
            # Registering a Metric with Lightning once per epoch is enough: it computes it (DDP-reduced)
            # at the epoch end and resets it. Calling self.log every step costs far more than the step
            # of a small network.
            self._log_pending[stage] = False
            self.log(f"{stage}/loss", loss_metric, on_step=False, on_epoch=True, prog_bar=stage != "train")
            self.log(f"{stage}/acc", acc_metric, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _logging_step(self) -> bool:
        """Whether Lightning sends step-level values to the loggers after this training step."""
        return True if self._trainer is None else _lightning.is_logging_step(self._trainer)

    def on_train_epoch_start(self) -> None:
        self._log_pending["train"] = True

    def on_validation_epoch_start(self) -> None:
        self._log_pending["val"] = True

    def on_test_epoch_start(self) -> None:
        self._log_pending["test"] = True

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._shared_step(batch, "train")
        if self._logging_step():
            # per-step curve for dashboards (and the progress bar: bnres.training.callbacks.ProgressBar), logged
            # only on the steps whose values Lightning sends to the loggers. Not prog_bar=True:
            # Lightning converts progress-bar values to Python numbers after every step, a host sync.
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).argmax(-1)

    def on_before_optimizer_step(self, optimizer) -> None:
        # the total gradient norm costs a pass over all grads: only on the steps that are logged
        if not self._logging_step():
            return
        norms = [p.grad.detach().norm(2) for p in self.net.parameters() if p.grad is not None]
        if norms:
            self.log("train/grad_norm", torch.linalg.vector_norm(torch.stack(norms)), on_step=True, on_epoch=False)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            # a constant schedule all the same: the lr monitor names only schedulers' learning rates
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        else:
            kwargs = {}
            if "total_steps" in inspect.signature(self.scheduler_factory).parameters:
                kwargs["total_steps"] = max(1, int(self.trainer.estimated_stepping_batches))
            scheduler = self.scheduler_factory(optimizer, **kwargs)
        # one key for the learning rate whatever the optimizer (Lightning's default is lr-SGD, lr-AdamW, ...)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": LR_KEY}}


def _infer_num_classes(net: nn.Module) -> int:
    last = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("cannot infer num_classes from the network (no nn.Linear); pass num_classes=")
    return last[-1].out_features

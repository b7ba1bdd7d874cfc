"""The one LightningModule: trains any network of the library as an image classifier."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)


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
        # one metric object per stage: torchmetrics syncs them across DDP ranks at epoch end
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.loss_fn = nn.CrossEntropyLoss()
        self._forward = self.net
        if channels_last:
            self.net.to(memory_format=torch.channels_last)

    def configure_model(self) -> None:
        # compile the forward only, so checkpoints keep the plain network's parameter names
        if self.compile and self._forward is self.net:
            self._forward = torch.compile(self.net)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward(x)

    def _shared_step(self, batch, stage: str, metric: MulticlassAccuracy) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        metric.update(logits.detach(), y)
        # epoch-level values are reduced across ranks once per epoch (not every step)
        self.log(f"{stage}/loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=stage != "train", sync_dist=True, batch_size=len(y))
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._shared_step(batch, "train", self.train_acc)
        # per-step curve for dashboards; Lightning only reads it out every log_every_n_steps
        self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test", self.test_acc)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).argmax(-1)

    def on_before_optimizer_step(self, optimizer) -> None:
        # the total gradient norm costs a pass over all grads: only on logging steps
        if self.trainer.global_step % max(1, self.trainer.log_every_n_steps) != 0:
            return
        norms = [p.grad.detach().norm(2) for p in self.net.parameters() if p.grad is not None]
        if norms:
            self.log("train/grad_norm", torch.linalg.vector_norm(torch.stack(norms)), on_step=True, on_epoch=False)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        if "total_steps" in inspect.signature(self.scheduler_factory).parameters:
            kwargs["total_steps"] = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = self.scheduler_factory(optimizer, **kwargs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _infer_num_classes(net: nn.Module) -> int:
    last = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("cannot infer num_classes from the network (no nn.Linear); pass num_classes=")
    return last[-1].out_features

"""Mechanism probes: what happens inside a network while it trains (off by default, ``probes=...``).

* :class:`LayerProbe` -- at every ``every_n_steps``-th training step (and the last), during that step's own
  forward and backward pass: the mean and standard deviation of the output at every BN position (a BN
  layer, or the :class:`~bnres.models.batchnorm.BNPosition` identity that stands where BN would sit when
  ``bn=false``, so both are measured at the same places; He et al. 2016, Fig. 7), the 15th/50th/85th
  percentiles of the input to one activation layer (Ioffe & Szegedy 2015, Fig. 1(b, c)), and the norm of
  every conv/linear layer's weight gradient (gradient flow).
* :class:`LandscapeProbe` -- every ``every_n_steps`` steps, on a fixed held-out batch (the first images of the
  validation split), along the gradient g of the loss there: the loss at theta - eta * g for a set of step
  sizes eta (multiples of the run's lr), the gradient change ||grad L(theta) - grad L(theta - eta * g)|| and
  the effective beta-smoothness max_eta ||grad change|| / ||eta * g|| (Santurkar et al. 2018, Fig. 4). It
  leaves training exactly as it was: parameters, BN running statistics, ``.grad`` and the CPU and CUDA
  random streams are restored, and the optimizer is never touched.

Both hold their measurements as plain lists (``results()``) that the runner keeps in the record's
``probes`` field (:func:`probe_results`), and log them to the loggers (scalars; histograms to W&B).
Between probe steps they do nothing but compare the step counter: no hook, no host read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from bnres.models.batchnorm import NORM_TYPES, BNPosition

PERCENTILES = (15, 50, 85)

# > 0 while the landscape probe runs its own forward passes: the layer probe's hooks ignore those
_landscape_depth = 0


def bn_positions(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every BN layer or BN position of ``net``, in definition order."""
    return [(name, m) for name, m in net.named_modules() if isinstance(m, (*NORM_TYPES, BNPosition))]


def weight_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every conv/linear layer of ``net``, input to output."""
    return [(name, m) for name, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def default_activation(net: nn.Module) -> str:
    """The activation probed when ``activation: auto``: the last numbered one (``act4`` of LeNet, the last
    hidden layer, as in Ioffe & Szegedy's Fig. 1), else the first activation module (a ResNet's shared
    ``relu``, whose first call is the stem's)."""
    numbered = [name for name, _ in net.named_modules() if re.fullmatch(r"act\d+", name.rsplit(".", 1)[-1])]
    if numbered:
        return numbered[-1]
    acts = [name for name, m in net.named_modules() if isinstance(m, (nn.ReLU, nn.Sigmoid, nn.Tanh)) and name]
    if not acts:
        raise ValueError("probes.layers.activation=auto: the network has no activation module to probe")
    return acts[0]


def _flat_percentiles(x: torch.Tensor) -> torch.Tensor:
    """15/50/85th percentiles of all values of ``x`` (nearest-rank on the sorted values: exact, any size)."""
    flat = x.detach().float().flatten()
    ranks = torch.tensor([round(q / 100 * (flat.numel() - 1)) for q in PERCENTILES], device=flat.device)
    return flat.sort().values[ranks]


def layer_statistics(net: nn.Module, x: torch.Tensor, activation: str | None = None) -> dict[str, Any]:
    """The forward-pass statistics :class:`LayerProbe` takes, for one forward pass of ``net`` on ``x``
    (no backward): ``{"site_mean": {name: v}, "site_std": {...}, "activation_percentiles": [p15, p50, p85]}``.

    For tests and notebooks; the callback uses the same hooks inside the training step.
    """
    hooks = _ForwardHooks(net, activation or default_activation(net))
    try:
        net(x)
    finally:
        hooks.remove()
    values = hooks.stacked().cpu().tolist()
    n = len(hooks.sites)
    return {
        "site_mean": dict(zip(hooks.sites, values[:n])),
        "site_std": dict(zip(hooks.sites, values[n : 2 * n])),
        "activation_percentiles": values[2 * n :],
    }


class _ForwardHooks:
    """Forward hooks that leave device tensors (no host read) for one forward pass."""

    def __init__(self, net: nn.Module, activation: str) -> None:
        self.sites = [name for name, _ in bn_positions(net)]
        self.activation = activation
        self.mean: dict[str, torch.Tensor] = {}
        self.std: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}  # detached site outputs, for histograms (keep_outputs)
        self.keep_outputs = False
        self.percentiles: torch.Tensor | None = None
        self.activation_input: torch.Tensor | None = None
        modules = dict(net.named_modules())
        if activation not in modules:
            raise ValueError(f"probes.layers.activation={activation!r} is not a module of the network")
        self._handles = [modules[name].register_forward_hook(self._site_hook(name)) for name in self.sites]
        self._handles.append(modules[activation].register_forward_pre_hook(self._activation_hook))

    def _site_hook(self, name: str):
        def hook(module, args, output):
            if _landscape_depth or name in self.mean:  # a module called twice per forward: its first call counts
                return
            out = output.detach().float()
            self.std[name], self.mean[name] = torch.std_mean(out, correction=0)
            if self.keep_outputs:
                self.outputs[name] = out
        return hook

    def _activation_hook(self, module, args):
        if not _landscape_depth and self.percentiles is None:  # a shared activation (a ResNet's relu): its first call counts
            # computed now: an in-place activation overwrites its input right after this hook
            self.percentiles = _flat_percentiles(args[0])
            if self.keep_outputs:
                self.activation_input = args[0].detach().float().clone()

    def stacked(self) -> torch.Tensor:
        nan = torch.tensor(math.nan)
        parts = [self.mean.get(s, nan) for s in self.sites] + [self.std.get(s, nan) for s in self.sites]
        device = parts[0].device if parts else (self.percentiles.device if self.percentiles is not None else "cpu")
        parts = [p.to(device) for p in parts]
        pct = self.percentiles if self.percentiles is not None else torch.full((len(PERCENTILES),), math.nan)
        return torch.cat([torch.stack(parts).reshape(-1) if parts else torch.empty(0, device=device), pct.to(device)])

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class _Cadence:
    """Probe steps: every ``every_n_steps``-th optimizer step (step 0 = the initial weights) and, with
    ``last``, the run's last step."""

    def __init__(self, every_n_steps: int, key: str, last: bool) -> None:
        if not isinstance(every_n_steps, int) or isinstance(every_n_steps, bool) or every_n_steps < 1:
            raise ValueError(f"{key}={every_n_steps!r} must be an integer >= 1")
        self.every_n_steps = every_n_steps
        self.last = last
        self.last_step = -1

    def start(self, trainer: pl.Trainer) -> None:
        if self.last:
            total = trainer.estimated_stepping_batches
            self.last_step = int(total) - 1 if math.isfinite(total) else -1

    def due(self, step: int) -> bool:
        return step % self.every_n_steps == 0 or step == self.last_step


def _log(trainer: pl.Trainer, scalars: dict[str, float], histograms: dict[str, Any], step: int) -> None:
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        logger.log_metrics(scalars, step=step)
    if histograms:
        from pytorch_lightning.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.experiment.log({**{k: wandb.Histogram(np_histogram=v) for k, v in histograms.items()}, "trainer/global_step": step})


def _histogram(x: torch.Tensor, bins: int):
    x = x.detach().float().flatten().cpu()
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        x = x[torch.isfinite(x)]
        if not x.numel():
            return None
        lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        hi = lo + 1e-6
    counts = torch.histc(x, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    return counts.numpy(), edges.numpy()


class LayerProbe(pl.Callback):
    """Per-layer statistics at the probe steps, measured in the training step itself (see the module doc).

    ``activation``: the module (by name in the network, e.g. ``act3``) whose *input* percentiles are
    taken, or ``auto`` (:func:`default_activation`). ``histograms_every_n_steps``: at the probe steps that
    are also multiples of this (and the last), log the site outputs, the activation input and the weight
    gradients as W&B histograms of ``bins`` bins; ``null`` never. (A W&B histogram log costs about 5 ms per
    histogram on a CPU, more than the probe itself: hence its own, sparser cadence.)
    """

    def __init__(self, every_n_steps: int = 25, activation: str = "auto", histograms_every_n_steps: int | None = 100, bins: int = 64) -> None:
        self.cadence = _Cadence(every_n_steps, "probes.every_n_steps", last=True)
        self.histogram_cadence = None if histograms_every_n_steps is None else _Cadence(histograms_every_n_steps, "probes.layers.histograms_every_n_steps", last=True)
        self.activation = activation
        self.bins = bins
        self.sites: list[str] = []
        self.layers: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self._hooks: _ForwardHooks | None = None
        self._grad_norms: torch.Tensor | None = None
        self._grads: dict[str, torch.Tensor] = {}
        self._step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        net = pl_module.net
        if self.activation == "auto":
            self.activation = default_activation(net)
        self.sites = [name for name, _ in bn_positions(net)]
        self.layers = [name for name, _ in weight_layers(net)]
        self.cadence.start(trainer)
        if self.histogram_cadence is not None:
            self.histogram_cadence.start(trainer)
        _ForwardHooks(net, self.activation).remove()  # a bad activation name fails here, before any step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.cadence.due(trainer.global_step):
            self._step = trainer.global_step
            self._hooks = _ForwardHooks(pl_module.net, self.activation)
            self._hooks.keep_outputs = self._wants_histograms(trainer, trainer.global_step)

    def on_after_backward(self, trainer, pl_module) -> None:
        if self._hooks is None:
            return
        self._hooks.remove()  # the forward is over
        grads = []
        for name, module in weight_layers(pl_module.net):
            g = module.weight.grad
            grads.append(torch.linalg.vector_norm(g.detach().float()) if g is not None else torch.tensor(math.nan, device=module.weight.device))
            if self._hooks.keep_outputs and g is not None:
                self._grads[name] = g.detach().float().clone()
        self._grad_norms = torch.stack(grads) if grads else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        hooks, self._hooks = self._hooks, None
        if hooks is None:
            return
        hooks.remove()
        step = self._step  # the weights measured are those before this step's update
        n = len(self.sites)
        stacked = hooks.stacked()
        if self._grad_norms is not None:
            stacked = torch.cat([stacked, self._grad_norms.to(stacked.device)])
        values = stacked.cpu().tolist()  # the one host read of a probe step
        row = {
            "step": step,
            "epoch": trainer.current_epoch,
            "site_mean": values[:n],
            "site_std": values[n : 2 * n],
            "activation_percentiles": values[2 * n : 2 * n + len(PERCENTILES)],
            "grad_norm": values[2 * n + len(PERCENTILES) :] if self._grad_norms is not None else [math.nan] * len(self.layers),
        }
        self.rows.append(row)
        self._grad_norms = None
        scalars = {f"probes/site_mean/{s}": m for s, m in zip(self.sites, row["site_mean"])}
        scalars |= {f"probes/site_std/{s}": v for s, v in zip(self.sites, row["site_std"])}
        scalars |= {f"probes/{self.activation}_input_p{q}": v for q, v in zip(PERCENTILES, row["activation_percentiles"])}
        scalars |= {f"probes/grad_norm/{name}": v for name, v in zip(self.layers, row["grad_norm"])}
        histograms = {}
        if hooks.keep_outputs:
            for name, out in hooks.outputs.items():
                histograms[f"probes/hist/site/{name}"] = _histogram(out, self.bins)
            if hooks.activation_input is not None:
                histograms[f"probes/hist/{self.activation}_input"] = _histogram(hooks.activation_input, self.bins)
            for name, g in self._grads.items():
                histograms[f"probes/hist/grad/{name}"] = _histogram(g, self.bins)
            self._grads.clear()
        _log(trainer, {k: v for k, v in scalars.items() if math.isfinite(v)}, {k: v for k, v in histograms.items() if v is not None}, step)

    def _wants_histograms(self, trainer, step: int) -> bool:
        if self.histogram_cadence is None or not self.histogram_cadence.due(step) or not trainer.is_global_zero:
            return False
        from pytorch_lightning.loggers import WandbLogger

        return any(isinstance(lg, WandbLogger) for lg in trainer.loggers)

    def results(self) -> dict[str, Any]:
        """Column-wise: one entry per probe step; ``site_*`` rows follow ``sites``, ``grad_norm`` rows ``layers``."""
        return {
            "every_n_steps": self.cadence.every_n_steps,
            "activation": self.activation,
            "sites": self.sites,
            "layers": self.layers,
            **{key: [row[key] for row in self.rows] for key in ("step", "epoch", "site_mean", "site_std", "activation_percentiles", "grad_norm")},
        }

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


class LandscapeProbe(pl.Callback):
    """The loss landscape along the gradient on a fixed held-out batch (Santurkar et al. 2018, Fig. 4).

    ``eta_factors``: the step sizes, as multiples of ``lr`` (the run's learning rate). ``batch_size``:
    images of the held-out batch (the first of the validation split). Measured in training mode (BN
    normalizes with the batch's statistics, as in the training step) before the step's own forward pass.
    """

    def __init__(self, every_n_steps: int = 50, lr: float = 0.1, eta_factors: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0), batch_size: int = 128) -> None:
        self.cadence = _Cadence(every_n_steps, "probes.landscape.every_n_steps", last=False)
        factors = [float(f) for f in eta_factors]
        if not factors or any(not math.isfinite(f) or f <= 0 for f in factors):
            raise ValueError(f"probes.landscape.eta_factors={list(eta_factors)!r} must be positive numbers")
        if batch_size < 2:
            raise ValueError(f"probes.landscape.batch_size={batch_size!r} must be >= 2")
        self.etas = [float(lr) * f for f in sorted(factors)]
        self.batch_size = batch_size
        self.rows: list[dict[str, Any]] = []
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.cadence.start(trainer)
        self._batch = _held_out_batch(trainer, self.batch_size, pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._batch is None or not self.cadence.due(trainer.global_step):
            return
        row = landscape_along_gradient(pl_module, *self._batch, self.etas, trainer=trainer)
        row = {"step": trainer.global_step, "epoch": trainer.current_epoch, **row}
        self.rows.append(row)
        scalars = {"probes/landscape/loss": row["loss"], "probes/landscape/grad_norm": row["grad_norm"],
                   "probes/landscape/loss_range": row["loss_range"], "probes/landscape/beta": row["beta"]}
        scalars |= {f"probes/landscape/loss_at_{eta:g}": v for eta, v in zip(self.etas, row["loss_along"])}
        scalars |= {f"probes/landscape/grad_change_at_{eta:g}": v for eta, v in zip(self.etas, row["grad_change"])}
        _log(trainer, {k: v for k, v in scalars.items() if v is not None and math.isfinite(v)}, {}, trainer.global_step)

    def results(self) -> dict[str, Any]:
        keys = ("step", "epoch", "loss", "grad_norm", "loss_along", "grad_change", "loss_range", "grad_change_max", "beta")
        return {"every_n_steps": self.cadence.every_n_steps, "etas": self.etas, "batch_size": self.batch_size,
                **{key: [row[key] for row in self.rows] for key in keys}}

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


def _held_out_batch(trainer, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The first ``batch_size`` validation images: the same batch at every probe step and every seed."""
    splits = getattr(trainer.datamodule, "splits", None) if trainer.datamodule is not None else None
    if splits and "val" in splits:
        x, y = splits["val"]
    else:
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        if loader is None:
            return None
        x, y = next(iter(loader))
    return x[:batch_size].to(device), y[:batch_size].to(device)


def landscape_along_gradient(pl_module, x: torch.Tensor, y: torch.Tensor, etas: Sequence[float], trainer=None) -> dict[str, Any]:
    """Loss and gradient at theta and at theta - eta * g for each eta, g = grad L(theta) on (x, y).

    Everything the network holds is put back afterwards (parameters, buffers: BN running statistics,
    ``.grad`` untouched since gradients come from ``torch.autograd.grad``), and the random streams are
    forked, so training continues exactly as without the probe.
    """
    global _landscape_depth
    net = pl_module.net
    params = [p for p in net.parameters() if p.requires_grad]
    devices = [x.device] if x.device.type == "cuda" else []
    context = trainer.precision_plugin.forward_context() if trainer is not None else torch.enable_grad()
    _landscape_depth += 1
    with torch.random.fork_rng(devices=devices):
        theta = [p.detach().clone() for p in params]
        buffers = [b.detach().clone() for b in net.buffers()]
        try:
            loss0, g = _loss_and_grad(pl_module, params, x, y, context)
            g_norm = torch.sqrt(sum((gi.float() ** 2).sum() for gi in g))
            losses, changes = [], []
            for eta in etas:
                with torch.no_grad():
                    for p, t, gi in zip(params, theta, g):
                        p.copy_(t - eta * gi)
                loss_e, g_e = _loss_and_grad(pl_module, params, x, y, context)
                losses.append(loss_e)
                changes.append(torch.sqrt(sum(((a.float() - b.float()) ** 2).sum() for a, b in zip(g_e, g))))
        finally:
            with torch.no_grad():
                for p, t in zip(params, theta):
                    p.copy_(t)
                for b, saved in zip(net.buffers(), buffers):
                    b.copy_(saved)
            _landscape_depth -= 1
    values = torch.stack([loss0, g_norm, *losses, *changes]).cpu().tolist()
    loss, grad_norm = values[0], values[1]
    loss_along, grad_change = values[2 : 2 + len(etas)], values[2 + len(etas) :]
    finite = [v for v in [loss, *loss_along] if math.isfinite(v)]
    betas = [c / (eta * grad_norm) for c, eta in zip(grad_change, etas) if grad_norm > 0 and math.isfinite(c)]
    return {
        "loss": loss,
        "grad_norm": grad_norm,
        "loss_along": loss_along,
        "grad_change": grad_change,
        # Santurkar et al.'s "loss landscape": the spread of the loss over the step sizes (and theta itself)
        "loss_range": (max(finite) - min(finite)) if len(finite) == len(etas) + 1 else math.inf,
        "grad_change_max": max(grad_change) if all(math.isfinite(c) for c in grad_change) else math.inf,
        "beta": max(betas) if betas and len(betas) == len(etas) else math.inf,
    }


def _loss_and_grad(pl_module, params, x, y, context) -> tuple[torch.Tensor, list[torch.Tensor]]:
    with torch.enable_grad(), context:
        loss = pl_module.loss_fn(pl_module.net(x), y)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach().float(), [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]


def probe_results(callbacks: Sequence[pl.Callback]) -> dict[str, Any] | None:
    """The record's ``probes`` field: ``{"layers": ..., "landscape": ...}`` for the probes present, else None."""
    found = {}
    for callback in callbacks:
        if isinstance(callback, LayerProbe):
            found["layers"] = callback.results()
        elif isinstance(callback, LandscapeProbe):
            found["landscape"] = callback.results()
    return found or None

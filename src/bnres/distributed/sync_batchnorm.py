"""``sync_batchnorm`` on CPU processes (gloo).

torch's ``SyncBatchNorm`` refuses CPU modules, so under gloo the BN layers become :class:`GlobalBatchNorm`
(same statistics and gradients). The from-scratch BN is never converted: ``sync_batchnorm=true`` with
``bn_impl=scratch`` is a config error (``bnres.config.checks``).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.distributed as dist
from pytorch_lightning.plugins.layer_sync import LayerSync
from torch import nn

from bnres import _lightning


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the batch of *all* ranks, for any device and back-end (gloo included).

    Training: the per-channel mean and (biased) variance are summed over ranks with a differentiable
    all-reduce, so outputs, running statistics and gradients are those of one process seeing the
    global batch, exactly as ``torch.nn.SyncBatchNorm`` (which only runs on GPUs) computes them.
    Outside training, or without a process group, it is a plain ``BatchNorm``."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        local_count = torch.tensor([x.numel() // x.size(1)], dtype=x.dtype, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), local_count]))  # [channel sums..., count]
        count = sums[-1]
        mean = sums[:-1] / count
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / count  # two passes: no E[x^2] - E[x]^2 cancellation
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                unbiased = var.detach() * (count / (count - 1).clamp_min(1))
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def _swap_batchnorm(module: nn.Module, to: type, match: Callable[[nn.Module], bool]) -> nn.Module:
    converted = module
    if match(module):
        converted = to(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                converted.weight = module.weight
                converted.bias = module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, _swap_batchnorm(child, to, match))
    return converted


class AllReduceSyncBatchNorm(LayerSync):
    """Lightning ``LayerSync`` plugin: torch's BatchNorm layers become :class:`GlobalBatchNorm` (and back)."""

    def apply(self, model: nn.Module) -> nn.Module:
        is_torch_bn = lambda m: isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, (GlobalBatchNorm, nn.SyncBatchNorm))
        return _swap_batchnorm(model, GlobalBatchNorm, is_torch_bn)

    def revert(self, model: nn.Module) -> nn.Module:
        return _swap_batchnorm(model, _lightning.BatchNormXd, lambda m: isinstance(m, GlobalBatchNorm))

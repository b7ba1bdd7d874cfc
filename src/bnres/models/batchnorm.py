"""Batch normalization written from scratch (Ioffe & Szegedy 2015), plus the factory every network uses.

The scratch layers are drop-in twins of ``nn.BatchNorm1d``/``nn.BatchNorm2d``: same constructor arguments,
same parameter and buffer names (``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``), so a state_dict loads into either. Only plain tensor ops are used; autograd
derives the backward pass.

Training mode, per feature (2-D/3-D input to the 1d layer) or per channel over N x H x W (4-D input):

    mean, var = batch mean and *biased* batch variance        # what the output is normalized with
    y = (x - mean) / sqrt(var + eps) * weight + bias
    running_mean = (1 - m) * running_mean + m * mean          # torch's momentum convention
    running_var  = (1 - m) * running_var  + m * var * n/(n-1) # the *unbiased* variance, as torch does

Eval mode normalizes with the running statistics instead. ``momentum=None`` gives the cumulative average
(m = 1 / num_batches_tracked), as in torch.
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_choice, check_int

__all__ = ["ScratchBatchNorm1d", "ScratchBatchNorm2d", "NORM_TYPES", "BNPosition", "make_norm"]


class _ScratchBatchNorm(nn.Module):
    """Shared body of the scratch 1d/2d layers; subclasses only say which input ranks they accept."""

    _ranks: tuple[int, ...] = ()
    _layout: str = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))  # gamma
            self.bias = nn.Parameter(torch.zeros(num_features, **factory))  # beta
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() not in self._ranks:
            raise ValueError(
                f"{type(self).__name__} expects {self._layout} input, "
                f"got a {x.dim()}-D tensor of shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) got {x.shape[1]} features/channels in dim 1"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        reduce_dims = [0, *range(2, x.dim())]  # every dim but the feature/channel dim
        bshape = [1, -1] + [1] * (x.dim() - 2)  # per-feature vectors broadcast against x
        # Half-precision inputs (autocast) are normalized in float32, as torch's kernels accumulate in float32.
        xc = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x

        if self.training or not self.track_running_stats:
            n = x.numel() // x.shape[1]  # values per feature in this batch
            if self.training and n <= 1:
                raise ValueError(
                    f"{type(self).__name__} needs more than 1 value per channel when training, "
                    f"got input of shape {tuple(x.shape)}"
                )
            var, mean = torch.var_mean(xc, dim=reduce_dims, correction=0)  # biased: used to normalize
            if self.training and self.track_running_stats:
                self._update_running_stats(mean.detach(), var.detach(), n)
        else:
            mean, var = self.running_mean, self.running_var

        y = (xc - mean.reshape(bshape)) * torch.rsqrt(var.reshape(bshape) + self.eps)
        if self.affine:
            y = y * self.weight.reshape(bshape) + self.bias.reshape(bshape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        self.num_batches_tracked.add_(1)
        m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else float(self.momentum)
        unbiased = var * (n / (n - 1))  # the population-variance estimate torch keeps
        self.running_mean.mul_(1.0 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
        self.running_var.mul_(1.0 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class ScratchBatchNorm1d(_ScratchBatchNorm):
    """From-scratch twin of ``nn.BatchNorm1d``: input (N, C) or (N, C, L), statistics per feature C."""

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class ScratchBatchNorm2d(_ScratchBatchNorm):
    """From-scratch twin of ``nn.BatchNorm2d``: input (N, C, H, W), statistics per channel over N x H x W."""

    _ranks = (4,)
    _layout = "(N, C, H, W)"


# Everything that counts as a BN layer (for init, weight-decay exclusion, analysis hooks).
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, _ScratchBatchNorm)


class BNPosition(nn.Identity):
    """Where a BN layer sits when ``bn=True``, in a network built with ``bn=False``: an identity.

    It has no parameters or buffers (state_dict keys are unchanged) and carries the BN layer's name
    (``bn1``, ``layer1.0.bn2``, ...), so probes (``bnres.training.probes``) measure BN and no-BN networks at the
    same positions.
    """

_NORMS = {
    ("torch", 1): nn.BatchNorm1d,
    ("torch", 2): nn.BatchNorm2d,
    ("scratch", 1): ScratchBatchNorm1d,
    ("scratch", 2): ScratchBatchNorm2d,
}


def make_norm(
    num_features: int, dim: int, impl: str = "torch", momentum: float | None = 0.1, eps: float = 1e-5
) -> nn.Module:
    """A BN layer over ``num_features`` features: ``dim=1`` for (N, C) activations, ``dim=2`` for (N, C, H, W).

    ``impl`` is ``"torch"`` (``nn.BatchNorm1d/2d``) or ``"scratch"`` (this module's twins).
    """
    check_choice("bn_impl", impl, ("torch", "scratch"))
    if dim not in (1, 2):
        raise ValueError(f"dim={dim!r} is not one of 1, 2")
    check_int("num_features", num_features, 1)
    return _NORMS[impl, dim](num_features, eps=eps, momentum=momentum)

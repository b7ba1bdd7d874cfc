"""Small pieces the simple (non-residual) networks share."""

from __future__ import annotations

from torch import nn

from .batchnorm import BNPosition, make_norm


def make_activation(name: str) -> nn.Module:
    return nn.Sigmoid() if name == "sigmoid" else nn.ReLU()


def norm_and_act(
    index: int, width: int, dim: int, act: str, *, bn: bool, bn_placement: str, bn_impl: str, bn_momentum, bn_eps
) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs that follow layer ``index``: [bn, act] or [act, bn]; without BN
    [position, act], where the position is a :class:`BNPosition` identity named like the BN layer.

    Names are ``bn{index}``/``act{index}`` so state_dict keys do not depend on the placement.
    """
    a = (f"act{index}", make_activation(act))
    if not bn:
        return [(f"bn{index}", BNPosition()), a]
    b = (f"bn{index}", make_norm(width, dim, bn_impl, bn_momentum, bn_eps))
    return [b, a] if bn_placement == "before_activation" else [a, b]


def kaiming_init_(model: nn.Module, last: nn.Module) -> None:
    """He-normal init (fan_in, ReLU gain) for every conv/linear layer but the classifier ``last``; zero biases.

    Used for the ReLU variants of LeNet/MLP; the classifier keeps PyTorch's default init.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not last:
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)

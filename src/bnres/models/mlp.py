"""Fully connected network with BN1d per hidden feature."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ._checks import ACTIVATIONS, check_bn_args, check_choice, check_int, check_io, check_no_residual_placement
from ._common import kaiming_init_, norm_and_act


class MLP(nn.Sequential):
    """Flatten, then ``depth`` hidden rounds of Linear(width) [BN1d] act, then Linear(width->classes).

    The input (N, C, H, W) is flattened to C*H*W features. BN placement as in :class:`LeNet`
    (``pre_activation`` rejected; ignored with ``bn=False``, where the hidden layers carry biases).
    Init: He-normal (fan_in) hidden weights and zero biases with ReLU; PyTorch's default init with sigmoid.
    Modules: flatten, fc1, bn1, act1, ..., fc{depth}, bn{depth}, act{depth}, head.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        depth: int = 3,
        width: int = 256,
        activation: str = "relu",
        bn: bool = True,
        bn_placement: str = "before_activation",
        bn_impl: str = "torch",
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ) -> None:
        check_io(in_channels, num_classes, image_size)
        check_bn_args(bn, bn_placement, bn_impl, bn_momentum, bn_eps)
        check_no_residual_placement("mlp", bn_placement)
        check_int("depth", depth, 1, " (mlp depth = number of hidden layers)")
        check_int("width", width, 1)
        check_choice("activation", activation, ACTIVATIONS)

        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        fan_in = in_channels * image_size * image_size
        for i in range(1, depth + 1):
            layers.append((f"fc{i}", nn.Linear(fan_in, width, bias=not bn)))
            layers += norm_and_act(i, width, 1, activation, bn=bn, bn_placement=bn_placement, bn_impl=bn_impl,
                                   bn_momentum=bn_momentum, bn_eps=bn_eps)
            fan_in = width
        layers.append(("head", nn.Linear(fan_in, num_classes)))
        super().__init__(OrderedDict(layers))
        if activation == "relu":
            kaiming_init_(self, last=self.head)

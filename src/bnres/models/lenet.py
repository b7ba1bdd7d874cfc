"""LeNet-5 as in the batch-norm chapter of Dive into Deep Learning (sigmoid, max-pool, optional BN)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ._checks import ACTIVATIONS, check_bn_args, check_choice, check_io, check_no_residual_placement
from ._common import kaiming_init_, norm_and_act

MIN_IMAGE_SIZE = 16  # two (5x5 conv, 2x2 pool) rounds must leave at least a 1x1 map


def lenet_feature_size(image_size: int) -> int:
    """Side of the 16-channel map after conv5 -> pool2 -> conv5 -> pool2 (no padding): 28 -> 4, 32 -> 5."""
    return ((image_size - 4) // 2 - 4) // 2


class LeNet(nn.Sequential):
    """Conv(in->6,5) [BN] act MaxPool Conv(6->16,5) [BN] act MaxPool Flatten
    Linear(16*s*s->120) [BN] act Linear(120->84) [BN] act Linear(84->classes).

    ``s`` follows from ``image_size`` (4 for 28x28, 5 for 32x32). BN sits before the activation
    (``before_activation``) or after it (``after_activation``); ``pre_activation`` is rejected (no residual
    blocks). With ``bn=False`` the conv/linear layers carry biases and ``bn_placement`` is ignored.

    Init: PyTorch's default init (``kaiming_uniform_(a=sqrt(5))`` weights, uniform biases) for the sigmoid
    net, as the chapter does; with ``activation="relu"`` He-normal (fan_in) weights and zero biases.
    Modules are named (conv1, bn1, act1, pool1, ..., fc3), so keys do not shift when BN is switched off.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        activation: str = "sigmoid",
        bn: bool = True,
        bn_placement: str = "before_activation",
        bn_impl: str = "torch",
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ) -> None:
        check_io(in_channels, num_classes, image_size, MIN_IMAGE_SIZE, "lenet")
        check_bn_args(bn, bn_placement, bn_impl, bn_momentum, bn_eps)
        check_no_residual_placement("lenet", bn_placement)
        check_choice("activation", activation, ACTIVATIONS)

        def tail(i: int, width: int, dim: int):
            return norm_and_act(i, width, dim, activation, bn=bn, bn_placement=bn_placement, bn_impl=bn_impl,
                                bn_momentum=bn_momentum, bn_eps=bn_eps)

        s = lenet_feature_size(image_size)
        bias = not bn  # a bias right before BN is cancelled by the mean subtraction
        layers = [
            ("conv1", nn.Conv2d(in_channels, 6, kernel_size=5, bias=bias)), *tail(1, 6, 2),
            ("pool1", nn.MaxPool2d(kernel_size=2, stride=2)),
            ("conv2", nn.Conv2d(6, 16, kernel_size=5, bias=bias)), *tail(2, 16, 2),
            ("pool2", nn.MaxPool2d(kernel_size=2, stride=2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(16 * s * s, 120, bias=bias)), *tail(3, 120, 1),
            ("fc2", nn.Linear(120, 84, bias=bias)), *tail(4, 84, 1),
            ("fc3", nn.Linear(84, num_classes)),
        ]
        super().__init__(OrderedDict(layers))
        if activation == "relu":
            kaiming_init_(self, last=self.fc3)

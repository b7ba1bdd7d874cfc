"""Network library: LeNet, MLP, ResNet-18/34 and CIFAR ResNets with their plain twins, BN knobs everywhere.

Builders (the Hydra ``conf/model/*.yaml`` targets) share the keyword arguments ``in_channels``,
``num_classes``, ``image_size``, ``bn``, ``bn_placement``, ``bn_impl``, ``bn_momentum``, ``bn_eps``.
"""

from ._checks import ACTIVATIONS, BN_IMPLS, BN_PLACEMENTS, STEMS
from .batchnorm import NORM_TYPES, BNPosition, ScratchBatchNorm1d, ScratchBatchNorm2d, make_norm
from .lenet import LeNet
from .mlp import MLP
from .resnet import BasicBlock, PreActBlock, ResNet, ZeroPadShortcut
from .zoo import (
    BUILDERS,
    MODEL_NAMES,
    build_model,
    lenet,
    mlp,
    network,
    plain18,
    plain34,
    plain_cifar,
    resnet18,
    resnet34,
    resnet_cifar,
    validate_model_args,
)

__all__ = [
    "ACTIVATIONS",
    "BN_IMPLS",
    "BN_PLACEMENTS",
    "BUILDERS",
    "MODEL_NAMES",
    "NORM_TYPES",
    "BNPosition",
    "STEMS",
    "BasicBlock",
    "LeNet",
    "MLP",
    "PreActBlock",
    "ResNet",
    "ScratchBatchNorm1d",
    "ScratchBatchNorm2d",
    "ZeroPadShortcut",
    "build_model",
    "lenet",
    "make_norm",
    "mlp",
    "network",
    "plain18",
    "plain34",
    "plain_cifar",
    "resnet18",
    "resnet34",
    "resnet_cifar",
    "validate_model_args",
]

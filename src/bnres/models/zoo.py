"""The named networks (the Hydra ``model`` configs' ``_target_``s) and their argument checks.

Every builder takes the same BN knobs; all arguments are keyword-only and checked before anything is built.
Each returns an ``nn.Module`` mapping (N, in_channels, image_size, image_size) floats to (N, num_classes)
logits, with ``input_shape = (in_channels, image_size, image_size)`` set on it.
"""

from __future__ import annotations

import inspect
from typing import Literal, Optional

from torch import nn

from ._checks import (
    ACTIVATIONS,
    BN_IMPLS,
    BN_PLACEMENTS,
    STEMS,
    check_bn_args,
    check_bool,
    check_choice,
    check_int,
    check_io,
    check_no_residual_placement,
)
from .lenet import MIN_IMAGE_SIZE as LENET_MIN_IMAGE_SIZE
from .lenet import LeNet
from .mlp import MLP
from .resnet import ResNet

MODEL_NAMES = ("lenet", "mlp", "resnet18", "resnet34", "plain18", "plain34", "resnet_cifar", "plain_cifar")

IMAGENET_WIDTHS = (64, 128, 256, 512)
IMAGENET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
CIFAR_WIDTHS = (16, 32, 64)
CIFAR_DEPTH_HINT = "8, 14, 20, 32, 44, 56, 110, ..."


def _tag(model: nn.Module, in_channels: int, image_size: int) -> nn.Module:
    model.input_shape = (in_channels, image_size, image_size)
    return model


def lenet(
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    bn: bool = True,
    bn_placement: str = "before_activation",
    bn_impl: str = "torch",
    bn_momentum: float = 0.1,
    bn_eps: float = 1e-5,
    activation: str = "sigmoid",
) -> LeNet:
    """LeNet-5 of the BN chapter (see :class:`LeNet`); ``activation`` sigmoid | relu; image_size >= 16."""
    args = validate_model_args("lenet", **locals())
    return _tag(LeNet(**args), in_channels, image_size)


def mlp(
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    bn: bool = True,
    bn_placement: str = "before_activation",
    bn_impl: str = "torch",
    bn_momentum: float = 0.1,
    bn_eps: float = 1e-5,
    depth: int = 3,
    width: int = 256,
    activation: str = "relu",
) -> MLP:
    """Fully connected net with ``depth`` hidden layers of ``width`` units (see :class:`MLP`)."""
    args = validate_model_args("mlp", **locals())
    return _tag(MLP(**args), in_channels, image_size)


def _imagenet(depth: int, shortcut: bool, args: dict) -> ResNet:
    image_size = args.pop("image_size")
    net = ResNet(IMAGENET_LAYERS[depth], IMAGENET_WIDTHS, shortcut=shortcut, shortcut_type="B", **args)
    return _tag(net, args["in_channels"], image_size)


def _cifar(shortcut: bool, args: dict) -> ResNet:
    image_size = args.pop("image_size")
    n = (args.pop("depth") - 2) // 6
    net = ResNet((n, n, n), CIFAR_WIDTHS, stem="small", shortcut=shortcut, shortcut_type="A", **args)
    return _tag(net, args["in_channels"], image_size)


def resnet18(
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    bn: bool = True,
    bn_placement: str = "before_activation",
    bn_impl: str = "torch",
    bn_momentum: float = 0.1,
    bn_eps: float = 1e-5,
    stem: str = "imagenet",
    shortcut: bool = True,
) -> ResNet:
    """ResNet-18, torchvision layout (2-2-2-2 basic blocks, 64..512 channels, 1x1 conv + BN projections).
    ``shortcut=False``: its plain twin (:func:`plain18`)."""
    args = validate_model_args("resnet18", **locals())
    return _imagenet(18, args.pop("shortcut"), args)


def resnet34(
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    bn: bool = True,
    bn_placement: str = "before_activation",
    bn_impl: str = "torch",
    bn_momentum: float = 0.1,
    bn_eps: float = 1e-5,
    stem: str = "imagenet",
    shortcut: bool = True,
) -> ResNet:
    """ResNet-34, torchvision layout (3-4-6-3 basic blocks, 64..512 channels, 1x1 conv + BN projections).
    ``shortcut=False``: its plain twin (:func:`plain34`)."""
    args = validate_model_args("resnet34", **locals())
    return _imagenet(34, args.pop("shortcut"), args)


def resnet_cifar(
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    bn: bool = True,
    bn_placement: str = "before_activation",
    bn_impl: str = "torch",
    bn_momentum: float = 0.1,
    bn_eps: float = 1e-5,
    depth: int = 20,
    shortcut: bool = True,
) -> ResNet:
    """CIFAR ResNet of He et al. 2016a sec. 4.2: depth 6n+2, 3x3 conv 16 stem, 3 stages of n blocks with
    16/32/64 channels, parameter-free option-A shortcuts (stride-2 subsample + zero-padded channels).
    ``shortcut=False``: its plain twin (:func:`plain_cifar`)."""
    args = validate_model_args("resnet_cifar", **locals())
    return _cifar(args.pop("shortcut"), args)


def _plain_twin(residual):
    """``plainNN(**kwargs)`` = ``residualNN(shortcut=False, **kwargs)``: the same code with the shortcuts
    switched off, under its own name (with the residual builder's signature, less ``shortcut``)."""

    def builder(**kwargs) -> ResNet:
        if kwargs.get("shortcut") is not None and kwargs.pop("shortcut") is not False:
            raise ValueError(f"{builder.__name__} has no shortcuts (shortcut=true is {residual.__name__})")
        return residual(**kwargs, shortcut=False)

    signature = inspect.signature(residual)
    builder.__signature__ = signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "shortcut"])
    builder.__name__ = builder.__qualname__ = residual.__name__.replace("resnet", "plain")
    builder.__doc__ = f"{residual.__name__} with the shortcuts switched off: the same layers, no additions (no projections)."
    return builder


plain18 = _plain_twin(resnet18)
plain34 = _plain_twin(resnet34)
plain_cifar = _plain_twin(resnet_cifar)

#: plain name -> its residual twin (``model=plain18`` is ``model=resnet18 shortcut=false``)
PLAIN_TWINS = {"plain18": "resnet18", "plain34": "resnet34", "plain_cifar": "resnet_cifar"}
#: networks whose depth is fixed by their name
FIXED_DEPTHS = {f"{family}{depth}": depth for depth in IMAGENET_LAYERS for family in ("resnet", "plain")}


def residual_twin(name: str) -> str:
    """``plain18`` -> ``resnet18``; any other name is returned as it is."""
    return PLAIN_TWINS.get(name, name)


def net_name(family: str, shortcut: bool | None) -> str:
    """The network's name from its residual family and ``shortcut``: (``resnet18``, False) -> ``plain18``."""
    if shortcut is False:
        plain = {v: k for k, v in PLAIN_TWINS.items()}
        return plain.get(family, family)
    return family


BUILDERS = {
    "lenet": lenet,
    "mlp": mlp,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "plain18": plain18,
    "plain34": plain34,
    "resnet_cifar": resnet_cifar,
    "plain_cifar": plain_cifar,
}


def validate_model_args(name: str, **kwargs) -> dict:
    """Check the arguments of builder ``name`` without building anything; return them with defaults filled.

    Raises ``ValueError`` (one line) on an unknown model, a missing/unknown argument or a bad value.
    """
    check_choice("model", name, MODEL_NAMES)
    if name in PLAIN_TWINS:
        if kwargs.get("shortcut") not in (None, False):
            raise ValueError(f"shortcut={kwargs['shortcut']!r} contradicts {name} (no shortcuts): use {PLAIN_TWINS[name]}")
        name, kwargs = PLAIN_TWINS[name], {**kwargs, "shortcut": False}
    try:
        bound = inspect.signature(BUILDERS[name]).bind(**kwargs)
    except TypeError as e:  # missing or unexpected keyword
        raise ValueError(f"{name}: {e}") from None
    bound.apply_defaults()
    a = dict(bound.arguments)

    min_size = LENET_MIN_IMAGE_SIZE if name == "lenet" else 1
    check_io(a["in_channels"], a["num_classes"], a["image_size"], min_size, name)
    check_bn_args(a["bn"], a["bn_placement"], a["bn_impl"], a["bn_momentum"], a["bn_eps"])
    if name in ("lenet", "mlp"):
        check_no_residual_placement(name, a["bn_placement"])
        check_choice("activation", a["activation"], ACTIVATIONS)
    if name == "mlp":
        check_int("depth", a["depth"], 1, " (mlp depth = number of hidden layers)")
        check_int("width", a["width"], 1)
    if "shortcut" in a:
        check_bool("shortcut", a["shortcut"])
    if name in ("resnet18", "resnet34"):
        check_choice("stem", a["stem"], STEMS)
    if name == "resnet_cifar":
        d = a["depth"]
        check_int("depth", d, 8, f" ({net_name(name, a['shortcut'])} depth = 6n+2 with n >= 1; valid: {CIFAR_DEPTH_HINT})")
        if (d - 2) % 6:
            raise ValueError(f"{net_name(name, a['shortcut'])} depth={d} is not 6n+2 (valid: {CIFAR_DEPTH_HINT})")
    return a


def build_model(name: str, **kwargs) -> nn.Module:
    """``BUILDERS[name](**kwargs)`` with a one-line error for an unknown name."""
    check_choice("model", name, MODEL_NAMES)
    return BUILDERS[name](**kwargs)


# --- one entry point by name (the Lightning CLI's ``--model.net.name``) ----------------------
ModelName = Literal[MODEL_NAMES]  # type: ignore[valid-type]  # the same tuple, as a type a parser can check
BNPlacement = Literal[BN_PLACEMENTS]  # type: ignore[valid-type]
BNImpl = Literal[BN_IMPLS]  # type: ignore[valid-type]
Activation = Literal[ACTIVATIONS]  # type: ignore[valid-type]
Stem = Literal[STEMS]  # type: ignore[valid-type]


def network(
    name: ModelName = "lenet",
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    bn: bool = True,
    bn_placement: BNPlacement = "before_activation",
    bn_impl: BNImpl = "torch",
    bn_momentum: Optional[float] = 0.1,
    bn_eps: float = 1e-5,
    depth: Optional[int] = None,
    width: Optional[int] = None,
    activation: Optional[Activation] = None,
    stem: Optional[Stem] = None,
    shortcut: Optional[bool] = None,
) -> nn.Module:
    """Any network of the zoo by ``name``, with typed choices so a command line can check them.

    ``depth`` (mlp, resnet_cifar, plain_cifar), ``width`` (mlp), ``activation`` (lenet, mlp) and ``stem``
    (resnet18/34, plain18/34) apply to some networks only: None keeps that network's default, and a value
    for a network that does not take it is a one-line ``ValueError``. ``shortcut`` (residual families):
    ``name="resnet18", shortcut=False`` is ``plain18``.
    """
    check_choice("model", name, MODEL_NAMES)
    if name in PLAIN_TWINS and shortcut is not None:  # plain18 is resnet18 with shortcut=False
        name, shortcut = (PLAIN_TWINS[name], False) if shortcut is False else (name, shortcut)
    accepted = inspect.signature(BUILDERS[name]).parameters
    options = {"depth": depth, "width": width, "activation": activation, "stem": stem, "shortcut": shortcut}
    for key, value in options.items():
        if value is not None and key not in accepted:
            takers = ", ".join(n for n in MODEL_NAMES if key in inspect.signature(BUILDERS[n]).parameters)
            raise ValueError(f"{name} takes no {key} (got {key}={value!r}); {key} applies to: {takers}")
    kwargs = {k: v for k, v in options.items() if v is not None}
    return BUILDERS[name](
        in_channels=in_channels, num_classes=num_classes, image_size=image_size, bn=bn, bn_placement=bn_placement,
        bn_impl=bn_impl, bn_momentum=bn_momentum, bn_eps=bn_eps, **kwargs,
    )

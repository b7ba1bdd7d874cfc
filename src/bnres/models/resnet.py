"""One parametrized ResNet for both families, residual and plain (He et al. 2016a, 2016b).

Layout follows torchvision's ``models/resnet.py`` (same module names: conv1, bn1, relu, maxpool,
layer1.., downsample, avgpool, fc), so with ``bn_placement="before_activation"``, ``bn=True``,
projection shortcuts and the imagenet stem, ``load_state_dict(torchvision_resnet.state_dict())`` works.

Knobs: blocks per stage and stage widths; stem (``imagenet``: 7x7/2 conv + 3x3/2 max-pool; ``small``:
3x3/1 conv, no pool); shortcut on/off (off = the *plain* twin: the same layers minus the shortcuts);
shortcut kind where shapes change (``"B"``: 1x1 conv projection, ``"A"``: parameter-free stride-2
subsample + zero-padded channels); and where BN sits:

* ``before_activation`` (torchvision): conv-BN-ReLU-conv-BN, add, ReLU; projection = 1x1 conv + BN.
* ``after_activation``: conv-ReLU-BN-conv, add, ReLU-BN. Each BN directly follows a ReLU, and the second
  ReLU stays after the addition (as in the standard block), so its BN normalizes the block's output. The
  parameter set is the same as ``before_activation`` (projection = 1x1 conv + BN; stem conv-ReLU-BN).
* ``pre_activation`` (He et al. 2016b, "Identity Mappings"): BN-ReLU-conv-BN-ReLU-conv, add, nothing after.
  The stem is the bare conv (no BN/ReLU; the first block's BN-ReLU follows it) and the head adds a final
  BN-ReLU (``bn_final``) before pooling. A projection shortcut reads the pre-activated input and has no BN
  of its own (as in the authors' code); identity and zero-pad shortcuts read the raw input.

With ``bn=False`` there is no BN anywhere, every conv carries a bias (the projection too) and
``bn_placement`` is ignored: the net is the ``before_activation`` one minus its BN layers.
With ``bn=True`` no conv has a bias (BN's mean subtraction would cancel it).

Init (torchvision's): conv weights He-normal with fan_out and ReLU gain, conv biases 0, BN weight 1 and
bias 0, the final linear layer PyTorch's default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import STEMS, check_bn_args, check_bool, check_choice, check_int
from .batchnorm import NORM_TYPES, BNPosition, make_norm

NormFn = Callable[[int], nn.Module]
SHORTCUT_TYPES = ("A", "B")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=bias)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=bias)


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: keep every ``stride``-th pixel and append ``extra_channels`` zero channels."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            # same output size as a 3x3/stride-s/pad-1 conv: ceil(H / s)
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN before (``before_activation``) or after (``after_activation``) each ReLU.

    ``shortcut=False`` drops the addition (plain block); ``downsample`` maps the input to the output's
    shape where they differ (None = identity). ``norm`` builds a BN layer (or a ``BNPosition`` identity without BN).
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        norm: NormFn,
        bias: bool = False,
        placement: str = "before_activation",
        shortcut: bool = True,
    ) -> None:
        super().__init__()
        if placement not in ("before_activation", "after_activation"):
            raise ValueError(f"placement={placement!r} is not one of before_activation, after_activation")
        self.conv1 = conv3x3(inplanes, planes, stride, bias)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, 1, bias)
        self.bn2 = norm(planes)
        self.downsample = downsample
        self.stride = stride
        self.placement = placement
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.placement == "before_activation":
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        else:
            out = self.conv2(self.bn1(self.relu(self.conv1(x))))
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        out = self.relu(out)
        return out if self.placement == "before_activation" else self.bn2(out)


class PreActBlock(nn.Module):
    """Pre-activation block (He et al. 2016b): BN-ReLU-conv-BN-ReLU-conv, plus the shortcut, nothing after.

    ``shortcut_from_preact``: the shortcut (a projection) reads BN-ReLU(x) instead of x.
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        norm: NormFn,
        bias: bool = False,
        shortcut: bool = True,
        shortcut_from_preact: bool = False,
    ) -> None:
        super().__init__()
        self.bn1 = norm(inplanes)
        self.relu = nn.ReLU()  # not in-place: x itself may be the identity shortcut
        self.conv1 = conv3x3(inplanes, planes, stride, bias)
        self.bn2 = norm(planes)
        self.conv2 = conv3x3(planes, planes, 1, bias)
        self.downsample = downsample
        self.stride = stride
        self.shortcut = shortcut
        self.shortcut_from_preact = shortcut_from_preact

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(a))))
        if self.shortcut:
            src = a if self.shortcut_from_preact else x
            out = out + (src if self.downsample is None else self.downsample(src))
        return out


class ResNet(nn.Module):
    """Stem, ``len(layers)`` stages of basic blocks, global average pool, linear classifier.

    ``layers[i]`` blocks of width ``widths[i]`` in stage i; every stage after the first starts with a
    stride-2 block. ``shortcut=False`` gives the plain twin (no additions, no downsample modules).
    See the module docstring for the BN placements and ``shortcut_type``.
    """

    def __init__(
        self,
        layers: Sequence[int],
        widths: Sequence[int],
        *,
        in_channels: int = 3,
        num_classes: int = 1000,
        stem: str = "imagenet",
        shortcut: bool = True,
        shortcut_type: str = "B",
        bn: bool = True,
        bn_placement: str = "before_activation",
        bn_impl: str = "torch",
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ) -> None:
        # Validate everything before building anything.
        if len(layers) != len(widths) or len(layers) == 0:
            raise ValueError(f"layers={list(layers)} and widths={list(widths)} must be non-empty and of equal length")
        for i, (n, w) in enumerate(zip(layers, widths)):
            check_int(f"layers[{i}]", n, 1)
            check_int(f"widths[{i}]", w, 1)
        check_int("in_channels", in_channels, 1)
        check_int("num_classes", num_classes, 1)
        check_choice("stem", stem, STEMS)
        check_bool("shortcut", shortcut)
        check_choice("shortcut_type", shortcut_type, SHORTCUT_TYPES)
        check_bn_args(bn, bn_placement, bn_impl, bn_momentum, bn_eps)
        super().__init__()

        self.bn = bn
        self.layout = bn_placement if bn else "before_activation"  # placement is moot without BN
        self.stem = stem
        self.shortcut = shortcut
        self.shortcut_type = shortcut_type
        self._bias = not bn
        self._bn_args = (bn_impl, bn_momentum, bn_eps)
        preact = self.layout == "pre_activation"
        norm = self._norm

        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=self._bias)
        else:
            self.conv1 = conv3x3(in_channels, self.inplanes, 1, self._bias)
        self.bn1 = nn.Identity() if preact else norm(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()

        self.stage_names: list[str] = []
        for i, (n, w) in enumerate(zip(layers, widths)):
            name = f"layer{i + 1}"
            setattr(self, name, self._make_layer(w, n, stride=1 if i == 0 else 2))
            self.stage_names.append(name)

        # pre-activation blocks end on an addition: the head supplies the last BN-ReLU
        self.bn_final = norm(widths[-1]) if preact else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1], num_classes)
        self._init_weights()

    def _norm(self, c: int) -> nn.Module:
        """A BN2d layer over ``c`` channels, or a :class:`BNPosition` identity without BN (a method, so the net pickles)."""
        return make_norm(c, 2, *self._bn_args) if self.bn else BNPosition()

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        preact = self.layout == "pre_activation"
        downsample = None
        if self.shortcut and (stride != 1 or self.inplanes != planes):
            if self.shortcut_type == "A":
                downsample = ZeroPadShortcut(stride, planes - self.inplanes)
            elif preact or not self.bn:
                downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride, self._bias))
            else:
                downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), self._norm(planes))

        def block(inplanes: int, stride: int, downsample: nn.Module | None) -> nn.Module:
            if preact:
                return PreActBlock(
                    inplanes, planes, stride, downsample, norm=self._norm, bias=self._bias, shortcut=self.shortcut,
                    shortcut_from_preact=isinstance(downsample, nn.Sequential),
                )
            return BasicBlock(
                inplanes, planes, stride, downsample, norm=self._norm, bias=self._bias,
                placement=self.layout, shortcut=self.shortcut,
            )

        out = [block(self.inplanes, stride, downsample)]
        self.inplanes = planes
        out += [block(planes, 1, None) for _ in range(1, blocks)]
        return nn.Sequential(*out)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, NORM_TYPES):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.layout == "before_activation":
            x = self.relu(self.bn1(x))
        elif self.layout == "after_activation":
            x = self.bn1(self.relu(x))
        # pre_activation: the bare conv; the first block's BN-ReLU follows
        x = self.maxpool(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        if self.layout == "pre_activation":
            x = self.relu(self.bn_final(x))
        x = self.avgpool(x)
        return self.fc(torch.flatten(x, 1))

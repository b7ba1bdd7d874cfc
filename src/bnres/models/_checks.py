"""Argument checks shared by the networks: each failure is ONE line naming the bad value and the valid choices.

Everything is checked before a single layer is built, so a bad sweep point fails at once and cheaply.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

BN_PLACEMENTS = ("before_activation", "after_activation", "pre_activation")
BN_IMPLS = ("torch", "scratch")
STEMS = ("imagenet", "small")
ACTIVATIONS = ("sigmoid", "relu")


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def check_bool(name: str, value) -> bool:
    # bool(...) would quietly turn the string "false" into True; a YAML/CLI typo must fail instead.
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not a bool (true or false)")
    return value


def check_int(name: str, value, minimum: int, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}={value!r} is not an integer")
    if value < minimum:
        raise ValueError(f"{name}={value!r} is not >= {minimum}{why}")
    return int(value)


def check_bn_args(bn, bn_placement, bn_impl, bn_momentum, bn_eps) -> None:
    """The BN knobs every network takes. They are checked even when bn=False (a typo is a typo)."""
    check_bool("bn", bn)
    check_choice("bn_placement", bn_placement, BN_PLACEMENTS)
    check_choice("bn_impl", bn_impl, BN_IMPLS)
    # None is torch's "cumulative moving average" convention; a number is the EMA factor of the new batch.
    if bn_momentum is not None:
        if isinstance(bn_momentum, bool) or not isinstance(bn_momentum, numbers.Real):
            raise ValueError(f"bn_momentum={bn_momentum!r} is not a number in [0, 1] (or None)")
        if not 0.0 <= float(bn_momentum) <= 1.0:
            raise ValueError(f"bn_momentum={bn_momentum!r} is not in [0, 1]")
    if isinstance(bn_eps, bool) or not isinstance(bn_eps, numbers.Real) or not float(bn_eps) > 0.0:
        raise ValueError(f"bn_eps={bn_eps!r} is not a number > 0")


def check_io(in_channels, num_classes, image_size, min_image_size: int = 1, model: str = "") -> None:
    check_int("in_channels", in_channels, 1)
    check_int("num_classes", num_classes, 1)
    why = f" ({model} needs at least {min_image_size}x{min_image_size} inputs)" if min_image_size > 1 else ""
    check_int("image_size", image_size, min_image_size, why)


def check_no_residual_placement(model: str, bn_placement: str) -> None:
    """pre_activation is a property of residual blocks (He et al. 2016b); nets without them cannot have it."""
    if bn_placement == "pre_activation":
        raise ValueError(
            f"bn_placement='pre_activation' is not valid for {model} (no residual blocks); "
            f"use one of before_activation, after_activation"
        )

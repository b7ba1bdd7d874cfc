"""Input checking: every bad value is one clear line, raised before any work starts."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig

PRECISIONS = ("32-true", "32", "64-true", "64", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "transformer-engine")


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the value and the valid choices."""


def _choice(key: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(map(str, choices))}")


def _positive(key: str, value: Any, allow_none: bool = False, allow: tuple = ()) -> None:
    if value is None and allow_none:
        return
    if value in allow:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive number")


def available_devices(accelerator: str) -> int:
    import torch

    if accelerator in ("gpu", "cuda"):
        return torch.cuda.device_count()
    if accelerator == "mps":
        return int(torch.backends.mps.is_available())
    return os.cpu_count() or 1


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first bad value found."""
    from bnres.data import DATA_NAMES
    from bnres.models import BN_IMPLS, BN_PLACEMENTS, MODEL_NAMES

    _choice("model", cfg.get("model_name"), MODEL_NAMES)
    _choice("data", cfg.data.get("name"), DATA_NAMES)
    if not isinstance(cfg.get("bn"), bool):
        raise ConfigError(f"bn={cfg.get('bn')!r} is not one of: true, false")
    _choice("bn_placement", cfg.get("bn_placement"), BN_PLACEMENTS)
    _choice("bn_impl", cfg.get("bn_impl"), BN_IMPLS)
    _positive("lr", cfg.get("lr"))
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be an integer >= 0")
    _positive("data.batch_size", cfg.data.get("batch_size"))
    trainer = cfg.trainer
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps", -1)
    if max_steps in (None, -1):
        _positive("trainer.max_epochs", max_epochs)
    else:
        _positive("trainer.max_steps", max_steps)
        if max_epochs is not None and max_epochs != -1:
            _positive("trainer.max_epochs", max_epochs)
    precision = str(trainer.get("precision", "32-true"))
    _choice("trainer.precision", precision, PRECISIONS)
    accelerator = str(trainer.get("accelerator", "cpu"))
    devices = trainer.get("devices", 1)
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices <= 0 and devices != -1:
            raise ConfigError(f"trainer.devices={devices} must be a positive integer (or -1 for all)")
        if accelerator in ("cpu", "gpu", "cuda", "mps"):
            have = available_devices(accelerator)
            if accelerator in ("gpu", "cuda") and have == 0:
                raise ConfigError(f"trainer.accelerator={accelerator} but no CUDA device is visible; use trainer=cpu")
            if devices > have:
                raise ConfigError(f"trainer.devices={devices} but this machine has {have} {accelerator} device(s)")
    if accelerator == "cpu" and precision in ("16-mixed", "16-true"):
        raise ConfigError(f"trainer.precision={precision} is not supported on CPU; use 32-true or bf16-mixed")
    if accelerator in ("gpu", "cuda") and precision.startswith("bf16"):
        import torch

        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"trainer.precision={precision} is not supported by {torch.cuda.get_device_name()}; use 16-mixed or 32-true")
    check_ddp_config(cfg)


# --- DDP settings the harness cannot honour ---------------------------------------------------------
_SPAWNING_STRATEGIES = ("ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_spawn_find_unused_parameters_true", "ddp_fork_find_unused_parameters_true")


def check_ddp_config(cfg: DictConfig) -> None:
    """DDP settings the harness cannot honour, as one-line :class:`ConfigError`s."""
    if cfg.get("sync_batchnorm") and cfg.get("bn") and cfg.get("bn_impl") == "scratch":
        raise ConfigError(
            "sync_batchnorm=true needs bn_impl=torch: SyncBatchNorm only converts torch's BatchNorm layers, "
            "so the from-scratch BN would silently stay per-device"
        )
    strategy = cfg.trainer.get("strategy")
    if isinstance(strategy, str) and strategy in _SPAWNING_STRATEGIES:
        raise ConfigError(
            f"trainer.strategy={strategy} trains in spawned processes, so the run record (kept by rank 0 in this "
            "process) would stay empty; use trainer.strategy=ddp (trainer=ddp)"
        )

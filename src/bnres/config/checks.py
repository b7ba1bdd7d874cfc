"""Every run setting's type and valid range, in one table, checked before any work.

Both front doors read this module: ``scripts/train.py`` checks the composed Hydra config of every job
(before the first job of a sweep starts) and ``bnres fit`` checks its config translated into the same
keys. Defaults live in ``conf/`` (the CLI derives its own from the composed Hydra config); the model
builders check their own arguments (``bnres.models``), and :func:`check_job` runs those checks too,
without building anything. Every failure is one :class:`~bnres.errors.ConfigError` line naming the key,
the bad value and what is valid.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from bnres.errors import ConfigError, one_line

PRECISIONS = ("32-true", "32", "64-true", "64", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "transformer-engine")
UINT32_MAX = 2**32 - 1  # seed_everything's range

# The sweep knobs and the nested keys that follow them by interpolation: the knob is the one place to
# set the value, so a nested override that disagrees with its knob is refused (naming both keys).
KNOB_LINKS = {
    "bn": "model.bn",
    "bn_placement": "model.bn_placement",
    "bn_impl": "model.bn_impl",
    "bn_momentum": "model.bn_momentum",
    "bn_eps": "model.bn_eps",
    "shortcut": "model.shortcut",
    "depth": "model.depth",
    "lr": "optimizer.lr",
    "seed": "data.shuffle_seed",
    "deterministic": "trainer.deterministic",
    "sync_batchnorm": "trainer.sync_batchnorm",
}


# --- the kinds of setting ---------------------------------------------------------------------
@dataclass(frozen=True)
class Number:
    """A finite number (``integer``: integral) in ``[low, high]``; ``open_low``/``open_high`` exclude the end."""

    key: str
    integer: bool = False
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    nullable: bool = False
    special: tuple = ()  # extra values that mean something (e.g. -1: no limit)
    note: str = ""

    def valid(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            lo, hi = ("(" if self.open_low else "["), (")" if self.open_high else "]")
            rng = f" in {lo}{_num(self.low)}, {_num(self.high)}{hi}"
        elif self.low is not None:
            rng = f" {'>' if self.open_low else '>='} {_num(self.low)}"
        elif self.high is not None:
            rng = f" {'<' if self.open_high else '<='} {_num(self.high)}"
        else:
            rng = ""
        extra = [*(str(s) for s in self.special), *(["null"] if self.nullable else [])]
        return kind + rng + (f" (or {', '.join(extra)})" if extra else "") + self.note

    def check(self, value: Any) -> None:
        if value is None and self.nullable or value in self.special and not isinstance(value, bool):
            return
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if ok and self.integer:
            ok = isinstance(value, numbers.Integral)
        if ok and self.low is not None:
            ok = value > self.low if self.open_low else value >= self.low
        if ok and self.high is not None:
            ok = value < self.high if self.open_high else value <= self.high
        if not ok:
            raise ConfigError(f"{self.key}={_show(value)} is not {self.valid()}")


@dataclass(frozen=True)
class Flag:
    key: str
    nullable: bool = False

    def check(self, value: Any) -> None:
        if value is None and self.nullable:
            return
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key}={_show(value)} is not one of: true, false{', null' if self.nullable else ''}")


@dataclass(frozen=True)
class Choice:
    key: str
    choices: Callable[[], Sequence[str]]

    def check(self, value: Any) -> None:
        choices = self.choices()
        if value not in choices:
            raise ConfigError(f"{self.key}={_show(value)} is not one of: {', '.join(map(str, choices))}")


def _models() -> Sequence[str]:
    from bnres.models import MODEL_NAMES

    return MODEL_NAMES


def _placements() -> Sequence[str]:
    from bnres.models import BN_PLACEMENTS

    return BN_PLACEMENTS


def _impls() -> Sequence[str]:
    from bnres.models import BN_IMPLS

    return BN_IMPLS


def _data_names() -> Sequence[str]:
    from bnres.data import DATA_NAMES

    return DATA_NAMES


_BATCHES = dict(integer=True, low=1, nullable=True, note=" or a fraction in (0, 1]")

#: Settings checked wherever they appear in the config (a key a config does not have is skipped).
SETTINGS: tuple = (
    Choice("model_name", _models),
    Choice("data.name", _data_names),
    Flag("bn"),
    Choice("bn_placement", _placements),
    Choice("bn_impl", _impls),
    Flag("shortcut", nullable=True),
    Number("lr", low=0, open_low=True),
    Number("seed", integer=True, low=0, high=UINT32_MAX),
    Number("depth", integer=True, low=1, nullable=True),
    Flag("deterministic"), Flag("compile"), Flag("channels_last"), Flag("sync_batchnorm"),
    Flag("test_after_fit"), Flag("fresh"),
    Number("optimizer.momentum", low=0, high=1, open_high=True),
    Number("optimizer.weight_decay", low=0),
    Flag("optimizer.nesterov"),
    Number("scheduler.warmup_fraction", low=0, high=1, open_high=True),
    Number("scheduler.warmup_steps", integer=True, low=0, nullable=True),
    Number("scheduler.min_factor", low=0, high=1),
    Number("scheduler.gamma", low=0, high=1, open_low=True),
    Number("data.batch_size", integer=True, low=1),
    Number("data.eval_batch_size", integer=True, low=1),
    Number("data.val_size", integer=True, low=1),
    Number("data.test_size", integer=True, low=1),
    Number("data.num_samples", integer=True, low=2),
    Number("data.image_size", integer=True, low=1),
    Number("data.crop_padding", integer=True, low=0),
    Number("data.split_seed", integer=True, low=0, high=UINT32_MAX),
    Flag("data.augment"), Flag("data.flip"), Flag("data.on_device"), Flag("data.download"),
    Number("trainer.max_epochs", integer=True, low=1, special=(-1,), nullable=True),
    Number("trainer.max_steps", integer=True, low=1, special=(-1,), nullable=True),
    Number("trainer.limit_train_batches", **_BATCHES),
    Number("trainer.limit_val_batches", **_BATCHES),
    Number("trainer.limit_test_batches", **_BATCHES),
    Number("trainer.check_val_every_n_epoch", integer=True, low=1),
    Number("trainer.log_every_n_steps", integer=True, low=1),
    Number("trainer.accumulate_grad_batches", integer=True, low=1),
    Number("trainer.gradient_clip_val", low=0, open_low=True, nullable=True),
    Number("trainer.num_nodes", integer=True, low=1),
    Flag("trainer.benchmark", nullable=True), Flag("trainer.enable_progress_bar"),
    Number("divergence.loss_factor", low=1, open_low=True),
    Number("divergence.check_every_n_steps", integer=True, low=1),
    Number("divergence.ddp_check_every_n_steps", integer=True, low=1),
)
_BATCH_LIMITS = ("trainer.limit_train_batches", "trainer.limit_val_batches", "trainer.limit_test_batches")


# --- the checks ----------------------------------------------------------------------------------
def check_config(cfg: DictConfig | dict, model_choice: str | None = None) -> None:
    """Raise :class:`ConfigError` for the first bad value of a composed config (no building, no files).

    ``model_choice``: the ``model=`` option Hydra picked (an alias such as ``plain18`` may not be
    contradicted by ``shortcut=true``)."""
    get = _getter(cfg)
    _check_model_knobs(get, model_choice)  # first: "depth does not apply to lenet" says more than its range
    for setting in SETTINGS:
        found, value = get(setting.key)
        if not found:
            continue
        if setting.key in _BATCH_LIMITS and isinstance(value, float) and not isinstance(value, bool):
            if not (math.isfinite(value) and 0 < value <= 1):
                raise ConfigError(f"{setting.key}={_show(value)} is not {setting.valid()}")
            continue
        setting.check(value)
    _check_knob_links(get)
    _check_schedule(get)
    _check_training_length(get)
    _check_trainer(get)
    check_ddp_config(cfg)


def check_job(cfg: DictConfig, model_choice: str | None = None) -> None:
    """:func:`check_config`, then the model builder's and the data module's own checks (nothing is
    built or loaded), and that the run would train at least one step."""
    from hydra.utils import instantiate

    from bnres.models import validate_model_args

    check_config(cfg, model_choice)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    target = str(model.pop("_target_", ""))
    try:
        validate_model_args(target.rsplit(".", 1)[-1], **model)
    except ValueError as err:
        raise ConfigError(one_line(err)) from None
    try:
        datamodule = instantiate(cfg.data)
        for probe in (cfg.get("probes") or {}).values():  # the mechanism probes check their own settings
            if isinstance(probe, DictConfig) and "_target_" in probe:
                instantiate(probe)
    except Exception as err:  # noqa: BLE001 - the data module's and probes' own one-line checks
        cause = err.__cause__ or err
        raise ConfigError(one_line(cause)) from None
    check_trains_something(cfg, datamodule)


def check_trains_something(cfg: DictConfig, datamodule: Any) -> None:
    """A run whose epochs hold no training batch would be recorded as a result of an untrained net."""
    count = getattr(datamodule, "train_count", None)
    train_count = count() if callable(count) else None
    trainer = cfg.trainer
    world = _world_size(trainer)
    if train_count is not None:
        per_rank = train_count // world
        if per_rank // cfg.data.batch_size < 1:
            where = f" per device ({world} devices)" if world > 1 else ""
            raise ConfigError(
                f"data.batch_size={cfg.data.batch_size} is larger than the {per_rank} training images{where} of "
                f"{datamodule.name}: the run would train nothing (valid: data.batch_size <= {per_rank})"
            )


def _check_knob_links(get) -> None:
    for knob, nested in KNOB_LINKS.items():
        has_knob, knob_value = get(knob)
        has_nested, nested_value = get(nested)
        if has_knob and has_nested and not _same(knob_value, nested_value):
            raise ConfigError(
                f"{nested}={_show(nested_value)} disagrees with {knob}={_show(knob_value)}: {knob} is the one place to "
                f"set it ({nested} follows it), so write {knob}={_show(nested_value)}"
            )


def _check_model_knobs(get, model_choice: str | None) -> None:
    from bnres.models import BUILDERS
    from bnres.models.zoo import FIXED_DEPTHS, residual_twin

    _, name = get("model_name")
    _, target = get("model._target_")
    builder = BUILDERS.get(residual_twin(str(target).rsplit(".", 1)[-1] if target else str(name)))
    if builder is None:
        return
    params = inspect.signature(builder).parameters
    has_depth, depth = get("depth")
    if has_depth and depth is not None and "depth" not in params:
        fixed = FIXED_DEPTHS.get(name)
        if fixed is None:
            takers = ", ".join(n for n, b in BUILDERS.items() if "depth" in inspect.signature(b).parameters)
            raise ConfigError(f"depth={_show(depth)} does not apply to {name} (depth applies to: {takers})")
        if depth != fixed:
            others = ", ".join(f"{n} ({d})" for n, d in FIXED_DEPTHS.items() if n[:5] == name[:5])
            raise ConfigError(f"depth={_show(depth)} does not apply to {name}, whose depth is {fixed} (choose the model instead: {others})")
    has_shortcut, shortcut = get("shortcut")
    if has_shortcut and shortcut is not None and "shortcut" not in params:
        takers = ", ".join(n for n in BUILDERS if "shortcut" in inspect.signature(BUILDERS[residual_twin(n)]).parameters)
        raise ConfigError(f"shortcut={_show(shortcut)} does not apply to {name} (no residual blocks; shortcut applies to: {takers})")
    if model_choice and model_choice in BUILDERS and model_choice != name and shortcut is True:
        raise ConfigError(
            f"shortcut=true contradicts model={model_choice} ({model_choice} is {residual_twin(model_choice)} without "
            f"shortcuts): use model={residual_twin(model_choice)}"
        )


def _check_schedule(get) -> None:
    found, milestones = get("scheduler.milestones")
    if found and milestones is not None:
        values = list(milestones)
        for m in values:
            if isinstance(m, bool) or not isinstance(m, numbers.Real) or not math.isfinite(m) or m <= 0:
                raise ConfigError(f"scheduler.milestones={values} must be positive: fractions of training (< 1) or step counts")
        if values != sorted(values):
            raise ConfigError(f"scheduler.milestones={values} must be in increasing order")


def _check_training_length(get) -> None:
    _, max_epochs = get("trainer.max_epochs")
    _, max_steps = get("trainer.max_steps")
    no_steps = max_steps in (None, -1)
    if no_steps and max_epochs in (None, -1):
        raise ConfigError(f"trainer.max_epochs={_show(max_epochs)} with trainer.max_steps={_show(max_steps)} sets no end to training (valid: max_epochs >= 1 or max_steps >= 1)")
    _, limit = get("trainer.limit_train_batches")
    if limit == 0:
        raise ConfigError("trainer.limit_train_batches=0 would train nothing (valid: null, an integer >= 1 or a fraction in (0, 1])")


def _check_trainer(get) -> None:
    _, precision = get("trainer.precision")
    precision = str(precision if precision is not None else "32-true")
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r} is not one of: {', '.join(PRECISIONS)}")
    _, accelerator = get("trainer.accelerator")
    accelerator = str(accelerator or "cpu")
    found, devices = get("trainer.devices")
    devices = devices if found else 1
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices <= 0 and devices != -1:
            raise ConfigError(f"trainer.devices={devices} is not a positive integer (or -1 for all)")
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


def available_devices(accelerator: str) -> int:
    import torch

    if accelerator in ("gpu", "cuda"):
        return torch.cuda.device_count()
    if accelerator == "mps":
        return int(torch.backends.mps.is_available())
    return os.cpu_count() or 1


def _world_size(trainer: Any) -> int:
    devices = trainer.get("devices", 1)
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        count = len(devices)
    elif isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        count = devices
    else:
        count = 1
    nodes = trainer.get("num_nodes", 1)
    return count * (nodes if isinstance(nodes, int) and nodes > 0 else 1)


# --- DDP settings the harness cannot honour ---------------------------------------------------------
_SPAWNING_STRATEGIES = ("ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_spawn_find_unused_parameters_true", "ddp_fork_find_unused_parameters_true")


def check_ddp_config(cfg: DictConfig | dict) -> None:
    """DDP settings the harness cannot honour, as one-line :class:`ConfigError`s."""
    get = _getter(cfg)
    if get("sync_batchnorm")[1] and get("bn")[1] and get("bn_impl")[1] == "scratch":
        raise ConfigError(
            "sync_batchnorm=true needs bn_impl=torch: SyncBatchNorm only converts torch's BatchNorm layers, "
            "so the from-scratch BN would silently stay per-device"
        )
    strategy = get("trainer.strategy")[1]
    if isinstance(strategy, str) and strategy in _SPAWNING_STRATEGIES:
        raise ConfigError(
            f"trainer.strategy={strategy} trains in spawned processes, so the run record (kept by rank 0 in this "
            "process) would stay empty; use trainer.strategy=ddp (trainer=ddp)"
        )


# --- helpers ---------------------------------------------------------------------------------------
def _getter(cfg: DictConfig | dict) -> Callable[[str], tuple[bool, Any]]:
    """``get("a.b") -> (found, resolved value)``."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)

    def get(key: str) -> tuple[bool, Any]:
        node: Any = cfg
        for part in key.split("."):
            if not isinstance(node, DictConfig) or part not in node:
                return False, None
            node = node[part]
        if isinstance(node, (DictConfig,)) or OmegaConf.is_list(node):
            return True, OmegaConf.to_container(node, resolve=True)
        return True, node

    return get


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return a == b or (a != a and b != b)
    return a == b


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    return str(value)

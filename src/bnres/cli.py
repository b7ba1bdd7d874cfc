"""The Lightning command line: ``bnres fit|validate|test|predict [--config FILE] [--print_config] [--key value ...]``.

The same pieces as the Hydra entry point (``scripts/train.py``), parsed by ``LightningCLI``/jsonargparse:

* ``model``: :class:`bnres.module.Classifier`; its network is picked by name with
  ``--model.net.name plain_cifar --model.net.depth 56 --model.net.bn false`` (:func:`bnres.models.zoo.network`,
  typed, so a bad name or placement is a parse error); ``in_channels``/``num_classes``/``image_size`` come from
  the data module. Optimizer: ``--model.optimizer torch.optim.SGD --model.optimizer.lr 0.05``; schedule:
  ``--model.scheduler bnres.cli.CosineSchedule`` (the ``bnres.optim`` schedules, told the run's length).
* ``data``: any ``bnres.data`` module (default ``MNIST5kDataModule``, offline), e.g. ``--data SyntheticDataModule``
  or ``--data TorchvisionDataModule --data.name cifar10``.
* ``trainer``: Lightning's Trainer. The run folder is ``--trainer.default_root_dir`` (default
  ``outputs/cli/<timestamp>``); ``result.json``, ``config.yaml``, ``checkpoints/`` and the W&B run
  (offline unless ``WANDB_MODE=online``) are written there.
* ``fit`` goes through :func:`bnres.runner.fit_and_record`, so it writes the same ``result.json`` as a Hydra run
  (with the same divergence detection and history) and analysis reads both.

Defaults mirror ``conf/train.yaml`` (LeNet with BN on the 5k MNIST digits, SGD lr 0.1, cosine schedule,
3 epochs, seed 0, the callbacks of ``conf/callbacks/default.yaml``; drift-tested); ``conf/cli/*.yaml`` holds
example configs.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml
from jsonargparse import Namespace, class_from_function
from omegaconf import OmegaConf
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from torch.optim import Optimizer

from bnres import cli_help, optim, progress, quiet
from bnres.callbacks import DivergenceMonitor, HistoryRecorder
from bnres.checks import check_config
from bnres.data import InMemoryDataModule
from bnres.loggers import finish_active_wandb_run
from bnres.models import BUILDERS
from bnres.models.zoo import network
from bnres.module import Classifier
from bnres.preemption import Preemption, checkpoint_dir
from bnres.record import RECORD_NAME
from bnres.runner import fit_and_record, run_name

DESCRIPTION = (
    "Train and evaluate the bnres networks with Lightning (the same module, data and record as scripts/train.py). "
    "Example: bnres fit --config conf/cli/resnet18.yaml --model.net.bn false"
)
NETWORK = "bnres.cli.Network"
WANDB_LOGGER = "pytorch_lightning.loggers.WandbLogger"
RUNS_DIR = Path("outputs") / "cli"
_RUN_DIR_ENV = "BNRES_CLI_RUN_DIR"
# where and how a run is written, not what it is: left out of W&B run names (as runner.run_name does for Hydra)
_NOT_IN_RUN_NAMES = ("trainer.default_root_dir", "trainer.logger", "trainer.callbacks", "trainer.enable_", "trainer.accelerator", "trainer.devices")

#: ``--model.net``: :func:`bnres.models.zoo.network` as a class the parser can link the data shapes into;
#: instantiating it returns the built network itself (a ``LeNet``, ``ResNet``, ...), so checkpoints match Hydra's.
Network = class_from_function(network, name="Network")

# --------------------------------------------------------------------------------------------
# learning-rate schedules as typed, configurable callables


class _Schedule:
    """``schedule(optimizer, total_steps)`` -> the ``bnres.optim`` schedule ``_fn`` with the stored options.

    The Classifier passes ``total_steps`` (known once the trainer is attached), so milestones can be
    fractions of training. Each subclass only stores its options; the schedules live in ``bnres.optim``.
    (Not ``LRSchedulerCallable``: the partial jsonargparse builds for it hides ``total_steps`` from the
    Classifier, which would then run every schedule as if training were one step long.)
    """

    _fn: Any

    def __call__(self, optimizer: Optimizer, total_steps: int = 1):
        return type(self)._fn(optimizer, total_steps, **vars(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class ConstantSchedule(_Schedule):
    """Constant lr after an optional linear warm-up (:func:`bnres.optim.constant`)."""

    _fn = staticmethod(optim.constant)

    def __init__(self, warmup_fraction: float = 0.0, warmup_steps: Optional[int] = None) -> None:
        self.warmup_fraction = warmup_fraction
        self.warmup_steps = warmup_steps


class MultiStepSchedule(_Schedule):
    """lr x ``gamma`` at each milestone; milestones < 1 are fractions of training (:func:`bnres.optim.multistep`)."""

    _fn = staticmethod(optim.multistep)

    def __init__(
        self,
        milestones: Sequence[float] = (0.5, 0.75),
        gamma: float = 0.1,
        warmup_fraction: float = 0.0,
        warmup_steps: Optional[int] = None,
    ) -> None:
        self.milestones = list(milestones)
        self.gamma = gamma
        self.warmup_fraction = warmup_fraction
        self.warmup_steps = warmup_steps


class CosineSchedule(_Schedule):
    """Cosine decay to ``min_factor`` x lr after an optional warm-up (:func:`bnres.optim.cosine`)."""

    _fn = staticmethod(optim.cosine)

    def __init__(self, min_factor: float = 0.0, warmup_fraction: float = 0.0, warmup_steps: Optional[int] = None) -> None:
        self.min_factor = min_factor
        self.warmup_fraction = warmup_fraction
        self.warmup_steps = warmup_steps


SCHEDULES = {"constant": ConstantSchedule, "multistep": MultiStepSchedule, "cosine": CosineSchedule}

# --------------------------------------------------------------------------------------------
# defaults: those of conf/train.yaml (data=mnist5k model=lenet optimizer=sgd scheduler=cosine trainer=cpu
# callbacks=default logger=wandb)

DEFAULTS: dict[str, Any] = {
    "model.net": {"class_path": NETWORK, "init_args": {"name": "lenet"}},
    "model.optimizer": {
        "class_path": "torch.optim.SGD",
        "init_args": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5.0e-4, "nesterov": False},
    },
    "model.scheduler": {"class_path": "bnres.cli.CosineSchedule"},
    "data": {"class_path": "bnres.data.MNIST5kDataModule", "init_args": {"val_size": 500, "test_size": 500}},
    "trainer.accelerator": "cpu",
    "trainer.devices": 1,
    "trainer.precision": "32-true",
    "trainer.max_epochs": 3,
    "trainer.log_every_n_steps": 10,
    "trainer.num_sanity_val_steps": 0,
    "trainer.enable_model_summary": False,
    # filled in before the run (see before_instantiate_classes): save_dir "." or null = the run folder;
    # mode null = $WANDB_MODE, else offline; group null = "single"; name null = from the command line
    "trainer.logger": {"class_path": WANDB_LOGGER, "init_args": {"project": "bnres"}},
    # as conf/callbacks/default.yaml (drift-tested): best and last checkpoints, lr monitor, progress bar
    "trainer.callbacks": [
        {
            "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
            # dirpath: null = <run folder>/checkpoints
            "init_args": {"filename": "best", "monitor": "val/acc", "mode": "max", "save_top_k": 1, "save_last": False, "auto_insert_metric_name": False},
        },
        {
            # last.ckpt at every epoch end (what `--ckpt_path RUN/checkpoints/last.ckpt` resumes from): an
            # unmonitored top-1 checkpoint, since save_last on the monitored one is written only when it improves
            "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
            "init_args": {"filename": "last", "monitor": None, "save_top_k": 1, "save_last": False},
        },
        # dropped automatically when there is no logger to write to
        {"class_path": "pytorch_lightning.callbacks.LearningRateMonitor", "init_args": {"logging_interval": "step"}},
        # dropped automatically with --trainer.enable_progress_bar false
        {"class_path": "bnres.callbacks.ProgressBar", "init_args": {"refresh_rate": 1, "min_interval_s": 0.25}},
    ],
}


# Lightning's Trainer types these Optional[Union[int, float]], but typing caches unions by equality, so the parser
# may be handed a Union[float, int] created earlier and read "--trainer.limit_val_batches 1" as 1.0 (= all
# batches). Re-type them int-first: "1" is one batch, "1.0" all of them.
INT_OR_FRACTION_KEYS = tuple(
    f"trainer.{k}"
    for k in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches", "overfit_batches", "val_check_interval")
)


def _int_before_float(parser: LightningArgumentParser) -> None:
    for action in parser._actions:
        if action.dest in INT_OR_FRACTION_KEYS and hasattr(action, "_typehint"):
            optional = type(None) in getattr(action._typehint, "__args__", ())
            action._typehint = Union[int, float, None] if optional else Union[int, float]


class _Parser(cli_help.ShortHelp, LightningArgumentParser):
    """Errors end in one ``error: ...`` line after a short usage line (not the hundred-option usage)."""

    def format_usage(self) -> str:
        usage = super().format_usage()
        if usage.count("\n") <= 4:
            return usage
        prog = self.prog.replace(" [options]", "")
        return f"usage: {prog} [-h] [-c CONFIG] [--print_config[=flags]] [--KEY VALUE ...]\n"


def _seed_as_int(seed: Any) -> int:
    """``--seed_everything`` also seeds the data order, as ``seed`` does in Hydra (``true``/``false``: 0)."""
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


class SaveGivenConfig(SaveConfigCallback):
    """Saves the run's config as given (before the run folder, W&B mode and names are filled in) to
    ``<run folder>/config.yaml`` for ``fit`` and ``config_<subcommand>.yaml`` otherwise, so ``bnres test
    --trainer.default_root_dir RUN`` does not overwrite the fit's. ``bnres fit --config RUN/config.yaml`` reruns it."""

    def __init__(self, parser: LightningArgumentParser, config: Namespace, cli: "BnresCLI", **kwargs: Any) -> None:
        super().__init__(parser, config, save_to_log_dir=False, **kwargs)
        self.cli = cli

    def save_config(self, trainer, pl_module, stage: str) -> None:
        stage = str(getattr(stage, "value", stage))  # a TrainerFn
        name = "config.yaml" if stage == "fit" else f"config_{stage}.yaml"
        path = Path(trainer.default_root_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(getattr(self.cli, "given_config", None) or self.config, str(path), skip_none=False, overwrite=True)


class BnresCLI(LightningCLI):
    """``LightningCLI`` over :class:`Classifier` and the ``bnres.data`` modules; ``fit`` writes ``result.json``."""

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        self.history = HistoryRecorder()
        self.record: dict[str, Any] | None = None
        self.cli_args = _as_overrides(sys.argv[1:] if args is None else args)
        kwargs.setdefault("parser_kwargs", {"prog": "bnres", "description": DESCRIPTION})
        super().__init__(
            model_class=Classifier,
            datamodule_class=InMemoryDataModule,
            subclass_mode_data=True,
            seed_everything_default=0,
            # pre-emption: a signal saves <run dir>/checkpoints/last.ckpt; resume with --ckpt_path
            trainer_defaults={"callbacks": [self.history, Preemption()]},
            parser_class=_Parser,
            auto_configure_optimizers=False,  # the Classifier's own configure_optimizers (with total_steps)
            save_config_callback=partial(SaveGivenConfig, cli=self),
            args=args,
            run=run,
            **kwargs,
        )

    # --- parser ---------------------------------------------------------------------------
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(DivergenceMonitor, "divergence")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="fit: test the final model after training")
        parser.set_defaults(DEFAULTS)
        _int_before_float(parser)
        for key in ("in_channels", "num_classes", "image_size"):
            parser.link_arguments(f"data.{key}", f"model.net.init_args.{key}", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("seed_everything", "data.init_args.shuffle_seed", compute_fn=_seed_as_int)

    # --- before building anything: run folder, loggers, one-line checks ----------------------
    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        self.given_config = cfg.clone()  # what config.yaml keeps: replaying it starts a new run, W&B mode from $WANDB_MODE
        trainer = cfg.trainer
        if not trainer.get("default_root_dir"):
            trainer.default_root_dir = str(_default_run_dir())
        run_dir = Path(trainer.default_root_dir)
        loggers = _as_list(trainer.get("logger"))
        if any(_is(lg, WANDB_LOGGER) for lg in loggers):
            finish_active_wandb_run()
        for lg in loggers:
            init = lg.get("init_args")
            if init is not None and "save_dir" in init and init.save_dir in (None, "."):
                init.save_dir = str(run_dir)
            if _is(lg, WANDB_LOGGER):  # as conf/logger/wandb.yaml: offline first, one group for one-off runs
                if init.get("mode") is None and not init.get("offline"):
                    init.mode = _wandb_mode()
                if init.get("group") is None:
                    init.group = "single"
                if init.get("job_type") is None:
                    init.job_type = "train" if self.subcommand == "fit" else self.subcommand
                if init.get("name") is None:
                    init.name = _run_name(self.cli_args)
        callbacks = _as_list(trainer.get("callbacks"))
        for cb in callbacks:
            if _is(cb, "pytorch_lightning.callbacks.ModelCheckpoint") and cb.get("init_args") is not None:
                if cb.init_args.get("dirpath") is None:
                    cb.init_args.dirpath = str(checkpoint_dir(run_dir))
        # the default callbacks step aside rather than clash with --trainer.logger false / --trainer.enable_checkpointing false
        if trainer.get("logger") is False or trainer.get("logger") == []:
            callbacks = [cb for cb in callbacks if not _is(cb, "pytorch_lightning.callbacks.LearningRateMonitor")]
        if trainer.get("enable_checkpointing") is False:
            callbacks = [cb for cb in callbacks if not _is(cb, "pytorch_lightning.callbacks.ModelCheckpoint")]
        if trainer.get("enable_progress_bar") is False:
            callbacks = [cb for cb in callbacks if not _is(cb, "bnres.callbacks.ProgressBar")]
        if trainer.get("callbacks") is not None:
            trainer.callbacks = callbacks
        try:
            check_config(OmegaConf.create(_checkable(cfg)))
        except ValueError as err:
            self._parser(self.subcommand).error(str(err))

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
            from bnres import distributed

            distributed.prepare_trainer(self.trainer)  # sync BN on CPU processes, as in runner.run
            quiet.drop_wandb_anonymous(self.trainer.loggers)
            Path(self.trainer.default_root_dir).mkdir(parents=True, exist_ok=True)  # W&B warns of a missing run dir
            verify = getattr(self.datamodule, "verify", None)  # data files checked before any work, as in runner.run
            if callable(verify):
                verify()
        except (ValueError, TypeError) as err:  # the builders' and data modules' one-line checks
            self._parser(self.subcommand).error(_first_line(err))

    # --- subcommands --------------------------------------------------------------------------
    def fit(self, model: Classifier, datamodule: InMemoryDataModule | None = None, ckpt_path: str | None = None, **_: Any) -> None:
        cfg = self.config[self.subcommand]
        self.record = fit_and_record(
            self.trainer,
            model,
            datamodule,
            divergence=self._get(self.config_init, "divergence"),
            history=self.history,
            output_dir=Path(self.trainer.default_root_dir),
            config=self.record_config(datamodule),
            overrides=self.cli_args,
            test_after_fit=cfg.test_after_fit,
            ckpt_path=ckpt_path,
        )

    def after_validate(self) -> None:
        finish_active_wandb_run()

    def after_test(self) -> None:
        finish_active_wandb_run()

    def after_predict(self) -> None:
        finish_active_wandb_run()

    # --- the record's config: the Hydra run's top-level knobs (what analysis reads) + the CLI config
    def record_config(self, datamodule: InMemoryDataModule | None) -> dict[str, Any]:
        cfg = self.config[self.subcommand]
        dump = yaml.safe_load(self._parser(self.subcommand).dump(cfg, skip_none=False, skip_check=True))
        knobs = _checkable(cfg)
        data = {**(dump.get("data") or {}).get("init_args", {}), "class_path": (dump.get("data") or {}).get("class_path")}
        data.update(knobs["data"])
        if datamodule is not None:
            data.update(in_channels=datamodule.in_channels, num_classes=datamodule.num_classes, image_size=datamodule.image_size)
        # the full CLI config, with the Hydra knobs on top and data flattened as in a Hydra record
        return {"task_name": "cli", **dump, **knobs, "data": data, "trainer": dump.get("trainer", {})}


# --------------------------------------------------------------------------------------------
# helpers


def _is(spec: Any, class_path: str) -> bool:
    return isinstance(spec, (dict, Namespace)) and str(spec.get("class_path", "")).rsplit(".", 1)[-1] == class_path.rsplit(".", 1)[-1]


def _as_list(value: Any) -> list:
    if value is None or value is False or value is True:
        return []
    return list(value) if isinstance(value, list) else [value]


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _wandb_mode() -> str:
    return os.environ.get("WANDB_MODE") or "offline"


def _run_name(overrides: list[str]) -> str:
    """W&B run name from the command line: ``config=resnet18_nobn,model.optimizer.lr=0.05`` (as Hydra names runs)."""
    kept = []
    for o in overrides:
        if o.startswith(_NOT_IN_RUN_NAMES):
            continue
        if o.startswith(("config=", "c=")):
            o = "config=" + Path(o.split("=", 1)[1]).stem
        kept.append(o)
    return run_name(kept)


def _default_run_dir() -> Path:
    """``outputs/cli/<timestamp>``; processes started by DDP (LOCAL_RANK > 0) inherit rank 0's through the environment."""
    inherited = os.environ.get(_RUN_DIR_ENV)
    if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(inherited)
    path = _new_run_dir()
    os.environ[_RUN_DIR_ENV] = str(path)
    return path


def _new_run_dir() -> Path:
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    path, n = RUNS_DIR / stamp, 1
    while path.exists():
        path, n = RUNS_DIR / f"{stamp}_{n}", n + 1
    return path


def _as_overrides(args: Any) -> list[str]:
    """``['fit', '--model.net.name', 'x', '--trainer.max_epochs=3']`` -> ``['model.net.name=x', 'trainer.max_epochs=3']``."""
    if not isinstance(args, (list, tuple)):
        return []
    out: list[str] = []
    tokens = [str(t) for t in args]
    i = 0
    while i < len(tokens):
        token = "--config" if tokens[i] == "-c" else tokens[i]
        if token.startswith("--"):
            key = token[2:]
            if "=" in key:
                out.append(key)
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                out.append(f"{key}={tokens[i + 1]}")
                i += 1
            else:
                out.append(key)
        i += 1
    return out


def _init_args(spec: Any) -> dict[str, Any]:
    init = spec.get("init_args") if isinstance(spec, (dict, Namespace)) else None
    if isinstance(init, Namespace):
        return init.as_dict()
    return dict(init or {})


def _class_of(spec: Any) -> Any:
    from jsonargparse._util import import_object  # noqa: PLC0415 - resolves dotted paths as the parser does

    path = spec.get("class_path") if isinstance(spec, (dict, Namespace)) else None
    try:
        return import_object(path) if path else None
    except Exception:
        return None


def _default_of(obj: Any, name: str) -> Any:
    try:
        param = inspect.signature(obj).parameters.get(name)
    except (TypeError, ValueError):
        return None
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def _checkable(cfg: Namespace) -> dict[str, Any]:
    """The Hydra config's top-level knobs, read off a CLI config: what ``check_config`` checks and analysis reads."""
    net_spec, net = cfg.model.net, _init_args(cfg.model.net)
    name = net.get("name") or str(net_spec.get("class_path", "")).rsplit(".", 1)[-1]
    builder = BUILDERS.get(name)

    def knob(key: str) -> Any:
        if net.get(key) is not None:
            return net[key]
        return _default_of(builder, key) if builder else None

    depth = knob("depth")
    if depth is None and name[-2:].isdigit():  # resnet18, plain34, ...: the depth is in the name
        depth = int(name[-2:])
    opt = _init_args(cfg.model.optimizer)
    lr = opt.get("lr", _default_of(_class_of(cfg.model.optimizer), "lr"))
    data_cls = _class_of(cfg.data)
    data_args = _init_args(cfg.data)
    data_name = data_args.get("name") or getattr(data_cls, "name", None)
    if data_name == "base" and data_cls is not None:  # TorchvisionDataModule: the name is an argument
        data_name = _default_of(data_cls, "name")
    trainer = cfg.trainer
    return {
        "model_name": name,
        "depth": depth,
        "bn": knob("bn"),
        "bn_placement": knob("bn_placement"),
        "bn_impl": knob("bn_impl"),
        "bn_momentum": knob("bn_momentum"),
        "bn_eps": knob("bn_eps"),
        "lr": lr,
        "seed": _seed_as_int(cfg.get("seed_everything")),
        "sync_batchnorm": bool(trainer.get("sync_batchnorm")),
        "data": {"name": data_name, "batch_size": data_args.get("batch_size", _default_of(data_cls, "batch_size") or 128)},
        "trainer": {
            "max_epochs": trainer.get("max_epochs"),
            "max_steps": trainer.get("max_steps", -1),
            "precision": str(trainer.get("precision") or "32-true"),
            "accelerator": str(trainer.get("accelerator") or "auto"),
            "devices": trainer.get("devices", 1),
            "strategy": trainer.get("strategy") if isinstance(trainer.get("strategy"), str) else None,
        },
    }


def main(args: Any = None) -> int:
    """Console script ``bnres`` (and ``python -m bnres``). Exit 0 when the run completed or diverged,
    1 when it failed (the record says why), 2 for bad arguments (one ``error:`` line, nothing run)."""
    quiet.install()
    start = time.time()
    cli = BnresCLI(args=args)
    if cli.record is not None:  # fit: one line saying how it ended and where its record is
        print(progress.end_line(cli.record, Path(cli.trainer.default_root_dir) / RECORD_NAME, time.time() - start), flush=True)
    if cli.record is not None and cli.record.get("status") == "failed":
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

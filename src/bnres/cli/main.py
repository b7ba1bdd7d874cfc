"""The Lightning command line: ``bnres fit|validate|test|predict [--config FILE] [--print_config] [--key value ...]``.

The same pieces as the Hydra entry point (``scripts/train.py``), parsed by ``LightningCLI``/jsonargparse:

* ``model``: :class:`bnres.training.module.Classifier`; its network is picked by name with
  ``--model.net.name plain_cifar --model.net.depth 56 --model.net.bn false`` (:func:`bnres.models.zoo.network`,
  typed, so a bad name or placement is a parse error); ``in_channels``/``num_classes``/``image_size`` come from
  the data module. Optimizer: ``--model.optimizer torch.optim.SGD --model.optimizer.lr 0.05``; schedule:
  ``--model.scheduler bnres.cli.main.CosineSchedule`` (the ``bnres.training.optim`` schedules, told the run's length).
* ``data``: any ``bnres.data`` module (default ``MNIST5kDataModule``, offline), e.g. ``--data SyntheticDataModule``
  or ``--data TorchvisionDataModule --data.name cifar10``.
* ``trainer``: Lightning's Trainer. The run folder is ``--trainer.default_root_dir`` (default
  ``outputs/cli/<timestamp>``); ``result.json``, ``config.yaml``, ``checkpoints/`` and the W&B run
  (offline unless ``WANDB_MODE=online``) are written there.
* ``fit`` goes through :func:`bnres.runs.runner.fit_and_record`, so it writes the same ``result.json`` as a Hydra run
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
import functools
from functools import partial
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml
from jsonargparse import Namespace, class_from_function
from omegaconf import OmegaConf
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from torch.optim import Optimizer

from bnres.training import optim
from bnres.runs import progress
from bnres.tracking import quiet
from bnres.runs.binding import FolderLock, check_folder, fingerprint
from bnres.training.callbacks import ConfigFingerprint, DivergenceMonitor, HistoryRecorder
from bnres.config.checks import UINT32_MAX, check_config, check_trains_something
from bnres.errors import ConfigError, one_line
from bnres.data import InMemoryDataModule
from bnres.tracking.loggers import finish_active_wandb_run
from bnres.models import BUILDERS
from bnres.models.zoo import network
from bnres.training.module import Classifier
from bnres.runs.preemption import Preemption, checkpoint_dir
from bnres.runs.record import RECORD_NAME
from bnres.runs.runner import check_checkpoint, fit_and_record, load_checkpoint, run_name

DESCRIPTION = (
    "Train and evaluate the bnres networks with Lightning (the same module, data and record as scripts/train.py). "
    "Example: bnres fit --config conf/cli/resnet18.yaml --model.net.bn false"
)
NETWORK = "bnres.cli.main.Network"
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
    """``schedule(optimizer, total_steps)`` -> the ``bnres.training.optim`` schedule ``_fn`` with the stored options.

    The Classifier passes ``total_steps`` (known once the trainer is attached), so milestones can be
    fractions of training. Each subclass only stores its options; the schedules live in ``bnres.training.optim``.
    (Not ``LRSchedulerCallable``: the partial jsonargparse builds for it hides ``total_steps`` from the
    Classifier, which would then run every schedule as if training were one step long.)
    """

    _fn: Any

    def __call__(self, optimizer: Optimizer, total_steps: int = 1):
        return type(self)._fn(optimizer, total_steps, **vars(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class ConstantSchedule(_Schedule):
    """Constant lr after an optional linear warm-up (:func:`bnres.training.optim.constant`)."""

    _fn = staticmethod(optim.constant)

    def __init__(self, warmup_fraction: float = 0.0, warmup_steps: Optional[int] = None) -> None:
        self.warmup_fraction = warmup_fraction
        self.warmup_steps = warmup_steps


class MultiStepSchedule(_Schedule):
    """lr x ``gamma`` at each milestone; milestones < 1 are fractions of training (:func:`bnres.training.optim.multistep`)."""

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
    """Cosine decay to ``min_factor`` x lr after an optional warm-up (:func:`bnres.training.optim.cosine`)."""

    _fn = staticmethod(optim.cosine)

    def __init__(self, min_factor: float = 0.0, warmup_fraction: float = 0.0, warmup_steps: Optional[int] = None) -> None:
        self.min_factor = min_factor
        self.warmup_fraction = warmup_fraction
        self.warmup_steps = warmup_steps


SCHEDULES = {"constant": ConstantSchedule, "multistep": MultiStepSchedule, "cosine": CosineSchedule}

# --------------------------------------------------------------------------------------------
# defaults: derived from the composed Hydra config (conf/train.yaml), so the two front doors cannot drift

# trainer keys of conf/trainer/*.yaml the CLI does not take from there: the run folder is the CLI's own
_TRAINER_KEYS_NOT_DERIVED = ("_target_", "default_root_dir")
# data keys derived from the data set or linked from other arguments
_DATA_KEYS_NOT_DERIVED = ("_target_", "in_channels", "num_classes", "shuffle_seed")
_BN_KNOBS = ("bn", "bn_placement", "bn_impl", "bn_momentum", "bn_eps")


def hydra_defaults(config_dir: Path | str | None = None) -> dict[str, Any]:
    """A fresh copy of :func:`_composed_defaults` (the parser of each subcommand takes its own)."""
    import copy

    return copy.deepcopy(_composed_defaults(str(config_dir) if config_dir else None))


@functools.lru_cache(maxsize=4)
def _composed_defaults(config_dir: str | None) -> dict[str, Any]:
    """The CLI's defaults, read off ``conf/train.yaml`` composed with no overrides (``parser.set_defaults``).

    Network: the default model's name and BN knobs (other network options stay null = the network's
    default, so ``--model.net.name resnet18`` never inherits LeNet's ``activation``). Optimizer, schedule,
    data module, trainer, W&B logger, callbacks, divergence, ``test_after_fit`` and the seed: as composed."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from bnres.runs.runner import CONF_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir or CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="train")
    finally:
        GlobalHydra.instance().clear()
    node = lambda key: OmegaConf.to_container(OmegaConf.select(cfg, key), resolve=True)  # noqa: E731
    optimizer, scheduler, data = node("optimizer"), node("scheduler"), node("data")
    schedule = {f.__name__: c for f, c in ((getattr(optim, n), c) for n, c in SCHEDULES.items())}[scheduler.pop("_target_").rsplit(".", 1)[-1]]
    data_class = data["_target_"]
    if data_class.rsplit(".", 1)[-1] != "TorchvisionDataModule":
        data.pop("name", None)  # the class is the data set
    trainer = {k: cfg.trainer[k] for k in cfg.trainer if k not in _TRAINER_KEYS_NOT_DERIVED}
    wandb = OmegaConf.to_container(cfg.logger.wandb, resolve=False)
    callbacks = []
    for conf in OmegaConf.to_container(cfg.callbacks, resolve=False).values():
        init = {k: v for k, v in conf.items() if k not in ("_target_", "dirpath")}  # dirpath: None = <run folder>/checkpoints
        callbacks.append({"class_path": conf["_target_"], "init_args": init})
    return {
        "seed_everything": cfg.seed,
        "model.net": {"class_path": NETWORK, "init_args": {"name": cfg.model_name, **{k: cfg[k] for k in _BN_KNOBS}}},
        "model.optimizer": {"class_path": optimizer.pop("_target_"), "init_args": {k: v for k, v in optimizer.items() if k != "_partial_"}},
        "model.scheduler": {"class_path": f"bnres.cli.main.{schedule.__name__}", "init_args": {k: v for k, v in scheduler.items() if k != "_partial_"}},
        "data": {"class_path": data_class, "init_args": {k: v for k, v in data.items() if k not in _DATA_KEYS_NOT_DERIVED}},
        **{f"trainer.{k}": v for k, v in trainer.items()},
        # filled in before the run (see before_instantiate_classes): save_dir null = the run folder;
        # mode null = $WANDB_MODE, else offline; group null = "single"; name null = from the command line
        "trainer.logger": {"class_path": WANDB_LOGGER, "init_args": {"project": wandb["project"], "entity": wandb.get("entity"), "log_model": wandb.get("log_model", False)}},
        "trainer.callbacks": callbacks,
        **{f"divergence.{k}": v for k, v in node("divergence").items()},
        "test_after_fit": cfg.test_after_fit,
        "model.channels_last": cfg.channels_last,
        "model.compile": cfg.compile,
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


class _Parser(LightningArgumentParser):
    """Errors end in one ``error: ...`` line after a short usage line (not the hundred-option usage);
    ``--help`` is short (``bnres.cli.help``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from bnres.cli.help import HelpFormatter

        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        # nested parsers (exit_on_error false) raise into their parent: only the one that exits shortens
        return super().error(_one_line_parse_error(message) if self.exit_on_error else message, ex)

    def format_help(self) -> str:
        help_text = super().format_help()
        if "Customize every aspect of training" not in help_text:  # not a subcommand's option list
            return help_text
        from bnres.cli.help import shorten

        return shorten(help_text, self.prog.replace(" [options]", ""), self.format_usage())

    def format_usage(self) -> str:
        usage = super().format_usage()
        if usage.count("\n") <= 4:
            return usage
        prog = self.prog.replace(" [options]", "")
        return f"usage: {prog} [-h] [-c CONFIG] [--print_config[=flags]] [--KEY VALUE ...]\n"


def _one_line_parse_error(message: str) -> str:
    """jsonargparse's nested, many-line type errors as one line naming the option, the value and what is valid."""
    import re

    if "\n" not in message.strip():
        return message
    keys = [k for k in re.findall(r'Parser key "([^"]+)"', message) if k != "init_args"]
    key = ".".join(dict.fromkeys(keys)) if keys else ""
    inner = re.search(r"Expected an? (.+?)\. Got value: (.+)$", message, re.MULTILINE)
    if inner:
        expected, value = inner.group(1), inner.group(2).strip()
    else:
        given = re.search(r"Given value: (.*?)(?:\. Got value|$)", message, re.MULTILINE)
        kinds = [k for k in re.findall(r"Expected an? <class '([\w.]+)'>", message) if k != "NoneType"]
        expected, value = (" or ".join(dict.fromkeys(kinds)) or "a valid value"), (given.group(1) if given else "")
    literal = re.match(r"typing\.Literal\[(.*)\]$", expected)
    if literal:
        valid = "one of: " + ", ".join(v.strip(" '\"") for v in literal.group(1).split(","))
    else:
        kind = re.sub(r"<class '([\w.]+)'>", r"\1", expected).removeprefix("a ").removeprefix("an ")
        valid = ("an " if kind[:1] in "aeiou" else "a ") + kind
    if not key:
        return message.strip().splitlines()[0]
    return f"--{key}={value} is not {valid}"


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
        self.fingerprint_stamp = ConfigFingerprint("")  # set in fit(), once the run's config is known
        self.record: dict[str, Any] | None = None
        self.cli_args = _as_overrides(sys.argv[1:] if args is None else args)
        # allow_abbrev off: argparse would take --trainer.max_epoch for --trainer.max_epochs
        kwargs.setdefault("parser_kwargs", {"prog": "bnres", "description": DESCRIPTION, "allow_abbrev": False})
        super().__init__(
            model_class=Classifier,
            datamodule_class=InMemoryDataModule,
            subclass_mode_data=True,
            seed_everything_default=0,
            # pre-emption: a signal saves <run dir>/checkpoints/last.ckpt; resume with --ckpt_path
            trainer_defaults={"callbacks": [self.history, Preemption(), self.fingerprint_stamp]},
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
        parser.set_defaults(hydra_defaults())
        _int_before_float(parser)
        for key in ("in_channels", "num_classes", "image_size"):
            parser.link_arguments(f"data.{key}", f"model.net.init_args.{key}", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("seed_everything", "data.init_args.shuffle_seed", compute_fn=_seed_as_int)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI seeds before before_instantiate_classes: check the seed's range here
        subcommand = self.config.get("subcommand")
        seed = (self.config[subcommand] if subcommand else self.config).get("seed_everything")
        if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed <= UINT32_MAX:
            parser.error(f"--seed_everything={seed} is not an integer in [0, {UINT32_MAX}]")

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
            callbacks = [cb for cb in callbacks if not _is(cb, "bnres.training.callbacks.ProgressBar")]
        if trainer.get("callbacks") is not None:
            trainer.callbacks = callbacks
        try:
            checkable = _checkable(cfg)
            check_config(OmegaConf.create(checkable), model_choice=_init_args(cfg.model.net).get("name"))
        except ValueError as err:
            self._parser(self.subcommand).error(as_cli_message(str(err)))

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
            cfg = self.config[self.subcommand] if self.subcommand else self.config
            check_trains_something(OmegaConf.create(_checkable(cfg)), self.datamodule)
        except (ValueError, TypeError) as err:  # the builders' and data modules' one-line checks
            self._parser(self.subcommand).error(as_cli_message(one_line(err)))

    # --- subcommands --------------------------------------------------------------------------
    def fit(self, model: Classifier, datamodule: InMemoryDataModule | None = None, ckpt_path: str | None = None, **_: Any) -> None:
        cfg = self.config[self.subcommand]
        run_dir = Path(self.trainer.default_root_dir)
        config = self.record_config(datamodule)
        self.fingerprint_stamp.fingerprint = run_fingerprint = fingerprint(config)
        lock = None
        try:  # the folder is bound to its config, and locked while the run trains in it (bnres.runs.binding)
            if self.trainer.is_global_zero:
                lock = FolderLock(run_dir, "--trainer.default_root_dir")
                check_folder(run_dir, config, f"--trainer.default_root_dir {run_dir}", "choose another --trainer.default_root_dir")
            if ckpt_path:
                check_checkpoint(Path(ckpt_path), load_checkpoint(Path(ckpt_path), "--ckpt_path"), run_fingerprint, "--ckpt_path")
        except ConfigError as err:
            if lock is not None:
                lock.release()
            self._parser(self.subcommand).error(str(err))
        try:
            self.record = fit_and_record(
                self.trainer,
                model,
                datamodule,
                divergence=self._get(self.config_init, "divergence"),
                history=self.history,
                output_dir=run_dir,
                config=config,
                overrides=self.cli_args,
                test_after_fit=cfg.test_after_fit,
                ckpt_path=ckpt_path,
                fingerprint=run_fingerprint,
            )
        finally:
            if lock is not None:
                lock.release()

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


# the Hydra config's keys (what bnres.config.checks names) as the CLI's options
_CLI_KEYS = {
    "lr": "model.optimizer.lr", "seed": "seed_everything", "model_name": "model.net.name",
    **{k: f"model.net.{k}" for k in ("bn", "bn_placement", "bn_impl", "bn_momentum", "bn_eps", "depth", "shortcut")},
    "optimizer.": "model.optimizer.", "scheduler.": "model.scheduler.", "compile": "model.compile", "channels_last": "model.channels_last",
    "sync_batchnorm": "trainer.sync_batchnorm", "deterministic": "trainer.deterministic",
}


def as_cli_message(message: str) -> str:
    """A check's message with the leading Hydra key spelled as the CLI option (``optimizer.momentum=5`` ->
    ``--model.optimizer.momentum=5``)."""
    key = message.split("=", 1)[0].split(" ", 1)[0]
    for hydra_key, cli_key in _CLI_KEYS.items():
        if key == hydra_key or (hydra_key.endswith(".") and key.startswith(hydra_key)):
            return "--" + cli_key + message[len(hydra_key):] if hydra_key.endswith(".") else "--" + cli_key + message[len(key):]
    if key.startswith(("data.", "trainer.", "divergence.")):
        return "--" + message
    return message


def _is(spec: Any, class_path: str) -> bool:
    return isinstance(spec, (dict, Namespace)) and str(spec.get("class_path", "")).rsplit(".", 1)[-1] == class_path.rsplit(".", 1)[-1]


def _as_list(value: Any) -> list:
    if value is None or value is False or value is True:
        return []
    return list(value) if isinstance(value, list) else [value]


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
    """A CLI config in the Hydra config's shape (its top-level knobs and the nested settings that
    ``bnres.config.checks`` checks): what ``check_config`` checks, what the record's config carries and analysis reads."""
    from bnres.models.zoo import PLAIN_TWINS, net_name, residual_twin

    net_spec, net = cfg.model.net, _init_args(cfg.model.net)
    requested = net.get("name") or str(net_spec.get("class_path", "")).rsplit(".", 1)[-1]
    shortcut = net.get("shortcut")
    if shortcut is None and requested not in ("lenet", "mlp"):
        shortcut = requested not in PLAIN_TWINS
    # the network built: resnet18 without shortcuts is plain18 (and plain18 with shortcut=true is refused)
    name = net_name(residual_twin(requested), shortcut) if shortcut is not None and requested in BUILDERS else requested
    builder = BUILDERS.get(name)

    def knob(key: str) -> Any:
        if net.get(key) is not None:
            return net[key]
        return _default_of(builder, key) if builder else None

    depth = knob("depth")
    if depth is None and name[-2:].isdigit():  # resnet18, plain34, ...: the depth is in the name
        depth = int(name[-2:])
    opt = _init_args(cfg.model.optimizer)
    opt_class = _class_of(cfg.model.optimizer)
    lr = opt.get("lr", _default_of(opt_class, "lr"))
    data_cls = _class_of(cfg.data)
    data_args = _init_args(cfg.data)
    data_name = data_args.get("name") or getattr(data_cls, "name", None)
    if data_name == "base" and data_cls is not None:  # TorchvisionDataModule: the name is an argument
        data_name = _default_of(data_cls, "name")
    data = {k: v for k, v in data_args.items() if v is not None and k not in ("name", "in_channels", "num_classes")}
    data.setdefault("batch_size", _default_of(data_cls, "batch_size") or 128)
    trainer = cfg.trainer
    trainer_keys = (
        "max_epochs", "max_steps", "limit_train_batches", "limit_val_batches", "limit_test_batches", "check_val_every_n_epoch",
        "log_every_n_steps", "accumulate_grad_batches", "gradient_clip_val", "num_nodes", "benchmark",
    )
    schedule = _init_args(cfg.model.scheduler) if isinstance(cfg.model.get("scheduler"), (dict, Namespace)) else {}
    return {
        "model_name": name,
        "shortcut": shortcut,
        "depth": depth,
        **{key: knob(key) for key in _BN_KNOBS},
        "lr": lr,
        "seed": _seed_as_int(cfg.get("seed_everything")),
        "sync_batchnorm": bool(trainer.get("sync_batchnorm")),
        "deterministic": bool(trainer.get("deterministic")),
        "compile": bool(cfg.model.get("compile")),
        "channels_last": bool(cfg.model.get("channels_last")),
        "test_after_fit": cfg.get("test_after_fit", True),
        "optimizer": {k: v for k, v in opt.items() if k in ("lr", "momentum", "weight_decay", "nesterov") and v is not None},
        "scheduler": {k: v for k, v in schedule.items() if v is not None},
        "data": {"name": data_name, **data},
        "trainer": {
            **{k: trainer.get(k) for k in trainer_keys if k in trainer},
            "precision": str(trainer.get("precision") or "32-true"),
            "accelerator": str(trainer.get("accelerator") or "auto"),
            "devices": trainer.get("devices", 1),
            "strategy": trainer.get("strategy") if isinstance(trainer.get("strategy"), str) else None,
        },
        "divergence": dict(_init_args(cfg.divergence)) if "init_args" in (cfg.divergence or {}) else dict(cfg.divergence or {}),
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

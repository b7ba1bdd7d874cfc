"""Before any work: compose every job of a command line and check it, and bind job folders to configs.

``scripts/train.py`` calls :func:`check_command_line` before Hydra starts. It composes the config as
Hydra will (every job of a ``-m`` sweep, the preset's sweep grid included) and checks each job
(``bnres.config.checks.check_job``). Hydra's own refusals (an unknown option of a group, an unknown key, an
override that does not parse) become the same one-line ``error:`` as the project's checks. Any bad
job stops the whole command with exit status 2 before the first job starts.

:class:`FolderGuard` (a Hydra callback, ``conf/hydra/default.yaml``) then binds folders to configs at
the start of a run or sweep, before Hydra writes into a job folder (``bnres.runs.binding``): a folder of
another config is refused, ``fresh=true`` sets the old contents aside, a single run's folder is locked.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from bnres.runs.binding import FolderLock, check_folder, check_harness_folder, holds_previous_run, set_aside
from bnres.config.checks import check_job
from bnres.errors import ConfigError, one_line

# set by bnres.distributed in DDP ranks > 0: they run inside the folder rank 0 holds
_RANK_CHILD_ENV = "BNRES_DDP_CHILD"

# jobs composed by check_command_line, reused by FolderGuard in the same process: (overrides, config)
_checked_jobs: dict[tuple[str, ...], list[tuple[list[str], DictConfig]]] = {}


def fail(message: str) -> None:
    """One ``error:`` line on stderr, exit status 2 (bad input; nothing was run or written)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


# --- composing as Hydra does ----------------------------------------------------------------------
def hydra_message(err: BaseException, loader: Any = None, config_name: str = "train", overrides: Sequence[str] = ()) -> str:
    """One line for one of Hydra's composition errors, with the valid choices."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in str(err.missing_cfg_file):
        group, _, name = str(err.missing_cfg_file).rpartition("/")
        options = [o for o in (err.options or []) if not o.startswith("_")]
        hint = _did_you_mean(name, options)
        return f"{group}={name!r} is not one of: {', '.join(options)}{hint}"
    if isinstance(err, OverrideParseException):
        return f"could not parse the override {err.override!r}: {one_line(err)}"
    text = str(err)
    if text.startswith("Ambiguous value for argument '"):
        override = text.split("'")[1]
        key, _, value = override.partition("=")
        return f"{override} lists several values: add -m to sweep over them (or write {key}=[{value}] for one list value)"
    if text.startswith("Could not override '"):
        key = text.split("'")[1]
        return _unknown_key(key, loader, config_name, overrides)
    if "Could not append to config. An item is already at" in text:
        key = text.split("'")[1] if "'" in text else text
        return f"+{key} adds a key that already exists: drop the '+' to override it"
    return one_line(err)


def _unknown_key(key: str, loader: Any, config_name: str, overrides: Sequence[str]) -> str:
    parent, _, leaf = key.rpartition(".")
    keys: list[str] = []
    if loader is not None:
        from hydra.types import RunMode

        # the other overrides, a sweep's first value standing for its list: the keys of the node the job would have
        kept = [_first_value(o) for o in overrides if o.lstrip("+~").split("=", 1)[0] != key]
        try:
            cfg = loader.load_configuration(config_name, kept, run_mode=RunMode.RUN)
            # the deepest part of the key that exists: a typo may sit in the parent (optimzer.lr)
            parts = key.split(".")
            depth = 0
            while depth < len(parts) - 1 and isinstance(OmegaConf.select(cfg, ".".join(parts[: depth + 1])), DictConfig):
                depth += 1
            parent, leaf = ".".join(parts[:depth]), parts[depth]
            node = OmegaConf.select(cfg, parent) if parent else cfg
            keys = [k for k in node.keys() if parent or k != "hydra"]
        except Exception:  # noqa: BLE001 - the listing is a courtesy
            keys = []
    where = f"keys of {parent}" if parent else "top-level keys"
    hint = _did_you_mean(leaf, keys, prefix=f"{parent}." if parent else "")
    listed = f" ({where}: {', '.join(keys)})" if keys else ""
    return f"{key} is not a setting of this config{hint}{listed}; add it with +{key}=... only if you mean a new key"


def _first_value(override: str) -> str:
    """``model=resnet18,plain18`` -> ``model=resnet18`` (a simple comma sweep; anything else as it is)."""
    key, sep, value = override.partition("=")
    if sep and "," in value and not any(c in value for c in "[]{}()'\""):
        return f"{key}={value.split(',', 1)[0]}"
    return override


def _did_you_mean(name: str, options: Sequence[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def sweep_overrides(primary: DictConfig, config_loader: Any = None) -> list[list[str]] | None:
    """The override lists of a sweep's jobs, in Hydra's job order (BasicSweeper's expansion of the preset's
    ``hydra.sweeper.params`` and the command line); ``None`` for another sweeper (it picks jobs as it goes)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not str(primary.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = [f"{k}={v}" for k, v in (primary.hydra.sweeper.get("params") or {}).items()]
    parser = OverridesParser.create(config_loader=config_loader)
    batches = BasicSweeper.split_arguments(parser.parse_overrides([*params, *primary.hydra.overrides.task]), None)
    return [job for batch in batches for job in batch]


def sweep_jobs(config_loader: Any, primary: DictConfig) -> list[tuple[list[str], DictConfig]]:
    """Every job of the sweep ``primary`` describes, composed: ``[(overrides, config), ...]``.

    Raises :class:`ConfigError` (one line) for a job that Hydra cannot compose or that fails its checks."""
    arguments = list(primary.hydra.overrides.task)
    cache_key = (str(primary.hydra.job.config_name), *arguments)
    if cache_key in _checked_jobs:
        return _checked_jobs[cache_key]
    expanded = sweep_overrides(primary, config_loader)
    if expanded is None:
        return []  # another sweeper chooses its jobs as it goes: each job is checked when it starts
    jobs = []
    for num, overrides in enumerate(expanded):
        try:
            cfg = config_loader.load_sweep_config(primary, list(overrides))
            _check_job(cfg, overrides)
        except Exception as err:  # noqa: BLE001 - Hydra's composition errors and the project's checks
            message = str(err) if isinstance(err, ConfigError) else hydra_message(err, config_loader, str(primary.hydra.job.config_name), overrides)
            raise ConfigError(f"{message} (sweep job {num}; no job was run)") from None
        jobs.append((list(overrides), cfg))
    _checked_jobs[cache_key] = jobs
    return jobs


def _check_job(cfg: DictConfig, overrides: Sequence[str]) -> None:
    with open_dict(cfg):  # ${hydra:runtime.output_dir} is set by Hydra when the job starts
        cfg.hydra.runtime.output_dir = os.devnull
    check_job(cfg, model_choice=cfg.hydra.runtime.choices.get("model"))


def check_command_line(argv: Sequence[str], config_dir: str, config_name: str = "train") -> None:
    """Compose and check every job ``scripts/train.py argv`` would run; on bad input print one
    ``error:`` line and exit 2. Informational flags (``--help``, ``--cfg``, ``--info``, ...) are left to Hydra."""
    from hydra import initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    try:
        args = get_args_parser().parse_args(list(argv))
    except SystemExit:
        return  # Hydra prints its own usage error
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion or args.experimental_rerun:
        return
    name = args.config_name or config_name
    conf_dir = args.config_dir or config_dir
    mode = RunMode.MULTIRUN if args.multirun else RunMode.RUN
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            try:
                primary = loader.load_configuration(name, list(args.overrides), run_mode=mode)
            except Exception as err:  # noqa: BLE001 - Hydra's composition errors
                fail(hydra_message(err, loader, name, args.overrides))
            if args.multirun:
                jobs = sweep_jobs(loader, primary)
                check_folders_are_the_harness(primary, jobs)
            else:
                _check_job(primary, args.overrides)
                check_folders_are_the_harness(primary, None)
    except ConfigError as err:
        fail(str(err))
    finally:
        GlobalHydra.instance().clear()


def check_folders_are_the_harness(primary: DictConfig, jobs: list[tuple[list[str], DictConfig]] | None) -> None:
    """Refuse a run folder (``jobs`` None), or a sweep folder or one of its job folders, that holds files this
    harness did not write (``bnres.runs.binding.check_harness_folder``)."""
    if jobs is None:
        folder = Path(str(primary.hydra.run.dir))
        check_harness_folder(folder, f"hydra.run.dir={folder}")
        return
    sweep_dir = Path(str(primary.hydra.sweep.dir))
    check_harness_folder(sweep_dir, f"hydra.sweep.dir={sweep_dir}")
    for num, (_, cfg) in enumerate(jobs):
        folder = sweep_dir / _subdir(cfg, num)
        if folder != sweep_dir:
            check_harness_folder(folder, f"hydra.sweep.dir={sweep_dir} (job {folder.name})")


# --- the Hydra callback ---------------------------------------------------------------------------
class FolderGuard(Callback):
    """Binds run folders to their configs before Hydra writes into them (see ``bnres.runs.binding``)."""

    def __init__(self) -> None:
        self._lock: FolderLock | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if os.environ.get(_RANK_CHILD_ENV):
            return  # a DDP rank > 0 of a job whose folder rank 0 holds
        folder = Path(str(config.hydra.run.dir))
        key = "hydra.run.dir"
        try:
            check_harness_folder(folder, f"{key}={folder}")  # before the lock: nothing is written into a foreign folder
            self._lock = FolderLock(folder, key)
            _bind(folder, config, f"{key}={folder}")
        except ConfigError as err:
            self.on_run_end(config)
            fail(str(err))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            jobs = sweep_jobs(GlobalHydra.instance().config_loader(), config)
            check_folders_are_the_harness(config, jobs)
            for num, (_, cfg) in enumerate(jobs):
                folder = sweep_dir / _subdir(cfg, num)
                _bind(folder, cfg, f"hydra.sweep.dir={sweep_dir} (job {folder.name})")
        except ConfigError as err:
            fail(str(err))


def _subdir(cfg: DictConfig, num: int) -> str:
    with open_dict(cfg):
        cfg.hydra.job.num = num
    return str(cfg.hydra.sweep.subdir)


def _bind(folder: Path, cfg: DictConfig, where: str) -> None:
    """Refuse a folder of another config; with ``fresh=true``, set its previous contents aside."""
    if cfg.get("fresh", False):
        if holds_previous_run(folder):
            set_aside(folder, reason="fresh=true")
        return
    check_folder(folder, cfg, where)

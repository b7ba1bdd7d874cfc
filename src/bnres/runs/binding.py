"""Each run folder belongs to one config: its fingerprint, the folder rules, and the single-run lock.

The *fingerprint* of a run is a hash of its resolved config less the keys that cannot change what is
trained (:data:`IGNORED`: where outputs and logs go, the logger, the progress bar and checkpoint
writing). It is stored in the record, in every checkpoint and in the W&B run, so a folder, its
checkpoints and its W&B run can be told apart from another run's.

Folder rules (applied before Hydra writes anything into a job folder, and again by the runner):

* a folder whose record has another fingerprint is never skipped and never resumed: the command stops
  with one line naming the keys that differ and the two ways on (another folder, or ``fresh=true``);
* a folder holds the harness's files only: a non-empty folder that is not a run or sweep folder of this
  harness (no :data:`FOLDER_MARKERS`) and holds anything this harness does not write (:data:`HARNESS_NAMES`)
  is refused before any work (a user's notes, ``.``, a checkout);
* ``fresh=true`` moves what the harness wrote there (:data:`HARNESS_NAMES`, nothing else) aside, into
  ``.replaced/<time>/`` inside it (kept, never deleted; readers of records skip dot-folders), so nothing
  of the old run can be resumed, tested or mistaken for the new one;
* a run that starts over in a folder holding an unfinished run (no usable checkpoint) moves that
  run's files aside the same way, so ``best.ckpt`` always belongs to the run the record describes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf

from bnres.errors import FolderConflict
from bnres.runs.record import read_record

log = logging.getLogger(__name__)

#: dotted keys (fnmatch patterns) that cannot change what is trained: left out of the fingerprint
IGNORED = (
    "hydra", "paths", "logger", "tags", "task_name", "fresh", "wandb_group", "probes", "fingerprint",
    "ckpt_path",  # where to resume from; the checkpoint's own fingerprint must match (runner.check_checkpoint)
    "config",  # bnres fit: the --config files' names (their contents are in the other keys)
    "trainer.default_root_dir", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.log_every_n_steps", "trainer.logger",
    "callbacks.model_checkpoint", "callbacks.last_checkpoint", "callbacks.lr_monitor", "callbacks.progress_bar",
    "trainer.callbacks",  # bnres fit: its checkpoint, lr-monitor and progress-bar callbacks
    "data.data_dir", "data.download",
)
#: where previous contents of a folder are moved (inside it; a dot-folder, so no reader takes it for a run)
REPLACED_DIR = ".replaced"
RUN_LOCK = ".run.lock"
SWEEP_LOCK = ".sweep.lock"
# names a set-aside never moves: the lock of the run in progress, and what Hydra has just written for it
_KEEP_ALWAYS = (RUN_LOCK, REPLACED_DIR, SWEEP_LOCK, ".slots", ".submitit")
#: the names (fnmatch patterns) of everything this harness writes into a run or sweep folder: the only
#: entries it ever moves, and, with a job folder of a sweep, the only ones a folder it writes into may hold
HARNESS_NAMES = (
    "result.json",  # bnres.runs.record.RECORD_NAME
    "checkpoints", "wandb", "csv", "lightning_logs",  # checkpoints, the W&B and CSV loggers, Lightning's default
    ".hydra", "train.log", "multirun.yaml",  # Hydra's config copy, job log (hydra.job.name: train) and sweep config
    "host_syncs.json",  # callbacks.host_sync (benchmarks)
    ".sweep.progress", "dashboard",  # bnres.runs.progress, bnres.tracking.dashboard
    *_KEEP_ALWAYS,
)
#: an entry that makes a folder one of this harness's: a run's record or Hydra's config copy, a sweep's config
FOLDER_MARKERS = ("result.json", ".hydra", "multirun.yaml")


# --- fingerprint --------------------------------------------------------------------------------
def _ignored(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") or fnmatch.fnmatchcase(key, p) for p in IGNORED)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if _ignored(key):
                continue
            if isinstance(v, dict):  # an empty group (callbacks=none) says no more than its ignored members
                out.update(_flatten(v, key))
            else:
                out[key] = v
        return out
    return {prefix: value}


def _null_ignored(value: Any, prefix: str = "") -> Any:
    """The unresolved config with the ignored keys nulled, so what they interpolate (the Hydra run dir,
    ``${now:...}``, environment variables) is never resolved."""
    if not isinstance(value, dict):
        return value
    return {k: (None if _ignored(f"{prefix}.{k}" if prefix else str(k)) else _null_ignored(v, f"{prefix}.{k}" if prefix else str(k))) for k, v in value.items()}


def _canonical(value: Any) -> Any:
    """Numbers compare by value (``lr=1`` and ``lr=1.0`` train the same)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return str(value)


def trained_settings(config: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The settings that decide what is trained, flattened (``{"optimizer.lr": 0.1, ...}``).

    Takes a composed config (resolved here, the ignored keys left unresolved) or a record's resolved config."""
    if isinstance(config, DictConfig):
        raw = OmegaConf.to_container(config, resolve=False)
        raw.pop("hydra", None)
        config = OmegaConf.to_container(OmegaConf.create(_null_ignored(raw)), resolve=True)
    return {k: _canonical(v) for k, v in sorted(_flatten(config).items())}


def fingerprint(config: DictConfig | dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of :func:`trained_settings`."""
    text = json.dumps(trained_settings(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_fingerprint(record: dict[str, Any]) -> str | None:
    """The fingerprint a record was written with (computed from its config for older records)."""
    if record.get("fingerprint"):
        return str(record["fingerprint"])
    return fingerprint(record["config"]) if isinstance(record.get("config"), dict) else None


def differences(old: dict[str, Any], new: dict[str, Any], limit: int = 4) -> str:
    """``"lr: 1000 -> 0.3, seed: 0 -> 1"`` for the settings two configs disagree on."""
    a, b = trained_settings(old), trained_settings(new)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k, "<unset>") != b.get(k, "<unset>")]
    shown = [f"{k}: {_short(a.get(k, '<unset>'))} -> {_short(b.get(k, '<unset>'))}" for k in keys[:limit]]
    return ", ".join(shown) + (f", ... ({len(keys)} keys differ)" if len(keys) > limit else "")


def _short(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


# --- folder rules ---------------------------------------------------------------------------------
FRESH_HINT = f"choose another folder, or add fresh=true to move its run aside (kept in {REPLACED_DIR}/) and rerun"


def check_folder(folder: Path | str, config: DictConfig | dict[str, Any], where: str, ways_on: str = FRESH_HINT) -> None:
    """Refuse (one line) when ``folder`` holds a run of another config. ``where`` names the folder's key,
    e.g. ``hydra.sweep.dir=multirun/x (job 3)``; ``ways_on`` says what to do instead."""
    record = read_record(folder)
    if not record or not isinstance(record.get("config"), dict):
        return  # nothing bound to the folder yet (or a run that failed before it had a config)
    if record_fingerprint(record) == fingerprint(config):
        return
    raise FolderConflict(
        f"{where} holds a run of another config ({differences(record['config'], config)}): {ways_on}"
    )


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def is_harness_folder(folder: Path | str) -> bool:
    """Whether ``folder`` is a run or sweep folder of this harness (it holds one of :data:`FOLDER_MARKERS`)."""
    return any((Path(folder) / marker).exists() for marker in FOLDER_MARKERS)


def foreign_entries(folder: Path | str) -> list[str]:
    """The names in ``folder`` this harness did not write: neither :data:`HARNESS_NAMES` nor a job folder of a sweep."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not _matches(p.name, HARNESS_NAMES) and not (p.is_dir() and is_harness_folder(p)))


def check_harness_folder(folder: Path | str, where: str) -> None:
    """Refuse (one line) a non-empty folder that is not one of this harness's: it writes into its own folders only."""
    if is_harness_folder(folder):
        return
    foreign = foreign_entries(folder)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise FolderConflict(
            f"{where} is not empty and not a bnres run or sweep folder (it holds {foreign[0]!r}{more}): "
            f"choose a new or empty folder; bnres writes only into folders of its own"
        )


def _movable(name: str, keep: Iterable[str]) -> bool:
    """What a set-aside moves: the harness's own files, never the locks, ``keep``, or anything a user put there."""
    return _matches(name, HARNESS_NAMES) and not _matches(name, (*_KEEP_ALWAYS, *keep))


def holds_previous_run(folder: Path | str, keep: Iterable[str] = ()) -> bool:
    """Whether ``folder`` holds files of an earlier run (the harness's files, less ``keep`` and the locks)."""
    folder = Path(folder)
    return folder.is_dir() and any(_movable(p.name, keep) for p in folder.iterdir())


def set_aside(folder: Path | str, keep: Iterable[str] = (), reason: str = "") -> Path | None:
    """Move the harness's files in ``folder`` (:data:`HARNESS_NAMES`, less ``keep`` and the locks) into
    ``folder/.replaced/<time>/``; anything else in it stays where it is."""
    folder = Path(folder)
    moving = [p for p in folder.iterdir() if _movable(p.name, keep)] if folder.is_dir() else []
    if not moving:
        return None
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    target, n = folder / REPLACED_DIR / stamp, 1
    while target.exists():
        target, n = folder / REPLACED_DIR / f"{stamp}_{n}", n + 1
    target.mkdir(parents=True)
    for path in moving:
        shutil.move(str(path), str(target / path.name))
    log.info("moved %s's previous contents to %s%s", folder, target, f" ({reason})" if reason else "")
    return target


# --- folder locks ----------------------------------------------------------------------------------
class FolderLock:
    """An exclusive ``flock`` on ``folder/<name>``, held while a single run (``.run.lock``) or a sweep
    (``.sweep.lock``, ``bnres.runs.sweep_summary``) works in ``folder``; the OS drops it when the process dies.
    :meth:`release` removes the file."""

    def __init__(self, folder: Path | str, key: str, name: str = RUN_LOCK, holder: str = "job") -> None:
        import fcntl

        self.path = Path(folder) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            owner = self._file.read().strip() or "another process"
            self._file.close()
            raise FolderConflict(f"{key}={folder} is in use by a running {holder} ({owner}); wait for it, or choose another {key}") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        if self._file is not None and not self._file.closed:
            self.path.unlink(missing_ok=True)
            self._file.close()

"""A whole sweep in W&B's terminal dashboard (``wandb leet``), offline.

``wandb leet DIR`` lists the runs of one ``wandb/`` folder, but a sweep keeps one ``wandb/``
folder per job (``SWEEP/0/wandb/``, ``SWEEP/1/wandb/``, ...) and the analysis run in
``SWEEP/analysis/wandb/``. :func:`layout` builds one folder that leet reads as a single
workspace holding every run, each listed under its W&B run name (the job's overrides).

How leet (wandb 0.31) reads a folder, and what the layout does about it:

* it lists the entries named ``run-<YYYYMMDD_HHMMSS>-<id>`` or ``offline-run-...`` (newest first,
  by that time), shows each entry's *folder name* in its runs list, and opens
  ``<entry>/run-<id>.wandb``, where ``<id>`` is whatever follows the time;
* it needs ``<time>`` to be a real ``YYYYMMDD_HHMMSS`` (the 20 characters ``run-<time>-`` cannot
  be shortened), and its runs list is about a fifth of the terminal wide, cutting long names;
* so each run gets an entry ``run-<its start time>-<label>`` (a real folder in the dashboard
  folder) holding a symlink ``run-<label>.wandb`` to the run's log and symlinks to the run's
  other files (``files/``, ``logs/``, ...). Nothing in the job folders is moved or changed; the
  dashboard folder can be deleted at any time and rebuilt.

The label is the W&B run name (the job's overrides, ``model=plain18,bn=false``) less the
overrides that every training run of the folder shares (printed once by ``scripts/dashboard.py``),
so what tells runs apart comes first and survives leet's cut. Labels are made safe for a file
name (``/`` becomes ``∕``); two runs with one label and start second are told apart by run id.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from bnres.tracking.wandb_groups import ANALYSIS_JOB_TYPE
from bnres.tracking.wandb_local import run_dirs, run_file, run_record

DEFAULT_DASHBOARD_SUBDIR = "dashboard"
#: marks a folder as built by :func:`layout`, so a rebuild may clear it
MARKER = ".bnres-dashboard"
MAX_NAME_BYTES = 180  # file names are at most 255 bytes; leave room for "run-<time>-" and ".wandb"
_TIME = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-")


@dataclass
class DashboardEntry:
    """One run as the dashboard shows it."""

    key: str  # the entry's folder name: what leet lists
    name: str  # the W&B run name
    run_id: str
    source: Path  # the run folder it points to
    job_type: str = ""
    label: str = ""  # the run name less the overrides all training runs share


def find_run_dirs(sweep_dir: str | Path, skip: Path | None = None) -> list[Path]:
    """Every W&B run folder below ``sweep_dir`` (each ``wandb/`` folder's runs), ``skip`` left out."""
    sweep_dir = Path(sweep_dir)
    found: list[Path] = []
    for root, dirs, _ in os.walk(sweep_dir):  # os.walk does not follow symlinks
        here = Path(root)
        if skip is not None and here.resolve() == skip.resolve():
            dirs[:] = []
            continue
        if here.name == "wandb":
            found += run_dirs(here)
            dirs[:] = []  # a wandb/ folder holds runs, not jobs
    return sorted(found)


def safe_name(name: str) -> str:
    """A run name usable as (part of) a file name, as close to the name as possible."""
    name = name.replace("/", "\u2215").replace("\0", "")
    name = "".join(c if c.isprintable() else "_" for c in name).strip() or "run"
    while len(name.encode()) > MAX_NAME_BYTES:
        name = name[:-1]
    return name


def layout(sweep_dir: str | Path, out_dir: str | Path | None = None) -> tuple[Path, list[DashboardEntry]]:
    """Build (or rebuild) the dashboard folder of a sweep; returns it and its entries, newest first.

    ``out_dir`` defaults to ``SWEEP_DIR/dashboard``. Raises ``FileNotFoundError`` when the sweep
    holds no W&B run and ``FileExistsError`` when ``out_dir`` holds something this did not build.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such sweep folder")
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir / DEFAULT_DASHBOARD_SUBDIR
    sources = find_run_dirs(sweep_dir, skip=out_dir)
    if not sources:
        raise FileNotFoundError(f"{sweep_dir}: no W&B runs found (searched {sweep_dir}/**/wandb/*run-*; runs with logger=wandb write them)")
    _clear(out_dir)

    entries = []
    for source in sources:
        info = run_record(source)  # W&B's own reader: what the run calls itself
        run_id = info.get("run_id") or source.name.rsplit("-", 1)[-1]
        entries.append(DashboardEntry("", info.get("display_name") or run_id, run_id, source, info.get("job_type", "")))
    shared = shared_overrides(entries)
    taken: set[str] = set()
    for entry in entries:
        match = _TIME.match(entry.source.name)
        stamp = match.group(1) if match else "00000000_000000"
        entry.label = ",".join(t for t in entry.name.split(",") if t not in shared) if entry.job_type != ANALYSIS_JOB_TYPE else entry.name
        label = safe_name(entry.label or entry.name)
        if f"run-{stamp}-{label}" in taken:
            label = safe_name(f"{entry.label or entry.name} ({entry.run_id})")
        entry.key = f"run-{stamp}-{label}"
        taken.add(entry.key)
        _link_run(entry.source, out_dir / entry.key, label)
    entries.sort(key=lambda e: e.key[4:19], reverse=True)  # as leet lists them: newest first
    return out_dir, entries


def shared_overrides(entries: list[DashboardEntry]) -> list[str]:
    """The overrides (``key=value`` parts of the run names) every training run shares; none for one run."""
    names = [e.name.split(",") for e in entries if e.job_type != ANALYSIS_JOB_TYPE]
    if len(names) < 2:
        return []
    return [t for t in names[0] if "=" in t and all(t in other for other in names[1:])]


def _link_run(source: Path, entry: Path, label: str) -> None:
    entry.mkdir()
    log = run_file(source)
    for item in source.iterdir():
        target = entry / (f"run-{label}.wandb" if item == log else item.name)
        target.symlink_to(item.resolve(), target_is_directory=item.is_dir())


def _clear(out_dir: Path) -> None:
    """Empty a dashboard folder built earlier (leet's own view state, ``.wandb-leet.json``, stays)."""
    if out_dir.exists():
        if not (out_dir / MARKER).exists():
            if any(out_dir.iterdir()):
                raise FileExistsError(f"{out_dir} exists and was not made by the dashboard; choose another --out")
        for item in out_dir.iterdir():
            if item.name.startswith("run-") and item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)  # only symlinks inside: the runs they point to are untouched
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("built by bnres.tracking.dashboard (scripts/dashboard.py): symlinks to W&B runs; safe to delete\n")

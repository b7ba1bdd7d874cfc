"""Load the ``result.json`` records of one or more sweep folders into tidy tables.

A sweep folder holds one job folder per run (``SWEEP_DIR/0/result.json``, ...). Records are
found recursively, so nested layouts (``SWEEP_DIR/lr_sweep/3/result.json``) work too.

Two tables come out of a load:

* the *runs* table (:func:`load_runs`): one row per record, with the knobs the claims need
  (``model_name``, ``residual``, ``bn``, ``bn_placement``, ``lr``, ``depth``, ``seed``, ...), the
  final and best metrics flattened to ``final_train_loss``, ``best_val_acc``, ..., and
  ``train_error = 1 - final_train_acc``;
* the *histories* table (:func:`load_histories`): one row per (run, logged epoch), for curves.

Records whose status is ``running`` stay in the runs table (flagged by their status) so they
can be counted as missing; every analysis function ignores them.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bnres.runs.record import FINISHED, RECORD_NAME, STATUSES, is_set_aside  # FINISHED: runs that ended, the only evidence

#: metric keys of the record's ``final``/``best`` blocks and their column suffixes
METRIC_KEYS = {
    "train/loss": "train_loss",
    "train/acc": "train_acc",
    "val/loss": "val_loss",
    "val/acc": "val_acc",
    "test/loss": "test_loss",
    "test/acc": "test_acc",
}

#: label used for runs without batch norm wherever a placement is shown
NO_BN_LABEL = "no BN"

#: column order of the runs table (columns not listed here follow in their own order)
RUN_COLUMNS = [
    "run_id", "sweep", "job", "status",
    "data", "model_name", "family", "residual", "shortcut", "depth",
    "bn", "bn_placement", "bn_label", "bn_impl", "lr", "seed", "max_epochs",
    *[f"final_{suffix}" for suffix in METRIC_KEYS.values()],
    "train_error",
    *[f"best_{suffix}" for suffix in METRIC_KEYS.values()],
    "best_train_error",
    "epochs_logged", "num_params", "wall_time_s", "train_images_per_s",
    "diverged_at_step", "error", "overrides", "path",
]

#: columns shown in the human-readable Markdown table
MARKDOWN_COLUMNS = [
    "sweep", "job", "status", "data", "model_name", "depth", "bn_label", "lr", "seed",
    "final_train_loss", "train_error", "final_val_acc", "best_val_acc",
    "num_params", "wall_time_s", "diverged_at_step",
]


class NoResultsError(FileNotFoundError):
    """A sweep folder is missing or holds no ``result.json``."""


def find_result_files(sweep_dir: str | Path) -> list[Path]:
    """All ``result.json`` files below ``sweep_dir`` (recursively), sorted naturally by job folder.

    Raises :class:`NoResultsError` when the folder does not exist or holds no record.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise NoResultsError(f"{sweep_dir}: no such sweep folder")
    found = [p for p in sweep_dir.glob(f"**/{RECORD_NAME}") if not is_set_aside(p, sweep_dir)]  # not .replaced/ runs
    files = sorted(found, key=lambda p: _natural_key(p.relative_to(sweep_dir)))
    if not files:
        raise NoResultsError(f"{sweep_dir}: no {RECORD_NAME} found (searched {sweep_dir}/**/{RECORD_NAME})")
    return files


def load_records(sweep_dirs: str | Path | Sequence[str | Path]) -> list[dict[str, Any]]:
    """Read every record of the given sweep folders.

    Each returned dict is the parsed ``result.json`` plus three bookkeeping keys:
    ``_sweep`` (a short, unique label of its sweep folder), ``_job`` (job folder relative to the
    sweep folder) and ``_path`` (the file). Unreadable files are skipped with a warning, so one
    half-written record cannot stop the analysis of a whole sweep.
    """
    sweep_paths = [Path(d) for d in _as_list(sweep_dirs)]
    labels = _sweep_labels(sweep_paths)
    records: list[dict[str, Any]] = []
    for sweep_path, label in zip(sweep_paths, labels):
        for file in find_result_files(sweep_path):
            try:
                record = json.loads(file.read_text())
            except (OSError, ValueError) as exc:  # half-written or corrupt file
                warnings.warn(f"skipping unreadable record {file}: {exc}", stacklevel=2)
                continue
            if not isinstance(record, dict):
                warnings.warn(f"skipping {file}: not a JSON object", stacklevel=2)
                continue
            job = file.parent.relative_to(sweep_path).as_posix()
            record.update(_sweep=label, _job=job if job != "." else "", _path=str(file))
            records.append(record)
    return records


def records_to_runs(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Flatten records (from :func:`load_records`) into the runs table, one row per record."""
    rows = [_record_to_row(record) for record in records]
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS) if not rows else pd.DataFrame(rows)
    ordered = [c for c in RUN_COLUMNS if c in runs.columns]
    runs = runs[ordered + [c for c in runs.columns if c not in ordered]]
    # stable, readable order: by sweep, then job folder number
    if len(runs):
        runs = runs.sort_values(["sweep", "job"], key=lambda s: s.map(_natural_key)).reset_index(drop=True)
    return runs


def records_to_histories(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Long table of per-epoch metrics: one row per (run, history entry).

    Columns: ``run_id``, ``epoch``, ``step``, ``lr`` and one column per logged metric with ``/``
    replaced by ``_`` (``train_loss``, ``val_acc``, ...), plus ``train_error``/``val_error``.
    """
    rows = []
    for record in records:
        run_id = _run_id(record)
        for entry in record.get("history") or []:
            if not isinstance(entry, dict):
                continue
            row = {"run_id": run_id}
            for key, value in entry.items():
                row[key.replace("/", "_")] = _number(value)
            rows.append(row)
    histories = pd.DataFrame(rows)
    if histories.empty:
        return pd.DataFrame(columns=["run_id", "epoch", "train_error", "val_error"])
    for split in ("train", "val"):
        acc = f"{split}_acc"
        histories[f"{split}_error"] = 1.0 - histories[acc] if acc in histories else math.nan
    return histories


def load_runs(sweep_dirs: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """The runs table of one or more sweep folders (see the module docstring)."""
    return records_to_runs(load_records(sweep_dirs))


def load_histories(sweep_dirs: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """The per-epoch histories table of one or more sweep folders."""
    return records_to_histories(load_records(sweep_dirs))


def load_sweeps(sweep_dirs: str | Path | Sequence[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables (runs, histories) from a single pass over the files."""
    records = load_records(sweep_dirs)
    return records_to_runs(records), records_to_histories(records)


def finished_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that ended (completed or diverged); running and failed runs are missing evidence."""
    return runs[runs["status"].isin(FINISHED)]


def status_counts(runs: pd.DataFrame) -> dict[str, int]:
    """Number of runs per status (all known statuses listed, zero included)."""
    counts = runs["status"].value_counts().to_dict() if len(runs) else {}
    return {status: int(counts.pop(status, 0)) for status in STATUSES} | {k: int(v) for k, v in counts.items()}


def write_tables(runs: pd.DataFrame, out_dir: str | Path) -> tuple[Path, Path]:
    """Write the runs table as ``runs.csv`` (all columns) and ``runs.md`` (readable subset)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "runs.csv", out_dir / "runs.md"
    runs.to_csv(csv_path, index=False)
    md_path.write_text(runs_markdown(runs))
    return csv_path, md_path


def runs_markdown(runs: pd.DataFrame) -> str:
    """The runs table as Markdown, with a one-line status summary above it."""
    counts = status_counts(runs)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    header = f"# Runs\n\n{len(runs)} records: {summary or 'none'}.\n"
    if counts.get("running"):
        header += f"\n{counts['running']} run(s) still `running` are listed but count as missing in the verdicts.\n"
    if runs.empty:
        return header
    table = runs[[c for c in MARKDOWN_COLUMNS if c in runs.columns]].copy()
    for column in ("depth", "seed", "num_params", "diverged_at_step"):
        if column in table:  # integers stored as float because of missing values
            table[column] = table[column].map(lambda v: "" if pd.isna(v) else f"{int(v)}")
    return header + "\n" + table.to_markdown(index=False, floatfmt=".4g") + "\n"


# --------------------------------------------------------------------------------------------
# helpers


def model_family(model_name: str | None) -> str | None:
    """Architecture style shared by a plain net and its residual twin.

    ``plain_cifar``/``resnet_cifar`` -> ``"cifar"``; ``plain18``/``resnet34`` -> ``"imagenet"``;
    other models (``lenet``, ``mlp``) have no twin and give ``None``.
    """
    if not isinstance(model_name, str):
        return None
    for prefix in ("plain", "resnet"):
        if model_name.startswith(prefix):
            rest = model_name[len(prefix):]
            if rest.isdigit() or rest == "":
                return "imagenet"
            return rest.lstrip("_-") or None
    return None


def shortcut_of(config: dict[str, Any], model_name: str | None) -> bool | None:
    """Does the net have residual shortcuts? ``config.shortcut`` when the record has it (true/false,
    null for nets without a residual twin), else from the model name (``resnet*`` / ``plain*``)."""
    if "shortcut" in config:
        value = config["shortcut"]
        return None if value is None else _boolean(value)
    if isinstance(model_name, str):
        if model_name.startswith("resnet"):
            return True
        if model_name.startswith("plain"):
            return False
    return None


def _record_to_row(record: dict[str, Any]) -> dict[str, Any]:
    config = record.get("config") or {}
    overrides = record.get("overrides") or []
    override_values = dict(o.split("=", 1) for o in overrides if isinstance(o, str) and "=" in o)

    def knob(name: str, default: Any = None) -> Any:
        # the resolved config is authoritative; overrides are a fallback for sparse records
        value = config.get(name)
        return value if value is not None else override_values.get(name, default)

    model_name = knob("model_name") or override_values.get("model")
    data_cfg = config.get("data") if isinstance(config.get("data"), dict) else {}
    trainer_cfg = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
    bn = _boolean(knob("bn"))
    placement = knob("bn_placement")
    row: dict[str, Any] = {
        "run_id": _run_id(record),
        "sweep": record.get("_sweep", ""),
        "job": record.get("_job", ""),
        "status": record.get("status") or "unknown",
        "data": data_cfg.get("name") or override_values.get("data"),
        "model_name": model_name,
        "family": model_family(model_name),
        "residual": shortcut_of(config, model_name) is True,
        "shortcut": shortcut_of(config, model_name),
        "depth": _number(knob("depth")),
        "bn": bn,
        "bn_placement": placement,
        "bn_label": (placement or "BN") if bn else NO_BN_LABEL,
        "bn_impl": knob("bn_impl"),
        "lr": _number(knob("lr")),
        "seed": _number(knob("seed")),
        "max_epochs": _number(trainer_cfg.get("max_epochs", override_values.get("trainer.max_epochs"))),
    }
    for block in ("final", "best"):
        metrics = record.get(block) or {}
        for key, suffix in METRIC_KEYS.items():
            row[f"{block}_{suffix}"] = _number(metrics.get(key))
    # training error as the claims use it: 1 - (epoch-mean) training accuracy
    row["train_error"] = 1.0 - row["final_train_acc"]
    row["best_train_error"] = 1.0 - row["best_train_acc"]
    history = record.get("history") or []
    row.update(
        epochs_logged=len(history),
        num_params=_number(record.get("num_params")),
        wall_time_s=_number(record.get("wall_time_s")),
        train_images_per_s=_number(record.get("train_images_per_s")),
        diverged_at_step=_number(record.get("diverged_at_step")),
        error=record.get("error"),
        overrides=" ".join(str(o) for o in overrides),
        path=record.get("_path", ""),
    )
    return row


def _run_id(record: dict[str, Any]) -> str:
    sweep, job = record.get("_sweep", ""), record.get("_job", "")
    return f"{sweep}/{job}" if job else sweep


def _number(value: Any) -> float:
    """A float, NaN for null/missing/non-numeric (non-finite numbers are kept as inf/nan)."""
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value) if value is not None else True  # the harness default is bn=true


def _natural_key(value: Any) -> tuple:
    """Sort key that orders ``2`` before ``10`` in job folder names."""
    parts = []
    for chunk in str(value).replace("\\", "/").split("/"):
        parts.append((0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk))
    return tuple(parts)


def _as_list(value: Any) -> list:
    if isinstance(value, (str, Path)):
        return [value]
    return list(value)


def _sweep_labels(paths: list[Path]) -> list[str]:
    """Folder names as labels; the full path where two sweeps share a name."""
    names = [p.resolve().name or str(p) for p in paths]
    return [name if names.count(name) == 1 else str(path) for name, path in zip(names, paths)]

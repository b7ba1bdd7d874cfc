"""The run record, ``result.json``: what analysis reads (W&B is for people).

Written atomically (temporary file + rename), so a reader never sees half a record, and a
killed run leaves ``running`` behind, never ``completed``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

RECORD_NAME = "result.json"
# preempted: stopped by a signal (a cluster's time limit, a `kill`) with a checkpoint saved; rerun resumes it
STATUSES = ("running", "completed", "diverged", "failed", "preempted")
FINISHED = ("completed", "diverged")
METRIC_KEYS = ("train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc")


def clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become null (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return clean(value.item())
        except (TypeError, ValueError):
            pass
    return value


def is_set_aside(path: Path, root: Path) -> bool:
    """Whether ``path`` lies in a dot-folder under ``root`` (``.replaced/`` holds runs set aside by ``fresh=true``)."""
    return any(part.startswith(".") for part in Path(path).relative_to(root).parent.parts)


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_record(overrides: list[str], config: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    """A record with every field of the schema, status ``running`` unless ``fields`` say otherwise."""
    record: dict[str, Any] = {
        "status": "running", "overrides": overrides, "config": config, "final": {}, "best": {}, "history": [],
        "num_params": None, "wall_time_s": None, "train_images_per_s": None, "diverged_at_step": None,
        "error": None, "resumed_from": None, "wandb_id": None, "fingerprint": None,
        "probes": None,  # bnres.training.probes measurements (probes=layers|landscape|all), else null
    }
    record.update(fields)
    return record


def write_record(output_dir: Path | str, record: dict[str, Any]) -> Path:
    if record.get("status") not in STATUSES:
        raise ValueError(f"record status {record.get('status')!r} is not one of {', '.join(STATUSES)}")
    path = Path(output_dir) / RECORD_NAME
    write_atomic(path, json.dumps(clean(record), indent=2, sort_keys=False, allow_nan=False) + "\n")
    return path


def read_record(output_dir: Path | str) -> dict[str, Any] | None:
    path = Path(output_dir) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def final_and_best(history: list[dict[str, Any]], test_metrics: dict[str, Any]) -> tuple[dict, dict]:
    """``final``: last epoch's metrics (+ test); ``best``: min losses / max accuracies over epochs."""
    final: dict[str, Any] = {}
    best: dict[str, Any] = {}
    for key in METRIC_KEYS:
        values = [row.get(key) for row in history if key in row]
        if values:
            final[key] = values[-1]
            finite = [v for v in values if v is not None]
            if finite:
                best[key] = min(finite) if key.endswith("loss") else max(finite)
    for key, value in test_metrics.items():
        final[key] = value
        best[key] = value
    return final, best

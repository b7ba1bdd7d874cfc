"""How each job ends on the terminal: one line with its outcome, and in a sweep how far the sweep is.

Every job (a single run, or each job of a sweep) ends with one line::

    completed · val/acc 0.956 · test/acc 0.946 · 9.3 s · outputs/train/2026-12-01_09-00-00/result.json
    [2/4 · ~1 min 10 s left] diverged at step 40 · val/acc 0.098 · 6.2 s · multirun/.../1/result.json · model=plain18 bn=false

:class:`JobProgress` (a Hydra callback, ``conf/hydra/default.yaml``) prints it as the job ends, in
the process that ran it — with the packed (joblib) launcher that is a worker process, whose output
goes to the same terminal. The count of finished jobs is kept in ``<sweep dir>/.sweep.progress``
(one line per finished job, appended by whichever process ran it), so k/N holds across worker
processes; N comes from the sweep's overrides, as Hydra's basic sweeper expands them. The file is
removed when the sweep ends. The time left is the sweep's elapsed time per finished job so far,
times the jobs left. ``bnres fit`` prints the same line (:func:`end_line`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bnres.runs.record import RECORD_NAME, read_record

PROGRESS_FILE = ".sweep.progress"


def duration(seconds: float) -> str:
    """``9.3 s``, ``2 min 05 s``, ``1 h 04 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def end_line(record: dict[str, Any] | None, record_path: Path, wall_s: float, skipped: bool = False) -> str:
    """The one line a job ends with: status, final val/test accuracy, wall time, where the record is."""
    if record is None:
        return f"invalid: nothing run, no record (see the error above) · {duration(wall_s)}"
    status = str(record.get("status"))
    head = status
    if status == "diverged" and record.get("diverged_at_step") is not None:
        head = f"diverged at step {record['diverged_at_step']}"
    elif status in ("failed", "preempted") and record.get("error"):
        head = f"{status}: {str(record['error']).splitlines()[0][:160]}"
    if skipped:
        head = f"already {status}, skipped (fresh=true reruns it)"
    parts = [head]
    final = record.get("final") or {}
    for key in ("val/acc", "test/acc"):
        if isinstance(final.get(key), (int, float)):
            parts.append(f"{key} {final[key]:.3f}")
    parts.append(duration(wall_s))
    parts.append(_shown_path(record_path))
    return " · ".join(parts)


def sweep_size(config: DictConfig) -> int | None:
    """Number of jobs of the sweep as Hydra's basic sweeper expands its overrides (``None`` for other sweepers)."""
    from bnres.runs.preflight import sweep_overrides

    try:
        jobs = sweep_overrides(config)
    except Exception:  # noqa: BLE001 - e.g. glob() sweeps need the config loader: no count, no harm
        return None
    return None if jobs is None else len(jobs)


def _is_rank_zero() -> bool:
    from bnres.distributed.ranks import CHILD_ENV

    if os.environ.get(CHILD_ENV):
        return False
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0) == 0


class JobProgress(Callback):
    """Hydra callback: the end line of every job, with k/N and the time left in a sweep."""

    def __init__(self) -> None:
        self._job_start = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        header = {"jobs": sweep_size(config), "started": time.time()}
        (sweep_dir / PROGRESS_FILE).write_text(json.dumps(header) + "\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        (Path(config.hydra.sweep.dir) / PROGRESS_FILE).unlink(missing_ok=True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._job_start = time.time()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _is_rank_zero():
            return
        wall_s = time.time() - self._job_start
        output_dir = Path(config.hydra.runtime.output_dir)
        record_path = output_dir / RECORD_NAME
        # an invalid job (bad config: one error line, nothing run) writes no record; an older one may be there
        record = None if getattr(job_return, "return_value", None) == "invalid" else read_record(output_dir)
        skipped = record is not None and record_path.stat().st_mtime < self._job_start
        line = end_line(record, record_path, wall_s, skipped=skipped)
        if str(config.hydra.mode) == "RunMode.MULTIRUN":
            line = f"{self._sweep_prefix(Path(config.hydra.sweep.dir), config.hydra.job.get('num'))} {line} · {' '.join(config.hydra.overrides.task)}"
        print(line, file=sys.stdout, flush=True)

    def _sweep_prefix(self, sweep_dir: Path, job_num: Any) -> str:
        path = sweep_dir / PROGRESS_FILE
        try:
            with open(path, "a") as tally:  # one short append per job: atomic on a local file system
                tally.write(f"{job_num}\n")
            header, *done = path.read_text().splitlines()
            info = json.loads(header)
        except (OSError, ValueError):
            return "[job done]"
        k, n = len(set(done)), info.get("jobs")
        if not n:
            return f"[{k} done]"
        if k >= n:
            return f"[{k}/{n}]"
        left = (time.time() - float(info["started"])) / max(k, 1) * (n - k)
        return f"[{k}/{n} · ~{duration(left)} left]"

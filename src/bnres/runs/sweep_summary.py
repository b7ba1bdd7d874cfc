"""The end of a sweep: a table of every job's status, and a non-zero exit if any failed.

Reads the records on disk, so it works the same whichever launcher ran the jobs (in this
process, in worker processes, on a cluster)."""

from __future__ import annotations

import atexit
import shutil
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bnres.runs.binding import SWEEP_LOCK, FolderLock
from bnres.distributed.packing import slots_dir
from bnres.errors import FolderConflict
from bnres.runs.record import is_set_aside, read_record

log = logging.getLogger(__name__)


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders of a sweep: those Hydra wrote its ``.hydra/overrides.yaml`` into."""
    sweep_dir = Path(sweep_dir)
    found = [p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml") if not is_set_aside(p.parent, sweep_dir)]
    return sorted((p for p in found if p != Path(sweep_dir)), key=lambda p: (len(p.parts), _num(p.name), str(p)))


def _num(name: str) -> int:
    head = name.split("_")[0]
    return int(head) if head.isdigit() else 1 << 30


def sweep_statuses(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for job in job_dirs(sweep_dir):
        record = read_record(job)
        overrides = OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        final = (record or {}).get("final", {})
        rows.append(
            {
                "job": job.relative_to(sweep_dir).as_posix(),
                "overrides": " ".join(overrides),
                "status": record["status"] if record else "invalid/no record",
                "val/acc": final.get("val/acc"),
                "train/loss": final.get("train/loss"),
                "error": (record or {}).get("error") or "",
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        return "" if v is None else str(v)

    headers = ["job", "status", "val/acc", "train/loss", "overrides", "error"]
    table = [[cell(r[h])[:80] for h in headers] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(t) for t in table)])


class SweepSummary(Callback):
    """Hydra callback around a multirun.

    At the start it locks the sweep folder, so two sweeps pointed at one folder cannot
    overwrite each other's jobs (the OS drops the lock if the process dies). At the end it
    prints the status table and flags failures for the exit code."""

    def __init__(self) -> None:
        self._lock: FolderLock | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._lock = FolderLock(config.hydra.sweep.dir, "hydra.sweep.dir", name=SWEEP_LOCK, holder="sweep")
        except FolderConflict as err:
            # Hydra turns exceptions raised in callbacks into warnings and goes on: exit instead
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        atexit.register(self._release)  # also when a later start-up check exits with status 2

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from bnres.runs import task

        self._release()
        sweep_dir = Path(config.hydra.sweep.dir)
        shutil.rmtree(slots_dir(sweep_dir), ignore_errors=True)  # the packed launcher's slot locks: all jobs are done
        rows = sweep_statuses(sweep_dir)
        bad = [r for r in rows if r["status"] not in ("completed", "diverged")]
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        print(f"\nSweep {sweep_dir}: {len(rows)} jobs — {summary}\n{format_table(rows)}", file=sys.stderr if bad else sys.stdout, flush=True)
        if bad:
            print(f"error: {len(bad)} job(s) did not finish: " + "; ".join(f"{r['job']} ({r['status']})" for r in bad), file=sys.stderr, flush=True)
            task.worsen(1)

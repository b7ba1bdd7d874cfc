"""Local W&B runs read with W&B's own reader (``wandb leet inspect``), no network.

A job folder holds its W&B run(s) as ``wandb/offline-run-<time>-<id>/`` (``run-...`` when online),
each with one ``run-<id>.wandb`` transaction log. :func:`inspect_summary` and :func:`run_record`
read that log with the reader behind ``wandb leet inspect`` (the ``wandb-core`` binary that ships
with the ``wandb`` package, called with the arguments the ``wandb leet inspect`` command passes
it, without the Python CLI's start-up).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

RUN_DIR_PREFIXES = ("offline-run-", "run-")


def run_dirs(wandb_dir: str | Path) -> list[Path]:
    """The run folders directly in a ``wandb/`` folder (oldest first; ``latest-run`` left out)."""
    wandb_dir = Path(wandb_dir)
    if not wandb_dir.is_dir():
        return []
    found = [p for p in wandb_dir.iterdir() if p.name.startswith(RUN_DIR_PREFIXES) and p.is_dir() and not p.is_symlink() and run_file(p)]
    return sorted(found, key=lambda p: p.name.removeprefix("offline-"))


def job_run_dirs(job_dir: str | Path) -> list[Path]:
    """The W&B run folders of one training job (``JOB/wandb/*run-*``); a resumed offline run has two."""
    return run_dirs(Path(job_dir) / "wandb")


def run_file(run_dir: str | Path) -> Path | None:
    """The ``run-<id>.wandb`` log of a run folder (None when there is not exactly one)."""
    files = list(Path(run_dir).glob("run-*.wandb"))
    return files[0] if len(files) == 1 else None


def _inspect_command(run_dir: Path, *flags: str) -> list[str]:
    from wandb.util import get_core_path  # the binary `wandb leet` runs

    log = run_file(run_dir)
    if log is None:
        raise FileNotFoundError(f"{run_dir}: no single run-*.wandb file")
    return [get_core_path(), "leet", "inspect", "--no-observability", *flags, "--run-file", str(log.resolve()), str(run_dir.resolve().parent)]


def inspect_summary(run_dir: str | Path) -> dict[str, Any]:
    """``wandb leet inspect --summary --json RUN_DIR``: name, run_id, state, start_time, config, summary, ..."""
    done = subprocess.run(_inspect_command(Path(run_dir), "--summary", "--json"), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"wandb leet inspect {run_dir}: {done.stderr.strip() or done.returncode}")
    return json.loads(done.stdout)


def run_record(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``run`` record from ``wandb leet inspect --json``: display_name, run_group, job_type, tags, ...

    Only the log's first records are read (the run record comes right after the header).
    """
    with subprocess.Popen(_inspect_command(Path(run_dir), "--json"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            for line in proc.stdout:
                record = json.loads(line)
                if record.get("type") == "run":
                    return record["run"]
        finally:
            proc.kill()
    raise RuntimeError(f"{run_dir}: no run record in its .wandb log")

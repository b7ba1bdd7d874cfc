"""The analysis as a W&B run, next to the runs it analysed.

:func:`log_analysis_run` writes one W&B run (``job_type=analysis``; offline unless ``online``
or ``WANDB_MODE=online``; ``wandb sync``-able like every training run) into the W&B group of
the analysed runs:

* summary: each verdict (``verdict/<claim>``, ``reason/<claim>``, ``applies/<claim>``) and the
  numbers behind it (``<claim>/<number>``), the factor summary (``factors/<sweep>/<key>``) and
  the status counts (``runs/<status>``);
* tables (``wandb.Table``): the runs table (``runs``), each verdict's table, each sweep's factor
  cells;
* every plot as an image (``plots/<name>``);
* ``claims.md``, ``runs.csv`` and ``runs.md`` as an artifact of type ``analysis``.

Every call is a new run, named ``analysis <date> <time>``: an earlier analysis stays as it was.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bnres.tracking.wandb_groups import ANALYSIS_JOB_TYPE, sweep_group
from bnres.tracking.wandb_local import job_run_dirs, run_record

DEFAULT_PROJECT = "bnres"


@dataclass
class AnalysisRun:
    """Where the analysis run went."""

    run_id: str
    name: str
    group: str
    project: str
    mode: str  # "offline" or "online"
    run_dir: Path  # the run folder (wandb/offline-run-...)
    url: str | None = None


def analysed_runs_wandb(runs: pd.DataFrame) -> dict[str, str]:
    """Group and project of the analysed runs, as their own W&B logs say.

    The most common group among the jobs' W&B runs; for jobs without one (``logger=none``,
    hand-made records) the group the harness would have given them: ``logger.wandb.group`` of
    the record's config, else the group of its sweep folder.
    """
    groups: Counter[str] = Counter()
    projects: Counter[str] = Counter()
    for path in runs["path"].dropna():
        job_dir = Path(path).parent
        found = job_run_dirs(job_dir)
        if found:
            try:
                record = run_record(found[-1])
            except (RuntimeError, OSError, ValueError):
                record = {}
            if record.get("run_group"):
                groups[record["run_group"]] += 1
            if record.get("project"):
                projects[record["project"]] += 1
            if record.get("run_group"):
                continue
        groups[_configured_group(path) or sweep_group(job_dir.parent)] += 1
    return {
        "group": groups.most_common(1)[0][0] if groups else sweep_group(None),
        "groups": ", ".join(sorted(groups)),
        "project": projects.most_common(1)[0][0] if projects else DEFAULT_PROJECT,
    }


def log_analysis_run(
    result: Any,  # bnres.analysis.AnalysisResult
    online: bool = False,
    group: str | None = None,
    project: str | None = None,
    entity: str | None = None,
    config: dict[str, Any] | None = None,
) -> AnalysisRun | None:
    """Write ``result`` as a new W&B run in ``result.out_dir/wandb/``; ``None`` when W&B is disabled."""
    import wandb

    env_mode = os.environ.get("WANDB_MODE", "").lower()
    if env_mode == "disabled":
        return None
    mode = "online" if online or env_mode == "online" else "offline"
    where = analysed_runs_wandb(result.runs)
    group = group or where["group"]
    project = project or where["project"]
    name = f"analysis {time.strftime('%Y-%m-%d %H:%M:%S')}"
    out_dir = Path(result.out_dir)
    if wandb.run is not None:  # a run left open in this process would swallow this one
        wandb.finish()
    run = wandb.init(
        project=project, entity=entity, group=group, job_type=ANALYSIS_JOB_TYPE, name=name, mode=mode,
        dir=str(out_dir), tags=[ANALYSIS_JOB_TYPE],
        config={"analysed_groups": where["groups"], "out_dir": str(out_dir), **(config or {})},
        settings=wandb.Settings(x_disable_stats=True),  # no system charts for a few seconds of work
    )
    try:
        run.summary.update(_summary(result))
        logged: dict[str, Any] = {"runs": _table(result.runs)}
        for i, verdict in enumerate(result.verdicts):
            if verdict.table:
                logged[f"{_verdict_key(result.verdicts, i)}/table"] = _table(pd.DataFrame(verdict.table))
        for summary in getattr(result, "factors", []):
            logged[f"factors/{summary.sweep}/cells"] = _table(summary.cells)
        for name_, path in result.files.items():
            if Path(path).suffix == ".png":
                logged[f"plots/{name_}"] = wandb.Image(str(path))
        run.log(logged)
        artifact = wandb.Artifact(_artifact_name(group), type=ANALYSIS_JOB_TYPE,
                                  description=f"claims.md and the runs table of {where['groups'] or group}")
        for key in ("claims_md", "runs_csv", "runs_md"):
            if key in result.files:
                artifact.add_file(str(result.files[key]))
        run.log_artifact(artifact)
        info = AnalysisRun(run.id, name, group, project, mode, Path(run.dir).parent, url=getattr(run, "url", None))
    except BaseException:
        wandb.finish(exit_code=1)
        raise
    wandb.finish()
    return info


def add_wandb_args(parser: argparse.ArgumentParser) -> None:
    """The analysis-run options of scripts/analyze.py and scripts/reproduce.py."""
    group = parser.add_argument_group("the analysis run in W&B")
    group.add_argument("--no-wandb", action="store_true", help="do not write the analysis as a W&B run")
    group.add_argument("--online", action="store_true", help="log the analysis run online (default: offline, or $WANDB_MODE)")
    group.add_argument("--wandb-group", default=None, help="W&B group of the analysis run (default: the analysed runs' group)")
    group.add_argument("--wandb-project", default=None, help="W&B project (default: the analysed runs' project, else bnres)")
    group.add_argument("--wandb-entity", default=None, help="W&B entity (default: yours)")


def log_analysis_run_from_args(result: Any, args: argparse.Namespace, config: dict[str, Any] | None = None) -> None:
    """Write the analysis run and say where it went."""
    if args.no_wandb:
        return
    run = log_analysis_run(result, online=args.online, group=args.wandb_group, project=args.wandb_project,
                           entity=args.wandb_entity, config=config)
    if run is None:
        print("analysis run: not written (WANDB_MODE=disabled)")
    elif run.mode == "online":
        print(f"analysis run: '{run.name}' in group {run.group}: {run.url}")
    else:
        print(f"analysis run: '{run.name}' in group {run.group} (offline): {run.run_dir}\n"
              f"  upload with: wandb sync {run.run_dir}")


# --------------------------------------------------------------------------------------------
# helpers


def _configured_group(record_path: str) -> str | None:
    import json

    try:
        config = json.loads(Path(record_path).read_text()).get("config") or {}
    except (OSError, ValueError):
        return None
    wandb_cfg = ((config.get("logger") or {}).get("wandb") or {}) if isinstance(config.get("logger"), dict) else {}
    return wandb_cfg.get("group") or config.get("wandb_group")


def _verdict_key(verdicts: list, index: int) -> str:
    claim = verdicts[index].claim
    nth = sum(1 for v in verdicts[:index] if v.claim == claim)
    return claim if nth == 0 else f"{claim}_{nth + 1}"


def _summary(result: Any) -> dict[str, Any]:
    from bnres.analysis.records import status_counts

    summary: dict[str, Any] = {f"runs/{status}": n for status, n in status_counts(result.runs).items()}
    summary["runs/total"] = len(result.runs)
    applies = getattr(result, "applies", {})
    for i, verdict in enumerate(result.verdicts):
        key = _verdict_key(result.verdicts, i)
        summary[f"verdict/{key}"] = verdict.verdict
        summary[f"reason/{key}"] = verdict.reason
        summary[f"scope/{key}"] = verdict.scope
        summary[f"applies/{key}"] = bool(applies.get(key, True))
        for number, value in verdict.numbers.items():
            if isinstance(value, (bool, int, float, str)) and not _nonfinite(value):
                summary[f"{key}/{number}"] = value
    for factor_summary in getattr(result, "factors", []):
        for number, value in factor_summary.numbers().items():
            if not _nonfinite(value):
                summary[f"factors/{factor_summary.sweep}/{number}"] = value
    return summary


def _table(frame: pd.DataFrame):
    """A ``wandb.Table`` of a data frame; NaN / inf / numpy scalars become None / Python values."""
    import wandb

    def cell(value: Any) -> Any:
        if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
            value = value.item()
        if value is None or _nonfinite(value):
            return None
        return value if isinstance(value, (bool, int, float, str)) else str(value)

    columns = [str(c) for c in frame.columns]
    rows = [[cell(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return wandb.Table(columns=columns, data=rows, allow_mixed_types=True)


def _nonfinite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _artifact_name(group: str) -> str:
    return "analysis-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", group).strip("-") or "runs")

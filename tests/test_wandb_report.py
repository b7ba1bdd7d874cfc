"""The W&B report is built (not saved: no network) with the claim panels of a sweep group or of a
reproduce call's presets, and names only keys that a real offline run logs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr
except Exception as exc:  # noqa: BLE001 -- any import failure means "cannot test offline"
    pytest.skip(f"wandb_workspaces.reports.v2 does not import: {exc}", allow_module_level=True)

from bnres.analysis.wandb_report import CPU_PRESETS, build_report, report_keys
from bnres.tracking.wandb_groups import reproduce_group
from conftest import TINY, run_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report():
    return build_report(entity="my-entity", project="bnres", group="train/2026-12-01_08-53-35")


@pytest.fixture(scope="module")
def reproduce_report():
    return build_report(entity="my-entity", project="bnres", group=reproduce_group("cpu"), presets=CPU_PRESETS)


def grids(report):
    return [block for block in report.blocks if isinstance(block, wr.PanelGrid)]


def panels_of(report):
    return [panel for grid in grids(report) for panel in grid.panels]


def filters_of(runset):
    return expr.string_to_filterexpr_list(runset.filters) if isinstance(runset.filters, str) else list(runset.filters)


def test_report_object(report):
    assert isinstance(report, wr.Report)
    assert report.entity == "my-entity" and report.project == "bnres"
    assert "train/2026-12-01_08-53-35" in report.title
    headings = [block.text for block in report.blocks if isinstance(block, wr.H2)]
    assert any("Claim 1" in h for h in headings) and any("Claim 2" in h for h in headings)


def test_runsets_are_filtered_to_the_group_without_analysis_runs(report):
    runsets = [rs for grid in grids(report) for rs in grid.runsets]
    assert runsets and all("train/2026-12-01_08-53-35" in str(rs.filters) for rs in runsets)
    assert all("Metric(\"JobType\") != 'analysis'" in rs.filters for rs in runsets)
    assert {"BN", "no BN", "plain", "residual"} <= {rs.name for rs in runsets}


def test_claim_panels(report):
    panels = panels_of(report)
    scatter = [p for p in panels if isinstance(p, wr.ScatterPlot)]
    assert any(p.x == wr.Config("lr") and p.y == wr.SummaryMetric("val/acc") and p.log_x for p in scatter)
    assert any(p.x == wr.Config("depth") and p.y == wr.SummaryMetric("train/acc") for p in scatter)
    for panel in panels:  # every panel serializes to the W&B spec offline
        panel._to_model()


def test_no_bn_runs_are_their_own_bar(report):
    [placement] = [g for g in grids(report) if any(isinstance(p, wr.BarPlot) for p in g.panels)]
    assert all(p.groupby is None for p in placement.panels)  # bars come from the runsets, not one grouping of all runs
    by_name = {rs.name: {(f.key.name, f.op, str(f.value)) for f in filters_of(rs)} for rs in placement.runsets}
    assert ("bn", "=", "False") in by_name["no BN"]
    bn_bars = [name for name in by_name if name != "no BN"]
    assert len(bn_bars) == 3
    for name in bn_bars:  # each BN bar: BN runs of one placement only
        assert ("bn", "=", "True") in by_name[name] and sum(1 for f in by_name[name] if f[0] == "bn_placement") == 1


def test_one_report_for_one_reproduce_call_has_every_preset(reproduce_report):
    headings = [block.text for block in reproduce_report.blocks if isinstance(block, wr.H2)]
    assert any("Claim 1" in h and "bn_lr" in h for h in headings)
    assert any("Claim 2" in h and "`depth`" in h for h in headings)
    assert any("batch norm" in h and "bn_placement" in h for h in headings)
    for grid in grids(reproduce_report):
        for rs in grid.runsets:
            assert "Metric(\"Group\") == 'reproduce/cpu'" in rs.filters
            job_types = [f.value for f in filters_of(rs) if f.key.name == "JobType" and f.op == "="]
            assert len(job_types) == 1 and job_types[0] in CPU_PRESETS


def test_report_names_only_keys_a_real_run_logs(tmp_path, report, reproduce_report):
    wandb_cli = shutil.which("wandb")
    if wandb_cli is None:
        pytest.skip("the wandb command is not on PATH")
    done = run_script([*TINY, "logger=wandb", "hydra.run.dir=run"], cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [run_dir] = (tmp_path / "run" / "wandb").glob("offline-run-*")
    summary = json.loads(subprocess.run([wandb_cli, "leet", "inspect", "--summary", "--json", str(run_dir)],
                                        capture_output=True, text=True, timeout=60, check=True).stdout)
    records = subprocess.run([wandb_cli, "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True, timeout=60, check=True).stdout
    history = {key for line in records.splitlines() if line.strip()
               for rec in [json.loads(line)] if rec["type"] == "history" for key in rec["history"]["item"]}
    for built in (report, reproduce_report):
        keys = report_keys(built)
        assert keys["config"] and keys["config"] <= set(summary["config"])
        assert keys["summary"] and keys["summary"] <= set(summary["summary"])
        assert keys["history"] and keys["history"] <= history
        assert keys["run"] <= {"Group", "JobType"}


def test_script_builds_without_saving():
    script = REPO / "scripts" / "wandb_report.py"
    done = subprocess.run([sys.executable, str(script), "--entity", "e", "--project", "p", "--group", "g"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "not saved" in done.stdout and "Claim 1" in done.stdout
    done = subprocess.run([sys.executable, str(script), "--entity", "e", "--reproduce", "cpu"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "group reproduce/cpu" in done.stdout and "(preset `depth`)" in done.stdout

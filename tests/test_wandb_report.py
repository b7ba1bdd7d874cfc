"""The W&B report is built (not saved: no network) with the claim panels of a sweep group."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

try:
    import wandb_workspaces.reports.v2 as wr
except Exception as exc:  # noqa: BLE001 -- any import failure means "cannot test offline"
    pytest.skip(f"wandb_workspaces.reports.v2 does not import: {exc}", allow_module_level=True)

from bnres.analysis.wandb_report import build_report

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report():
    return build_report(entity="my-entity", project="bnres", group="lr_sweep_42")


def panels_of(report):
    return [panel for block in report.blocks if isinstance(block, wr.PanelGrid) for panel in block.panels]


def test_report_object(report):
    assert isinstance(report, wr.Report)
    assert report.entity == "my-entity" and report.project == "bnres"
    assert "lr_sweep_42" in report.title
    headings = [block.text for block in report.blocks if isinstance(block, wr.H2)]
    assert any("Claim 1" in h for h in headings) and any("Claim 2" in h for h in headings)


def test_runsets_are_filtered_to_the_group(report):
    grids = [block for block in report.blocks if isinstance(block, wr.PanelGrid)]
    runsets = [rs for grid in grids for rs in grid.runsets]
    assert runsets and all("lr_sweep_42" in str(rs.filters) for rs in runsets)
    names = {rs.name for rs in runsets}
    assert {"BN", "no BN", "plain", "residual"} <= names


def test_claim_panels(report):
    panels = panels_of(report)
    scatter = [p for p in panels if isinstance(p, wr.ScatterPlot)]
    assert any(p.x == wr.Config("lr") and p.y == wr.SummaryMetric("val/acc") and p.log_x for p in scatter)
    assert any(p.x == wr.Config("depth") and p.y == wr.SummaryMetric("train/acc") for p in scatter)
    for panel in panels:  # every panel serializes to the W&B spec offline
        panel._to_model()


def test_script_builds_without_saving():
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "wandb_report.py"), "--entity", "e", "--project", "p", "--group", "g"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "not saved" in done.stdout and "Claim 1" in done.stdout

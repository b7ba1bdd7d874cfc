"""A W&B Report with the claim panels, for the runs of one W&B group.

Built with ``wandb_workspaces.reports.v2`` (``pip install wandb-workspaces``). Building needs no
network; only :func:`save_report` talks to W&B. The report plots what the runs logged (their
config and summary metrics); the verdicts themselves come from ``scripts/analyze.py`` (and its
analysis run, ``job_type=analysis``, which the claim panels leave out).

One group, two shapes:

* a sweep's group (``train/2026-12-01_08-53-35``): the sections of both claims and the BN
  placement, each over all of the group's runs;
* the group of one ``scripts/reproduce.py`` call (``reproduce/cpu``), built with ``presets``:
  one section per preset, its runsets narrowed to the preset's runs by their job type (the
  preset's ``task_name``), so one report holds the claim panels of every preset.

Every name the panels use is one the training harness logs (:data:`CONFIG_KEYS`,
:data:`SUMMARY_KEYS`, :data:`HISTORY_KEYS`; a test checks them against a real offline run):
config ``lr``, ``bn``, ``bn_placement``, ``model_name``, ``depth``; metrics ``train/loss``,
``train/acc``, ``val/acc`` in the summary and per ``epoch`` in the history.
"""

from __future__ import annotations

from typing import Any

from bnres.tracking.wandb_groups import ANALYSIS_JOB_TYPE

PLAIN_MODELS = ["plain_cifar", "plain18", "plain34"]
RESIDUAL_MODELS = ["resnet_cifar", "resnet18", "resnet34"]
PLACEMENTS = ["before_activation", "after_activation", "pre_activation"]

TRAIN_ACC, VAL_ACC, TRAIN_LOSS, EPOCH = "train/acc", "val/acc", "train/loss", "epoch"
CONFIG_KEYS = ("lr", "bn", "bn_placement", "model_name", "depth")
SUMMARY_KEYS = (TRAIN_ACC, VAL_ACC, TRAIN_LOSS)
HISTORY_KEYS = (TRAIN_ACC, TRAIN_LOSS, EPOCH)
#: run attributes the filters use (W&B's own, not logged keys)
RUN_ATTRIBUTES = ("Group", "JobType")

#: which sections a preset's runs fill: job type (the preset's task_name) -> sections
PRESET_SECTIONS = {
    "bn_lr": ("claim1",), "depth": ("claim2",), "bn_placement": ("placement",),
    "bn_lr_cifar10": ("claim1",), "depth_cifar10": ("claim2",), "bn_placement_cifar10": ("placement",),
}
CPU_PRESETS = ("bn_lr", "depth", "bn_placement")


def _reports():
    """Import the report API lazily: it is an optional dependency."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    return wr, expr


def build_report(
    entity: str,
    project: str,
    group: str,
    title: str | None = None,
    presets: list[str] | tuple[str, ...] | None = None,
) -> Any:
    """The report object (``wandb_workspaces.reports.v2.Report``), not saved.

    Every runset is filtered to the W&B run group ``group`` and leaves out analysis runs;
    with ``presets`` (job types, e.g. ``("bn_lr", "depth", "bn_placement")``) there is one
    section per preset, over that preset's runs only.
    """
    wr, expr = _reports()
    base = [expr.Metric("Group") == group, expr.Metric("JobType") != ANALYSIS_JOB_TYPE]

    def runset(name: str, *filters, groupby: list[str] | None = None) -> Any:
        return wr.Runset(entity=entity, project=project, name=name, filters=[*base, *filters], groupby=groupby or [])

    blocks = [wr.MarkdownBlock(text=_intro(group, presets))]
    if presets:
        for preset in presets:
            in_preset = expr.Metric("JobType") == preset
            for section in PRESET_SECTIONS.get(preset, ("claim1", "claim2", "placement")):
                blocks += SECTIONS[section](wr, expr, lambda name, *f, groupby=None, p=in_preset: runset(name, p, *f, groupby=groupby),
                                            f" (preset `{preset}`)")
    else:
        for section in ("claim1", "claim2", "placement"):
            blocks += SECTIONS[section](wr, expr, runset, "")
    return wr.Report(
        entity=entity,
        project=project,
        title=title or f"bnres claims: {group}"[:128],
        description="Batch norm and learning rate; residual connections and depth.",
        blocks=blocks,
    )


def _intro(group: str, presets) -> str:
    where = f"Runs of W&B group `{group}`" + (f", presets {', '.join(f'`{p}`' for p in presets)} (by job type)" if presets else "")
    return (
        f"{where}. Two claims are tested:\n\n"
        "1. **Batch norm lets a network train at much larger learning rates.**\n"
        "2. **Residual connections let networks go deeper where plain nets degrade** (He et al. 2016).\n\n"
        "The verdicts, with the numbers behind them, come from `scripts/analyze.py` on the same runs "
        f"(`claims.md`, and the run with job type `{ANALYSIS_JOB_TYPE}` in this group)."
    )


def _claim1(wr, expr, runset, suffix: str) -> list:
    return [
        wr.H2(text=f"Claim 1: batch norm and the learning rate{suffix}"),
        wr.MarkdownBlock(
            text=(
                "A run *trains* when its loss stays finite and its final val accuracy passes the threshold "
                "(default 0.5). Failure at a high learning rate is often not NaN: the loss sits at "
                "ln 10 ~ 2.30 with chance accuracy. Compare the largest LR at which every BN run trains "
                "with the same for the no-BN runs."
            )
        ),
        wr.PanelGrid(
            runsets=[runset("BN", expr.Config("bn") == True), runset("no BN", expr.Config("bn") == False)],  # noqa: E712
            panels=[
                wr.ScatterPlot(title="final val accuracy vs learning rate", x=wr.Config("lr"),
                               y=wr.SummaryMetric(VAL_ACC), log_x=True, layout=wr.Layout(x=0, y=0, w=12, h=8)),
                wr.ScatterPlot(title="final training loss vs learning rate", x=wr.Config("lr"),
                               y=wr.SummaryMetric(TRAIN_LOSS), log_x=True, log_y=True, layout=wr.Layout(x=12, y=0, w=12, h=8)),
                wr.LinePlot(title="training loss per epoch, by learning rate", x=EPOCH, y=[TRAIN_LOSS],
                            groupby=wr.Config("lr"), groupby_aggfunc="mean", groupby_rangefunc="minmax",
                            log_y=True, layout=wr.Layout(x=0, y=8, w=24, h=8)),
            ],
        ),
    ]


def _claim2(wr, expr, runset, suffix: str) -> list:
    return [
        wr.H2(text=f"Claim 2: depth and residual connections{suffix}"),
        wr.MarkdownBlock(
            text=(
                f"Training error = 1 - `{TRAIN_ACC}`: higher accuracy is lower error. Plain nets "
                "degrade when their training accuracy falls with depth; residual nets should not."
            )
        ),
        wr.PanelGrid(
            runsets=[runset("plain", expr.Config("model_name").isin(PLAIN_MODELS)),
                     runset("residual", expr.Config("model_name").isin(RESIDUAL_MODELS))],
            panels=[
                wr.ScatterPlot(title="final training accuracy vs depth (error = 1 - acc)", x=wr.Config("depth"),
                               y=wr.SummaryMetric(TRAIN_ACC), layout=wr.Layout(x=0, y=0, w=12, h=8)),
                wr.LinePlot(title="training accuracy per epoch, by depth", x=EPOCH, y=[TRAIN_ACC],
                            groupby=wr.Config("depth"), groupby_aggfunc="mean", groupby_rangefunc="minmax",
                            layout=wr.Layout(x=12, y=0, w=12, h=8)),
            ],
        ),
    ]


def _placement(wr, expr, runset, suffix: str) -> list:
    # one runset per bar: no-BN runs carry bn_placement=before_activation in their config, so
    # grouping all runs by bn_placement would average them into that bar
    bars = [runset(f"BN {p.replace('_', ' ')}", expr.Config("bn") == True, expr.Config("bn_placement") == p,  # noqa: E712
                   groupby=["config.bn_placement"]) for p in PLACEMENTS]
    bars.append(runset("no BN", expr.Config("bn") == False, groupby=["config.bn"]))  # noqa: E712
    return [
        wr.H2(text=f"Where to put batch norm{suffix}"),
        wr.MarkdownBlock(text="One bar per BN placement and one for the runs without BN (mean over runs, whiskers min-max)."),
        wr.PanelGrid(
            runsets=bars,
            panels=[
                wr.BarPlot(title="final val accuracy: each BN placement, and no BN", metrics=[VAL_ACC],
                           groupby_aggfunc="mean", groupby_rangefunc="minmax", orientation="v",
                           layout=wr.Layout(x=0, y=0, w=12, h=8)),
                wr.BarPlot(title="final training accuracy: each BN placement, and no BN", metrics=[TRAIN_ACC],
                           groupby_aggfunc="mean", groupby_rangefunc="minmax", orientation="v",
                           layout=wr.Layout(x=12, y=0, w=12, h=8)),
            ],
        ),
    ]


SECTIONS = {"claim1": _claim1, "claim2": _claim2, "placement": _placement}


def report_keys(report: Any) -> dict[str, set[str]]:
    """Every config key, summary metric, history metric and run attribute the report's panels and
    runsets name: ``{"config": ..., "summary": ..., "history": ..., "run": ...}``."""
    wr, expr = _reports()
    keys: dict[str, set[str]] = {"config": set(), "summary": set(), "history": set(), "run": set()}

    def add(value: Any, history: bool = False) -> None:
        if value is None:
            return
        if isinstance(value, (list, tuple)):
            for v in value:
                add(v, history)
        elif isinstance(value, wr.Config):
            keys["config"].add(value.name)
        elif isinstance(value, wr.SummaryMetric):
            keys["summary"].add(value.name)
        elif isinstance(value, str):
            keys["history" if history else "summary"].add(value)

    for block in report.blocks:
        if not isinstance(block, wr.PanelGrid):
            continue
        for panel in block.panels:
            if isinstance(panel, wr.ScatterPlot):
                add([panel.x, panel.y])
            elif isinstance(panel, wr.LinePlot):
                add([panel.x, panel.y], history=True)
                add(panel.groupby)
            elif isinstance(panel, wr.BarPlot):
                add(panel.metrics)
                add(panel.groupby)
        for rs in block.runsets:
            filters = expr.string_to_filterexpr_list(rs.filters) if isinstance(rs.filters, str) else rs.filters
            for f in filters:
                (keys["config"] if isinstance(f.key, expr.Config) else keys["run"]).add(f.key.name)
            for g in rs.groupby:
                section, name = g.split(".", 1)
                keys["config" if section == "config" else "run"].add(name)
    return keys


def save_report(report: Any) -> str:
    """Save (upload) the report; needs a W&B login and network. Returns its URL."""
    report.save()
    return report.url

"""A W&B Report with one section per claim, for the runs of one sweep group.

Built with ``wandb_workspaces.reports.v2`` (``pip install wandb-workspaces``). Building needs no
network; only :func:`save_report` talks to W&B. The report plots what the runs logged (their
config and summary metrics); the verdicts themselves come from ``scripts/analyze.py``.

Names assumed from the training harness: config keys ``lr``, ``bn``, ``bn_placement``,
``model_name``, ``depth``; metrics ``train/loss``, ``train/acc``, ``val/acc`` logged per epoch
with an ``epoch`` key (Lightning's default).
"""

from __future__ import annotations

from typing import Any

PLAIN_MODELS = ["plain_cifar", "plain18", "plain34"]
RESIDUAL_MODELS = ["resnet_cifar", "resnet18", "resnet34"]


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
    train_acc_metric: str = "train/acc",
    val_acc_metric: str = "val/acc",
    train_loss_metric: str = "train/loss",
    x_metric: str = "epoch",
) -> Any:
    """The report object (``wandb_workspaces.reports.v2.Report``), not saved.

    Every runset is filtered to the W&B run group ``group`` (one sweep).
    """
    wr, expr = _reports()
    in_group = expr.Metric("Group") == group

    def runset(name: str, *filters) -> Any:
        return wr.Runset(entity=entity, project=project, name=name, filters=[in_group, *filters])

    bn_runsets = [runset("BN", expr.Config("bn") == True), runset("no BN", expr.Config("bn") == False)]  # noqa: E712
    depth_runsets = [
        runset("plain", expr.Config("model_name").isin(PLAIN_MODELS)),
        runset("residual", expr.Config("model_name").isin(RESIDUAL_MODELS)),
    ]

    blocks = [
        wr.MarkdownBlock(
            text=(
                f"Runs of sweep group `{group}`. Two claims are tested:\n\n"
                "1. **Batch norm lets a network train at much larger learning rates.**\n"
                "2. **Residual connections let networks go deeper where plain nets degrade** (He et al. 2016).\n\n"
                "The verdicts, with the numbers behind them, come from `scripts/analyze.py` "
                "on the same sweep (`claims.md`)."
            )
        ),
        wr.H2(text="Claim 1: batch norm and the learning rate"),
        wr.MarkdownBlock(
            text=(
                "A run *trains* when its loss stays finite and its final val accuracy passes the threshold "
                "(default 0.5). Failure at a high learning rate is often not NaN: the loss sits at "
                "ln 10 ~ 2.30 with chance accuracy. Compare the largest LR at which every BN run trains "
                "with the same for the no-BN runs."
            )
        ),
        wr.PanelGrid(
            runsets=bn_runsets,
            panels=[
                wr.ScatterPlot(title="final val accuracy vs learning rate", x=wr.Config("lr"),
                               y=wr.SummaryMetric(val_acc_metric), log_x=True,
                               layout=wr.Layout(x=0, y=0, w=12, h=8)),
                wr.ScatterPlot(title="final training loss vs learning rate", x=wr.Config("lr"),
                               y=wr.SummaryMetric(train_loss_metric), log_x=True, log_y=True,
                               layout=wr.Layout(x=12, y=0, w=12, h=8)),
                wr.LinePlot(title="training loss per epoch, by learning rate", x=x_metric, y=[train_loss_metric],
                            groupby=wr.Config("lr"), groupby_aggfunc="mean", groupby_rangefunc="minmax",
                            log_y=True, layout=wr.Layout(x=0, y=8, w=24, h=8)),
            ],
        ),
        wr.H2(text="Claim 2: depth and residual connections"),
        wr.MarkdownBlock(
            text=(
                f"Training error = 1 - `{train_acc_metric}`: higher accuracy is lower error. Plain nets "
                "degrade when their training accuracy falls with depth; residual nets should not."
            )
        ),
        wr.PanelGrid(
            runsets=depth_runsets,
            panels=[
                wr.ScatterPlot(title="final training accuracy vs depth (error = 1 - acc)", x=wr.Config("depth"),
                               y=wr.SummaryMetric(train_acc_metric), layout=wr.Layout(x=0, y=0, w=12, h=8)),
                wr.LinePlot(title="training accuracy per epoch, by depth", x=x_metric, y=[train_acc_metric],
                            groupby=wr.Config("depth"), groupby_aggfunc="mean", groupby_rangefunc="minmax",
                            layout=wr.Layout(x=12, y=0, w=12, h=8)),
            ],
        ),
        wr.H2(text="Where to put batch norm"),
        wr.PanelGrid(
            runsets=[runset("all runs")],
            panels=[
                wr.BarPlot(title="final val accuracy by BN placement", metrics=[val_acc_metric],
                           groupby=wr.Config("bn_placement"), groupby_aggfunc="mean", groupby_rangefunc="minmax",
                           orientation="v", layout=wr.Layout(x=0, y=0, w=12, h=8)),
                wr.BarPlot(title="final val accuracy with / without BN", metrics=[val_acc_metric],
                           groupby=wr.Config("bn"), groupby_aggfunc="mean", groupby_rangefunc="minmax",
                           orientation="v", layout=wr.Layout(x=12, y=0, w=12, h=8)),
            ],
        ),
    ]
    return wr.Report(
        entity=entity,
        project=project,
        title=title or f"bnres claims: sweep {group}"[:128],
        description="Batch norm and learning rate; residual connections and depth.",
        blocks=blocks,
    )


def save_report(report: Any) -> str:
    """Save (upload) the report; needs a W&B login and network. Returns its URL."""
    report.save()
    return report.url

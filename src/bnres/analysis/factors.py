"""What a sweep shows, whatever it sweeps: each swept factor's effect on the final metrics.

The two verdicts test two claims; a sweep may test neither (``-m model=resnet18,plain18
bn=true,false`` has one learning rate and one depth). This module summarises what any sweep's
runs do say. Per sweep folder:

* the *factors* are the knobs whose values differ between its finished runs (seeds are
  replicates, not factors). Where the models of one architecture style differ only by their
  shortcuts (``resnet18``/``plain18``), the factor is ``shortcut``, not the model name; where BN
  placements differ, the factor is ``BN`` (each placement, and "no BN"), else ``bn``;
* per *cell* (one combination of factor values): the finished runs, the diverged ones, and the
  mean, min and max over seeds of the final val accuracy and final training loss;
* per factor: the mean of its runs at each value, the *effect* (largest minus smallest mean)
  and the *seed spread* (the largest min-max range over seeds of any cell), so an effect can be
  read against the noise;
* for two factors, the cross table of both (for the user's command: shortcut x BN).

Diverged runs are counted, and left out of the means (their last numbers are from before the blow-up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from bnres.runs.record import FINISHED

#: metrics summarised, with their display names
METRICS = {"final_val_acc": "final val acc", "final_train_loss": "final train loss"}
#: knobs that can be factors, in display order (rows of a cross table come before its columns)
KNOBS = ["data", "model_name", "shortcut", "depth", "bn", "bn_label", "bn_impl", "lr", "max_epochs"]
FACTOR_NAMES = {"model_name": "model", "bn_label": "BN", "max_epochs": "epochs"}
#: overrides that are one of the KNOBS columns already (or replicates / where a run is written, not what it is)
OVERRIDE_KNOBS = {"model", "bn", "bn_placement", "bn_variant", "bn_impl", "lr", "depth", "data", "trainer.max_epochs"}
OVERRIDE_SKIP = ("seed", "experiment", "fresh", "hydra", "paths.", "logger", "callbacks", "packing.", "ckpt_path")
#: prefix of the run-table columns made from other swept overrides (``-m optimizer=sgd,adam``)
OVERRIDE_PREFIX = "override:"


@dataclass
class FactorSummary:
    """The factor summary of one sweep folder."""

    sweep: str
    n_runs: int  # finished runs (completed or diverged)
    n_unfinished: int  # running / failed records: not evidence
    factors: list[str]  # run-table columns that vary, in KNOBS order
    cells: pd.DataFrame  # one row per combination of factor values
    marginals: dict[str, pd.DataFrame] = field(default_factory=dict)  # factor -> one row per value
    effects: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # factor -> metric -> numbers
    cross: list[tuple[str, str, str, pd.DataFrame]] = field(default_factory=list)  # (rows, columns, metric, table)
    runs_frame: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # the finished runs summarised

    @property
    def factor_names(self) -> list[str]:
        return [factor_name(f) for f in self.factors]

    def headline(self) -> str:
        what = " x ".join(self.factor_names) if self.factors else "no factor varies"
        extra = f", {self.n_unfinished} unfinished (not counted)" if self.n_unfinished else ""
        return f"sweep {self.sweep}: {self.n_runs} finished runs{extra}; factors: {what}"

    def effect_lines(self) -> list[str]:
        """One sentence per factor: its effect on each metric against the seed spread."""
        lines = []
        for factor in self.factors:
            marg = self.marginals[factor]
            parts = []
            for metric, label in METRICS.items():
                numbers = self.effects[factor][metric]
                if math.isnan(numbers["effect"]):
                    continue
                means = ", ".join(f"{_value(factor, v)} {_num(m)}" for v, m in zip(marg["value"], marg[f"{metric}_mean"]) if not _isnan(m))
                spread = numbers["seed_spread"]
                if math.isnan(spread):
                    noise = "seed spread unknown (one seed)"
                elif numbers["effect"] > spread:
                    noise = f"larger than the seed spread ({_num(spread)})"
                else:
                    noise = f"within the seed spread ({_num(spread)})"
                parts.append(f"{label} {means}: effect {_num(numbers['effect'])}, {noise}")
            diverged = ", ".join(f"{_value(factor, v)} {int(d)}" for v, d in zip(marg["value"], marg["diverged"]) if d)
            if diverged:
                parts.append(f"diverged runs: {diverged}")
            lines.append(f"{factor_name(factor)}: " + ("; ".join(parts) if parts else "no finite final metrics"))
        return lines

    def to_text(self) -> str:
        """Plain text for terminals."""
        lines = [f"What the runs show -- {self.headline()}"]
        for rows, cols, metric, table in self.cross:
            lines += ["", f"  {METRICS[metric]} ({factor_name(rows)} x {factor_name(cols)}; mean over seeds, [min-max], n seeds):"]
            text = tabulate(table.values.tolist(), headers=list(table.columns), tablefmt="simple", disable_numparse=True)
            lines += ["    " + line for line in text.splitlines()]
        if not self.factors:
            lines.append("  " + self._single_setting())
        else:
            lines.append("")
            lines += [f"  {line}" for line in self.effect_lines()]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        parts = [f"### {self.headline()}", ""]
        if not self.factors:
            return "\n".join(parts + [self._single_setting(), ""])
        for rows, cols, metric, table in self.cross:
            parts += [f"**{METRICS[metric]}** ({factor_name(rows)} x {factor_name(cols)}; mean over seeds, [min-max], n seeds):", "",
                      table.to_markdown(index=False), ""]
        for factor in self.factors:
            table = self.marginals[factor].assign(value=lambda d, f=factor: d["value"].map(lambda v: _value(f, v)))
            table = table.rename(columns={"value": factor_name(factor), **{
                f"{m}_{stat}": f"{label} {'mean' if stat == 'mean' else 'seed spread'}"
                for m, label in METRICS.items() for stat in ("mean", "seed_spread")}})
            table = table.astype(object).where(table.notna(), None)  # NaN (one seed: no spread) shows as n/a
            parts += [table.to_markdown(index=False, floatfmt=".4g", missingval="n/a"), ""]
        parts += [f"- {line}" for line in self.effect_lines()] + [""]
        return "\n".join(parts)

    def numbers(self) -> dict[str, Any]:
        """Flat ``{key: number}`` for a W&B summary: per factor value the means, per factor the effect."""
        out: dict[str, Any] = {"finished_runs": self.n_runs, "factors": " x ".join(self.factor_names)}
        for factor in self.factors:
            name = factor_name(factor)
            for row in self.marginals[factor].to_dict("records"):
                for metric in METRICS:
                    out[f"{name}={_value(factor, row['value'])}/{metric}_mean"] = row[f"{metric}_mean"]
            for metric, numbers in self.effects[factor].items():
                out[f"{name}/{metric}_effect"] = numbers["effect"]
                out[f"{name}/{metric}_seed_spread"] = numbers["seed_spread"]
        return {k: v for k, v in out.items() if not _isnan(v)}

    def _single_setting(self) -> str:
        row = self.cells.iloc[0] if len(self.cells) else None
        if row is None:
            return "no finished runs."
        return "all runs share one setting: " + ", ".join(f"{label} {_cell(row, metric)}" for metric, label in METRICS.items())


def factor_name(column: str) -> str:
    return FACTOR_NAMES.get(column, column.removeprefix(OVERRIDE_PREFIX))


def with_override_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus one ``override:KEY`` column per other override key whose value differs between
    runs (``optimizer``, ``bn_momentum``, ``data.batch_size``, ...), so any swept knob is a factor."""
    parsed = runs["overrides"].fillna("").map(
        lambda text: dict(o.split("=", 1) for o in str(text).split() if "=" in o))
    keys = sorted({k for d in parsed for k in d})
    extra = {}
    for key in keys:
        bare = key.lstrip("+~")
        if bare in OVERRIDE_KNOBS or bare.startswith(OVERRIDE_SKIP):
            continue
        values = parsed.map(lambda d, k=key: d.get(k))
        if values.astype(str).nunique() > 1:
            extra[OVERRIDE_PREFIX + bare] = values
    return runs.assign(**extra) if extra else runs


def _display_order(column: str) -> int:
    return KNOBS.index(column) if column in KNOBS else len(KNOBS)


def swept_factors(runs: pd.DataFrame) -> list[str]:
    """The run-table columns whose values differ between the finished runs (see the module docstring)."""
    done = with_override_columns(runs[runs["status"].isin(FINISHED)])
    if done.empty:
        return []
    candidates = KNOBS + sorted(c for c in done.columns if c.startswith(OVERRIDE_PREFIX))
    varies = {k for k in candidates if k in done and done[k].astype(str).nunique() > 1}
    # BN: placements (with "no BN" as one of them) when they differ, else on/off
    if "bn_label" in varies and done.loc[done["bn"], "bn_placement"].astype(str).nunique() <= 1 and "bn" in varies:
        varies.discard("bn_label")
    else:
        varies.discard("bn")
    if "model_name" in varies:
        if "shortcut" in varies and _only_shortcuts_differ(done):
            varies.discard("model_name")
        else:
            varies.discard("shortcut")
            if "depth" in varies and _determined_by(done, "depth", "model_name"):
                varies.discard("depth")
    return [k for k in candidates if k in varies]


def summarize_factors(runs: pd.DataFrame) -> list[FactorSummary]:
    """One :class:`FactorSummary` per sweep folder of the runs table (a nested sweep folder,
    ``SWEEP/bn_lr/3/result.json``, is a sweep of its own)."""
    folder = runs["sweep"].astype(str) + runs["job"].astype(str).map(lambda job: "/" + job.rsplit("/", 1)[0] if "/" in job else "")
    return [summarize_sweep(group, str(sweep)) for sweep, group in runs.groupby(folder, sort=False)]


def summarize_sweep(runs: pd.DataFrame, sweep: str = "") -> FactorSummary:
    done = with_override_columns(runs[runs["status"].isin(FINISHED)]).copy()
    for metric in METRICS:  # a diverged run's last numbers, or non-finite ones, are not numbers to average
        keep = done[metric].map(lambda v: isinstance(v, float) and math.isfinite(v)) & (done["status"] != "diverged")
        done[metric] = done[metric].where(keep)
    factors = swept_factors(runs)
    summary = FactorSummary(sweep, len(done), len(runs) - len(done), factors, _cells(done, factors), runs_frame=done)
    for factor in factors:
        summary.marginals[factor] = _marginal(done, summary.cells, factor)
        summary.effects[factor] = {
            metric: {
                "effect": _range(summary.marginals[factor][f"{metric}_mean"]),
                "seed_spread": _max(summary.cells[f"{metric}_spread"]),
            }
            for metric in METRICS
        }
    if len(factors) >= 2:
        if len(factors) == 2:
            rows, cols = factors
        else:  # the two factors with the largest effect on val accuracy, in display order
            ranked = sorted(factors, key=lambda f: -_nan_to(summary.effects[f]["final_val_acc"]["effect"], -1.0))[:2]
            rows, cols = sorted(ranked, key=_display_order)
        for metric in METRICS:
            summary.cross.append((rows, cols, metric, _cross_table(done, rows, cols, metric)))
    return summary


def factors_markdown(summaries: list[FactorSummary]) -> str:
    """The ``claims.md`` section: what the runs show, per sweep."""
    parts = ["## What the runs show", "",
             "Each swept factor's effect on the final metrics (means over seeds; the seed spread is the "
             "largest min-max range over seeds of any one setting). Diverged runs are counted, not averaged.", ""]
    parts += [s.to_markdown() for s in summaries]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# helpers


def _only_shortcuts_differ(done: pd.DataFrame) -> bool:
    """The models are plain/residual twins: within an architecture style and depth, one model per shortcut setting."""
    if done["shortcut"].isna().any() or done["family"].isna().any() or done["family"].nunique() != 1:
        return False
    per_depth = done.groupby(done["depth"].astype(str))
    return bool((per_depth["model_name"].nunique() == per_depth["shortcut"].nunique()).all())


def _determined_by(done: pd.DataFrame, column: str, by: str) -> bool:
    return bool((done.groupby(by)[column].agg(lambda s: s.astype(str).nunique()) <= 1).all())


def _cells(done: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    rows = []
    groups = done.groupby(factors, dropna=False, sort=True) if factors else [((), done)]
    for key, cell in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(factors, key))
        row["runs"] = len(cell)
        row["diverged"] = int((cell["status"] == "diverged").sum())
        for metric in METRICS:
            values = cell[metric].dropna()
            row[f"{metric}_mean"] = values.mean() if len(values) else math.nan
            row[f"{metric}_min"] = values.min() if len(values) else math.nan
            row[f"{metric}_max"] = values.max() if len(values) else math.nan
            row[f"{metric}_n"] = len(values)
            row[f"{metric}_spread"] = values.max() - values.min() if len(values) >= 2 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _marginal(done: pd.DataFrame, cells: pd.DataFrame, factor: str) -> pd.DataFrame:
    rows = []
    for value, at_value in sorted(done.groupby(factor, dropna=False), key=lambda kv: _order(kv[0])):
        in_cells = cells[cells[factor].astype(str) == str(value)]
        row: dict[str, Any] = {"value": value, "runs": len(at_value), "diverged": int((at_value["status"] == "diverged").sum())}
        for metric in METRICS:
            values = at_value[metric].dropna()
            row[f"{metric}_mean"] = values.mean() if len(values) else math.nan
            row[f"{metric}_seed_spread"] = _max(in_cells[f"{metric}_spread"])
        rows.append(row)
    return pd.DataFrame(rows)


def _cross_table(done: pd.DataFrame, rows: str, cols: str, metric: str) -> pd.DataFrame:
    row_values = sorted(done[rows].dropna().unique(), key=_order)
    col_values = sorted(done[cols].dropna().unique(), key=_order)
    header = f"{factor_name(rows)} \\ {factor_name(cols)}"
    table = []
    for r in row_values:
        line = {header: _value(rows, r)}
        for c in col_values:
            cell = done[(done[rows] == r) & (done[cols] == c)]
            line[f"{factor_name(cols)}={_value(cols, c)}"] = _cell_text(cell, metric)
        table.append(line)
    return pd.DataFrame(table)


def _cell_text(cell: pd.DataFrame, metric: str) -> str:
    if cell.empty:
        return "-"
    values = cell[metric].dropna()
    diverged = int((cell["status"] == "diverged").sum())
    note = f", {diverged} diverged" if diverged else ""
    if values.empty:
        return f"n/a ({len(cell)} run(s){note})"
    if len(values) == 1:
        return f"{_num(values.iloc[0])} (n=1{note})"
    return f"{_num(values.mean())} [{_num(values.min())}-{_num(values.max())}] (n={len(values)}{note})"


def _cell(row: pd.Series, metric: str) -> str:
    if _isnan(row[f"{metric}_mean"]):
        return "n/a"
    if row[f"{metric}_n"] >= 2:
        return f"{_num(row[f'{metric}_mean'])} [{_num(row[f'{metric}_min'])}-{_num(row[f'{metric}_max'])}] (n={int(row[f'{metric}_n'])})"
    return f"{_num(row[f'{metric}_mean'])} (n=1)"


def _value(factor: str, value: Any) -> str:
    if isinstance(value, (bool, np.bool_)) or factor in ("bn", "shortcut"):
        return str(bool(value)).lower() if not _isnan(value) else "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:g}"
    return str(value)


def _order(value: Any) -> tuple:
    # true before false (BN / shortcut first), numbers ascending, names alphabetically
    if isinstance(value, (bool, np.bool_)):
        return (0, -int(value), "")
    if isinstance(value, (int, float, np.number)):
        return (1, float(value), "")
    try:  # override values are strings: "0.9" before "0.99"
        return (1, float(value), "")
    except (TypeError, ValueError):
        return (2, 0.0, str(value))


def _num(value: float) -> str:
    return "n/a" if _isnan(value) else f"{value:.3g}"


def _isnan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _nan_to(value: float, default: float) -> float:
    return default if _isnan(value) else float(value)


def _range(series: pd.Series) -> float:
    values = series.dropna()
    return float(values.max() - values.min()) if len(values) >= 2 else math.nan


def _max(series: pd.Series) -> float:
    values = series.dropna()
    return float(values.max()) if len(values) else math.nan


# --------------------------------------------------------------------------------------------
# the figure


def plot_factors(summary: FactorSummary):
    """Final val accuracy and training loss per setting of a sweep's factors (bars = mean over
    seeds, whiskers = min-max, dots = seeds); ``None`` when no factor varies.

    The first factor is the x axis; a second one, the bars at each x (further factors are
    averaged over, as in the cross table).
    """
    if not summary.factors:
        return None
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    if summary.cross:
        rows, cols = summary.cross[0][0], summary.cross[0][1]
    else:
        rows, cols = summary.factors[0], None
    cells = summary.cells
    x_values = sorted(cells[rows].dropna().unique(), key=_order)
    bar_values = sorted(cells[cols].dropna().unique(), key=_order) if cols else [None]
    width = 0.8 / len(bar_values)
    colors = colormaps["tab10"](np.arange(len(bar_values)))
    fig = Figure(figsize=(max(8.0, 1.6 * len(x_values) * len(bar_values) + 3), 4.6))
    axes = fig.subplots(1, len(METRICS), squeeze=False)[0]
    done = summary.runs_frame
    for ax, (metric, label) in zip(axes, METRICS.items()):
        for j, bar in enumerate(bar_values):
            for i, x_value in enumerate(x_values):
                at = done[(done[rows] == x_value) & ((done[cols] == bar) if cols else True)]
                values = at[metric].dropna()
                x = i + (j - (len(bar_values) - 1) / 2) * width
                if len(values):
                    mean = values.mean()
                    ax.bar(x, mean, width * 0.9, color=colors[j], alpha=0.85, edgecolor="k", lw=0.5,
                           yerr=[[mean - values.min()], [values.max() - mean]], capsize=3,
                           label=f"{factor_name(cols)}={_value(cols, bar)}" if cols and i == 0 else None)
                    ax.scatter(np.full(len(values), x), values, color="k", s=10, zorder=3)
                    ax.annotate(_num(mean), (x, values.max()), xytext=(0, 3), textcoords="offset points",
                                ha="center", va="bottom", fontsize=8)
                diverged = int((at["status"] == "diverged").sum())
                if diverged:
                    ax.annotate(f"{diverged}x diverged", (x, 0), xytext=(0, 3), textcoords="offset points",
                                ha="center", va="bottom", fontsize=7, color="red")
        ax.set_xticks(range(len(x_values)))
        ax.set_xticklabels([f"{factor_name(rows)}={_value(rows, v)}" for v in x_values])
        ax.set_ylabel(label)
        ax.set_ylim(0, max(1.12 if metric == "final_val_acc" else 0.0, ax.get_ylim()[1] * 1.15))
        ax.grid(True, axis="y", alpha=0.3)
        if cols:
            ax.legend(fontsize=9)
    fig.suptitle(f"What the runs show -- {summary.sweep}  (bars = mean over seeds, whiskers = min-max, dots = seeds)", fontsize=11)
    fig.tight_layout()
    return fig


def save_factor_plots(summaries: list[FactorSummary], out_dir, dpi: int = 120) -> dict:
    """Save one ``factors*.png`` per sweep with a factor; returns ``{name: path}``."""
    from pathlib import Path

    written = {}
    for summary in summaries:
        fig = plot_factors(summary)
        if fig is None:
            continue
        name = "factors" if len(summaries) == 1 else "factors_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in summary.sweep)
        path = Path(out_dir) / f"{name}.png"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        written[name] = path
    return written

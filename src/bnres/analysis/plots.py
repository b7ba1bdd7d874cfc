"""Figures for the two claims (matplotlib, Agg backend, PNG).

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure`, or ``None`` when the runs
hold no data for it; :func:`make_plots` saves the ones that exist. Figures are built without
pyplot (no global backend or figure registry): saving uses the Agg canvas, and notebooks
display a returned figure inline. The figures use the same run
selection as the verdicts (:mod:`bnres.analysis.verdicts`), so a plot shows exactly the numbers
its verdict was computed from.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from bnres.analysis.records import NO_BN_LABEL
from bnres.analysis.verdicts import (
    ARCH_KEYS,
    DEFAULT_ACC_THRESHOLD,
    _arch_scope,
    _depth_scope,
    _groups,
    claim_bn_lr_for,
    depth_sweep_candidates,
    lr_sweep_candidates,
    run_trains,
    select_lr_sweep_runs,
)
from bnres.runs.record import FINISHED

BN_COLORS = {True: "tab:blue", False: "tab:orange"}
FAMILY_COLORS = {False: "tab:red", True: "tab:green"}  # residual? -> colour
FAMILY_NAMES = {False: "plain", True: "residual"}
CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over 10 classes
DPI = 120


def plot_lr_sweep(runs: pd.DataFrame, acc_threshold: float = DEFAULT_ACC_THRESHOLD, max_rows: int = 3):
    """Final training loss and val accuracy vs learning rate, BN vs no BN (claim 1).

    One row per architecture with an LR sweep. Lines: mean over seeds of the runs that ended
    with finite numbers; bands: min-max over seeds. Every run is also drawn on its own: dots
    for runs that trained, ``x`` for runs that finished without training (val acc below the
    threshold), and ``x`` pinned to the panel edge for runs that diverged.
    """
    candidates = lr_sweep_candidates(runs)[:max_rows]
    if not candidates:
        return None
    fig, axes = _subplots(len(candidates), 2, figsize=(12, 4.4 * len(candidates)), squeeze=False)
    for (key, group), (ax_loss, ax_acc) in zip(candidates, axes):
        subset, variant = select_lr_sweep_runs(group)
        subset = subset.assign(trains=run_trains(subset, acc_threshold))
        verdict = claim_bn_lr_for(group, acc_threshold)
        for bn in (True, False):
            setting = subset[(subset["bn"] == bn) & subset["status"].isin(FINISHED)]
            if setting.empty:
                continue
            color, label = BN_COLORS[bn], "BN" if bn else NO_BN_LABEL
            _mean_band(ax_loss, setting, "lr", "final_train_loss", color, label)
            _mean_band(ax_acc, setting, "lr", "final_val_acc", color, label)
            # BN and no-BN markers sit side by side at a shared LR instead of hiding each other
            _lr_run_markers(ax_loss, ax_acc, setting, color, shift=1.07 if bn else 1 / 1.07)
            max_stable = verdict.numbers.get(f"{'bn' if bn else 'nobn'}_max_stable_lr")
            if max_stable:
                for ax in (ax_loss, ax_acc):
                    ax.axvline(max_stable, color=color, ls=":", lw=1.5)
        ax_loss.axhline(CHANCE_LOSS, color="grey", ls="--", lw=1)
        ax_loss.text(0.01, CHANCE_LOSS, " chance (ln 10)", color="grey", va="bottom", fontsize=8, transform=ax_loss.get_yaxis_transform())
        ax_acc.axhline(acc_threshold, color="grey", ls="--", lw=1)
        ax_acc.text(0.01, acc_threshold, f" 'trains' threshold ({acc_threshold:g})", color="grey", va="bottom", fontsize=8, transform=ax_acc.get_yaxis_transform())
        for ax in (ax_loss, ax_acc):
            ax.set_xscale("log")
            ax.set_xlabel("learning rate (log scale)")
            ax.grid(True, which="major", alpha=0.3)
        if (subset["final_train_loss"] > 0).any():
            ax_loss.set_yscale("log")
        ax_loss.set_ylabel("final training loss")
        ax_acc.set_ylabel("final validation accuracy")
        ax_acc.set_ylim(-0.02, 1.05)
        lrs = subset["lr"].dropna()
        for ax in (ax_loss, ax_acc):  # pinned markers do not autoscale: cover every LR tried
            ax.set_xlim(lrs.min() / 1.6, lrs.max() * 1.6)
        ax_loss.set_title(f"{_arch_scope(key)}: final training loss" + (f"\n({variant})" if variant else ""), fontsize=10)
        ax_acc.set_title(f"final val accuracy -- claim 1: {verdict.verdict.upper()}", fontsize=10)
    axes[0, 1].legend(handles=_lr_legend_handles(), loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.suptitle("Claim 1: does batch norm allow larger learning rates?  (mean over seeds, band = min-max)", fontsize=12)
    fig.tight_layout()
    return fig


def plot_depth(runs: pd.DataFrame, max_panels: int = 3):
    """Final training error vs depth, plain vs residual (claim 2); mean with min-max bars."""
    candidates = [kg for kg in depth_sweep_candidates(runs) if kg[1]["depth"].nunique() >= 2][:max_panels]
    if not candidates:
        return None
    fig, axes = _subplots(1, len(candidates), figsize=(6.5 * len(candidates), 4.6), squeeze=False)
    for (key, group), ax in zip(candidates, axes[0]):
        usable = group[(group["status"] == "completed") & group["train_error"].notna()]
        for residual in (False, True):
            family = usable[usable["residual"] == residual]
            if family.empty:
                continue
            stats = family.groupby("depth")["train_error"].agg(["mean", "min", "max"]).sort_index()
            color = FAMILY_COLORS[residual]
            names = ", ".join(sorted(family["model_name"].unique()))
            ax.errorbar(
                stats.index, 100 * stats["mean"],
                yerr=[100 * _nonnegative(stats["mean"] - stats["min"]), 100 * _nonnegative(stats["max"] - stats["mean"])],
                color=color, marker="o", lw=2, capsize=4, label=f"{FAMILY_NAMES[residual]} ({names})",
            )
            ax.scatter(family["depth"], 100 * family["train_error"], color=color, alpha=0.35, s=14, zorder=3)
        diverged = group[group["status"] == "diverged"]
        for row in diverged.itertuples():
            ax.plot(row.depth, 1.0, marker="x", color=FAMILY_COLORS[row.residual], ms=9, mew=2,
                    transform=ax.get_xaxis_transform(), clip_on=False)
        ax.set_xticks(sorted(group["depth"].dropna().unique()))
        ax.set_xlabel("depth (layers)")
        ax.set_ylabel("final training error (%)")
        ax.set_title(_depth_scope(key), fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        handles, _ = ax.get_legend_handles_labels()
        if len(diverged):
            handles.append(Line2D([], [], color="k", marker="x", ls="", label="diverged run"))
        ax.legend(handles=handles, fontsize=9)
    fig.suptitle("Claim 2: training error vs depth  (mean over seeds, bars = min-max, dots = seeds)", fontsize=12)
    fig.tight_layout()
    return fig


def plot_depth_curves(runs: pd.DataFrame, histories: pd.DataFrame):
    """Training (solid) and validation (dashed) error per epoch for each depth: plain | residual.

    In the style of He et al. 2016, Fig. 6. Curves are means over the seeds that completed.
    """
    candidates = [kg for kg in depth_sweep_candidates(runs) if kg[1]["depth"].nunique() >= 2]
    if not candidates or histories is None or histories.empty or "train_error" not in histories:
        return None
    key, group = candidates[0]
    group = group[group["status"] == "completed"]
    curves = histories[histories["run_id"].isin(group["run_id"])].merge(
        group[["run_id", "residual", "depth"]], on="run_id"
    )
    if curves.empty or curves["train_error"].notna().sum() == 0:
        return None
    depths = sorted(group["depth"].dropna().unique())
    colors = dict(zip(depths, colormaps["viridis"](np.linspace(0.0, 0.85, len(depths)))))
    fig, axes = _subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for residual, ax in zip((False, True), axes):
        family = curves[curves["residual"] == residual]
        for depth in depths:
            at_depth = family[family["depth"] == depth]
            if at_depth.empty:
                continue
            mean = at_depth.groupby("epoch")[["train_error", "val_error"]].mean()
            name = f"{FAMILY_NAMES[residual]}-{int(depth)}"
            ax.plot(mean.index, 100 * mean["train_error"], color=colors[depth], lw=2, label=name)
            if mean["val_error"].notna().any():
                ax.plot(mean.index, 100 * mean["val_error"], color=colors[depth], lw=1, ls="--")
        ax.set_title(f"{FAMILY_NAMES[residual]} nets" + (" (with shortcuts)" if residual else " (no shortcuts)"))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        handles += [Line2D([], [], color="k", lw=2, label="training error"),
                    Line2D([], [], color="k", lw=1, ls="--", label="validation error")]
        ax.legend(handles=handles, fontsize=9)
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(bottom=0)
    fig.suptitle(f"Error curves per depth (mean over seeds) -- {_depth_scope(key)}", fontsize=12)
    fig.tight_layout()
    return fig


def placement_runs(runs: pd.DataFrame) -> tuple[dict, pd.DataFrame] | None:
    """The architecture and runs of a BN-placement comparison, or ``None``.

    Picks the architecture whose BN runs cover the most placements, keeps the learning rates at
    which at least two placements were run, and adds the no-BN runs at those rates.
    """
    best = None
    for key, group in _groups(runs, ARCH_KEYS):
        bn_runs = group[group["bn"]]
        per_lr = bn_runs.groupby("lr")["bn_placement"].nunique()
        lrs = per_lr[per_lr >= 2].index
        if len(lrs) == 0:
            continue
        chosen = group[group["lr"].isin(lrs)]
        n_placements = chosen.loc[chosen["bn"], "bn_placement"].nunique()
        if best is None or n_placements > best[2]:
            best = (key, chosen, n_placements)
    return None if best is None else (best[0], best[1])


def plot_placement(runs: pd.DataFrame):
    """Final val accuracy and training error per BN placement (and "no BN"), bars = mean, whiskers = min-max."""
    found = placement_runs(runs)
    if found is None:
        return None
    key, chosen = found
    finished = chosen[chosen["status"].isin(FINISHED)]
    placements = sorted(finished.loc[finished["bn"], "bn_placement"].dropna().unique())
    labels = placements + ([NO_BN_LABEL] if (~finished["bn"]).any() else [])
    lrs = sorted(finished["lr"].unique())
    width = 0.8 / len(lrs)
    lr_colors = colormaps["tab10"](np.arange(len(lrs)))
    fig, axes = _subplots(1, 2, figsize=(12, 4.6))
    for ax, column, ylabel in ((axes[0], "final_val_acc", "final validation accuracy"),
                               (axes[1], "train_error", "final training error")):
        for i, lr in enumerate(lrs):
            at_lr = finished[finished["lr"] == lr]
            for j, label in enumerate(labels):
                bar_runs = at_lr[at_lr["bn_label"] == label]
                values = bar_runs[column].replace([np.inf, -np.inf], np.nan).dropna()
                x = j + (i - (len(lrs) - 1) / 2) * width
                if len(values):
                    mean = values.mean()
                    ax.bar(x, mean, width * 0.9, color=lr_colors[i], alpha=0.85 if label != NO_BN_LABEL else 0.45,
                           hatch="//" if label == NO_BN_LABEL else None, edgecolor="k", lw=0.5,
                           yerr=[[_nonnegative(mean - values.min())], [_nonnegative(values.max() - mean)]], capsize=3)
                    # above the whisker's top, not on it
                    ax.annotate(f"{mean:.2f}", (x, values.max()), xytext=(0, 3), textcoords="offset points",
                                ha="center", va="bottom", fontsize=8)
                n_diverged = int((bar_runs["status"] == "diverged").sum())
                if n_diverged:
                    ax.text(x, 0.02, f"{n_diverged}x\ndiverged", ha="center", va="bottom", fontsize=7, color="red")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels([label.replace("_", " ") for label in labels])
        ax.set_ylabel(ylabel)
        if column == "final_val_acc":
            ax.set_ylim(0, 1.12)  # room for the labels above whiskers that reach 1
        else:  # errors are small: let the axis zoom in, keeping room for the labels
            ax.set_ylim(0, max(0.05, ax.get_ylim()[1] * 1.2))
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_title(ylabel + " per BN placement", fontsize=10)
    axes[0].legend(handles=[Patch(color=c, label=f"lr {lr:g}") for c, lr in zip(lr_colors, lrs)], fontsize=9)
    fig.suptitle(f"Where to put batch norm -- {_arch_scope(key)}  (bars = mean over seeds, whiskers = min-max)", fontsize=12)
    fig.tight_layout()
    return fig


def make_plots(
    runs: pd.DataFrame,
    histories: pd.DataFrame | None,
    out_dir: str | Path,
    acc_threshold: float = DEFAULT_ACC_THRESHOLD,
) -> dict[str, Path]:
    """Save every figure whose data is present; returns ``{name: path}`` of the PNGs written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "lr_sweep": lambda: plot_lr_sweep(runs, acc_threshold),
        "depth": lambda: plot_depth(runs),
        "depth_curves": lambda: plot_depth_curves(runs, histories),
        "placement": lambda: plot_placement(runs),
    }
    written = {}
    for name, build in figures.items():
        fig = build()
        if fig is None:
            continue
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        written[name] = path
    return written


# --------------------------------------------------------------------------------------------
# helpers


def _subplots(nrows: int, ncols: int, figsize: tuple[float, float], **kwargs):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _mean_band(ax, setting: pd.DataFrame, x: str, y: str, color: str, label: str) -> None:
    """Mean line and min-max band; an x value is left out where any finished seed is non-finite."""
    values = setting[[x, y]].replace([np.inf, -np.inf], np.nan)
    stats = values.groupby(x)[y].agg(["mean", "min", "max", "size", "count"]).sort_index()
    stats.loc[stats["count"] < stats["size"], ["mean", "min", "max"]] = np.nan
    ax.plot(stats.index, stats["mean"], color=color, lw=2, label=label)
    ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.18, lw=0)


def _lr_run_markers(ax_loss, ax_acc, setting: pd.DataFrame, color: str, shift: float = 1.0) -> None:
    """One marker per run: dot = trained, x = did not train, x at the edge = diverged/non-finite.

    ``shift`` multiplies the LR of the markers (a small offset on the log axis).
    """
    setting = setting.assign(lr=setting["lr"] * shift)
    loss = setting["final_train_loss"].replace([np.inf, -np.inf], np.nan)
    acc = setting["final_val_acc"]
    blown = (setting["status"] == "diverged") | loss.isna()
    trained = setting["trains"] & ~blown
    untrained = ~setting["trains"] & ~blown
    for ax, values in ((ax_loss, loss), (ax_acc, acc)):
        ax.scatter(setting.loc[trained, "lr"], values[trained], color=color, s=18, alpha=0.6, zorder=3)
        ax.scatter(setting.loc[untrained, "lr"], values[untrained], color=color, marker="x", s=45, lw=1.8, zorder=4)
    if blown.any():
        # no finite loss to draw: pin the marker to the top of the loss panel
        lrs = setting.loc[blown, "lr"]
        ax_loss.scatter(lrs, np.full(len(lrs), 0.97), color=color, marker="X", s=70, edgecolor="k", lw=0.5,
                        transform=ax_loss.get_xaxis_transform(), zorder=5)
        blown_acc = acc[blown].fillna(0.0)  # no val acc recorded: show at 0
        ax_acc.scatter(lrs, blown_acc, color=color, marker="X", s=70, edgecolor="k", lw=0.5, zorder=5, clip_on=False)


def _lr_legend_handles() -> list:
    return [
        Line2D([], [], color=BN_COLORS[True], lw=2, label="BN: mean (band: min-max)"),
        Line2D([], [], color=BN_COLORS[False], lw=2, label=f"{NO_BN_LABEL}: mean (band: min-max)"),
        Line2D([], [], color="grey", marker="o", ls="", label="run that trained"),
        Line2D([], [], color="grey", marker="x", ls="", mew=1.8, label="finished, did not train\n(val acc < threshold)"),
        Line2D([], [], color="grey", marker="X", ls="", mec="k", ms=9, label="diverged\n(loss blew up)"),
        Line2D([], [], color="grey", ls=":", lw=1.5, label="max stable LR\n(every seed trains)"),
    ]


def _nonnegative(width):
    """An error-bar half-width, clipped at zero: the mean of identical values can round a hair past them."""
    return np.maximum(width, 0.0)

"""Why the claims hold: the mechanism probes of the records (``probes`` field, :mod:`bnres.training.probes`) as figures
in the style of the papers' own, and a "Mechanisms" section for ``claims.md``.

Figures (PNG, written only when the records hold their data):

* ``mech_activation_percentiles.png`` -- Ioffe & Szegedy 2015, Fig. 1(b, c): 15th/50th/85th percentiles of
  the input to the probed activation over training, without and with BN, at one learning rate.
* ``mech_landscape.png`` -- Santurkar et al. 2018, Fig. 4: along the gradient on a fixed held-out batch,
  (a) the range of the loss over the step sizes, (b) the range of the gradient change
  ("gradient predictiveness"), (c) the effective beta-smoothness; BN vs no BN at the same learning rate.
* ``mech_response_std.png`` -- He et al. 2016, Fig. 7: standard deviation of each layer's response (at the
  BN positions: after BN, before the addition/ReLU) at the end of training, plain vs residual, in layer
  order (top) and sorted by magnitude (bottom).
* ``mech_grad_flow.png`` -- per-layer gradient norm, input to output, plain vs residual at the deepest depth,
  at initialization and at the end of training.

The numbers are measurements with their spread over seeds (mean and min..max), not verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnres.analysis.records import records_to_runs
from bnres.analysis.verdicts import run_trains
from bnres.runs.record import FINISHED

DPI = 120
BN_COLORS = {True: "tab:blue", False: "tab:orange"}
FAMILY_COLORS = {False: "tab:red", True: "tab:green"}
FAMILY_NAMES = {False: "plain", True: "residual"}
PERCENTILE_STYLES = {0: ":", 1: "-", 2: "--"}  # p15, p50, p85


# --------------------------------------------------------------------------------------------
# selecting runs


def probe_runs(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The runs table (:func:`records_to_runs`) of finished records that carry probes, plus the probes
    (``layers``/``landscape`` columns: the record's dicts or None) and ``residual`` read from
    ``config.shortcut`` where the record has it (model-name parsing otherwise)."""
    with_probes = [r for r in records if r.get("probes") and r.get("status") in FINISHED]
    runs = records_to_runs(with_probes)
    if runs.empty:
        return runs
    by_id = {}
    for record in with_probes:
        sweep, job = record.get("_sweep", ""), record.get("_job", "")
        by_id[f"{sweep}/{job}" if job else sweep] = record
    runs["layers"] = runs["run_id"].map(lambda i: by_id[i]["probes"].get("layers"))
    runs["landscape"] = runs["run_id"].map(lambda i: by_id[i]["probes"].get("landscape"))
    shortcut = runs["run_id"].map(lambda i: (by_id[i].get("config") or {}).get("shortcut"))
    runs["residual"] = [bool(s) if s is not None else r for s, r in zip(shortcut, runs["residual"])]
    runs["trains"] = run_trains(runs)
    return runs


def bn_comparison(runs: pd.DataFrame, probe: str) -> tuple[pd.DataFrame, list[float], float | None]:
    """Runs of the architecture with the most BN and no-BN runs carrying ``probe``; their shared LRs;
    and the LR the figures show: the largest at which every seed of both settings trains (else the
    smallest shared LR)."""
    have = runs[runs[probe].notna() & runs["family"].isna()] if len(runs) else runs
    if have.empty:
        return have, [], None
    best = None
    for _, group in have.groupby(["data", "model_name", "max_epochs"], dropna=False):
        if group["bn"].any() and (~group["bn"]).any() and (best is None or len(group) > len(best)):
            best = group
    if best is None:
        return have.iloc[0:0], [], None
    lrs = sorted(set(best.loc[best["bn"], "lr"]) & set(best.loc[~best["bn"], "lr"]))
    if not lrs:
        return best, [], None
    both_train = [lr for lr in lrs if best.loc[best["lr"] == lr, "trains"].all()]
    return best, lrs, (max(both_train) if both_train else lrs[0])


def depth_comparison(runs: pd.DataFrame) -> pd.DataFrame:
    """Plain and residual runs with layer probes of the best-covered style (most runs)."""
    have = runs[runs["layers"].notna() & runs["family"].notna()] if len(runs) else runs
    if have.empty:
        return have
    groups = [g for _, g in have.groupby(["data", "family", "bn_label", "lr", "max_epochs"], dropna=False) if g["residual"].any() and (~g["residual"]).any()]
    return max(groups, key=len) if groups else have.iloc[0:0]


# --------------------------------------------------------------------------------------------
# per-run numbers


def _median(values) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else math.nan


def landscape_numbers(landscape: dict[str, Any]) -> dict[str, float]:
    """Medians over the probe steps of the loss range, the largest gradient change and beta."""
    return {key: _median(landscape.get(key, [])) for key in ("loss_range", "grad_change_max", "beta")}


def activation_drift(layers: dict[str, Any]) -> dict[str, float]:
    """How much the probed activation's input distribution moves: the 50th percentile's largest distance
    from its first value, and the 15-85 spread at the end over the spread at the start."""
    pct = np.asarray(layers.get("activation_percentiles") or [], dtype=float)
    if pct.ndim != 2 or len(pct) < 2:
        return {"median_shift": math.nan, "spread_ratio": math.nan}
    spread = pct[:, 2] - pct[:, 0]
    return {"median_shift": float(np.nanmax(np.abs(pct[:, 1] - pct[0, 1]))),
            "spread_ratio": float(spread[-1] / spread[0]) if spread[0] > 0 else math.nan}


def response_std(layers: dict[str, Any], row: int = -1) -> np.ndarray:
    return np.asarray(layers["site_std"][row], dtype=float)


def grad_norms(layers: dict[str, Any], row: int) -> np.ndarray:
    return np.asarray(layers["grad_norm"][row], dtype=float)


def _spread(values: Sequence[float]) -> str:
    """``mean [min, max] (n seeds)`` of the finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:.3g} (1 seed)"
    return f"{np.mean(finite):.3g} [{min(finite):.3g}, {max(finite):.3g}] ({len(finite)} seeds)"


# --------------------------------------------------------------------------------------------
# figures


def _figure(nrows: int, ncols: int, figsize):
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))


def plot_activation_percentiles(runs: pd.DataFrame) -> Figure | None:
    group, _, lr = bn_comparison(runs, "layers")
    if lr is None:
        return None
    fig, axes = _figure(1, 2, (11, 4))
    at_lr = group[group["lr"] == lr]
    for ax, bn in zip(axes[0], (False, True)):
        for i, run in enumerate(at_lr[at_lr["bn"] == bn].itertuples()):
            pct = np.asarray(run.layers["activation_percentiles"], dtype=float)
            for k, style in PERCENTILE_STYLES.items():
                ax.plot(run.layers["step"], pct[:, k], style, color=BN_COLORS[bn], alpha=0.9 if i == 0 else 0.35,
                        label=f"{(15, 50, 85)[k]}th percentile" if i == 0 else None)
        activation = at_lr["layers"].iloc[0]["activation"]
        ax.set(title=f"{'with' if bn else 'without'} BN: input to {activation}", xlabel="training step", ylabel="value")
        ax.legend(fontsize=8)
    fig.suptitle(f"Input distribution of one activation over training (Ioffe & Szegedy 2015, Fig. 1b,c), lr {lr:g}; one line set per seed")
    return fig


def plot_landscape(runs: pd.DataFrame) -> Figure | None:
    group, _, lr = bn_comparison(runs, "landscape")
    if lr is None:
        return None
    fig, axes = _figure(1, 3, (16, 4.2))
    at_lr = group[group["lr"] == lr]
    for bn in (False, True):
        setting = at_lr[at_lr["bn"] == bn]
        label = "BN" if bn else "no BN"
        for i, run in enumerate(setting.itertuples()):
            ls = run.landscape
            steps = ls["step"]
            losses = np.asarray([[a, *b] for a, b in zip(ls["loss"], ls["loss_along"])], dtype=float)
            changes = np.asarray(ls["grad_change"], dtype=float)
            kw = {"color": BN_COLORS[bn], "alpha": 0.3 if i == 0 else 0.15, "lw": 0}
            axes[0, 0].fill_between(steps, np.nanmin(losses, axis=1), np.nanmax(losses, axis=1), label=label if i == 0 else None, **kw)
            axes[0, 1].fill_between(steps, np.nanmin(changes, axis=1), np.nanmax(changes, axis=1), label=label if i == 0 else None, **kw)
            axes[0, 2].plot(steps, ls["beta"], color=BN_COLORS[bn], alpha=0.9 if i == 0 else 0.4, label=label if i == 0 else None)
    etas = at_lr["landscape"].iloc[0]["etas"]
    axes[0, 0].set(title="(a) loss landscape: loss along the gradient", xlabel="training step", ylabel="loss")
    axes[0, 1].set(title="(b) gradient predictiveness", xlabel="training step", ylabel="||grad L(θ) − grad L(θ − ηg)||")
    axes[0, 2].set(title="(c) effective β-smoothness", xlabel="training step", ylabel="max ||Δgrad|| / ||ηg||")
    for ax in axes[0, 1:]:
        ax.set_yscale("log")
    for ax in axes[0]:
        ax.legend(fontsize=8)
    fig.suptitle(f"Along the gradient on a fixed held-out batch, lr {lr:g}, η = {', '.join(f'{e:.3g}' for e in etas)} "
                 "(Santurkar et al. 2018, Fig. 4); bands: min..max over η, one per seed")
    return fig


def plot_response_std(runs: pd.DataFrame) -> Figure | None:
    group = depth_comparison(runs)
    if group.empty:
        return None
    fig, axes = _figure(2, 1, (10, 7.5))
    depths = sorted(group["depth"].dropna().unique())
    shades = {d: 0.35 + 0.65 * i / max(1, len(depths) - 1) for i, d in enumerate(depths)}
    for (residual, depth), runs_at in group.groupby(["residual", "depth"]):
        stds = [response_std(r) for r in runs_at["layers"]]
        n = min(len(s) for s in stds)
        mean = np.nanmean([s[:n] for s in stds], axis=0)
        label = f"{FAMILY_NAMES[residual]}-{int(depth)}"
        kw = {"color": FAMILY_COLORS[residual], "alpha": shades[depth], "ls": "-" if residual else "--", "label": label}
        axes[0, 0].plot(np.arange(1, n + 1), mean, **kw)
        axes[1, 0].plot(np.arange(1, n + 1), np.sort(mean)[::-1], **kw)
    axes[0, 0].set(title="std of layer responses at the end of training, in layer order", xlabel="layer index (BN position)", ylabel="std")
    axes[1, 0].set(title="sorted by magnitude", xlabel="index", ylabel="std")
    for ax in axes[:, 0]:
        ax.legend(fontsize=8, ncol=2)
    fig.suptitle("Layer responses (after BN, before addition/ReLU; He et al. 2016, Fig. 7), mean over seeds")
    return fig


def plot_grad_flow(runs: pd.DataFrame) -> Figure | None:
    group = depth_comparison(runs)
    if group.empty:
        return None
    deep = group["depth"].max()
    at_deep = group[group["depth"] == deep]
    fig, axes = _figure(1, 2, (13, 4.2))
    for ax, (row, when) in zip(axes[0], ((0, "at initialization (step 0)"), (-1, "at the end of training"))):
        for residual, runs_f in at_deep.groupby("residual"):
            for i, layers in enumerate(runs_f["layers"]):
                g = grad_norms(layers, row)
                ax.plot(np.arange(1, len(g) + 1), g, color=FAMILY_COLORS[residual], alpha=0.9 if i == 0 else 0.4,
                        ls="-" if residual else "--", label=f"{FAMILY_NAMES[residual]}-{int(deep)}" if i == 0 else None)
        ax.set(title=f"per-layer gradient norm {when}", xlabel="weight layer (input → output)", ylabel="||∇W||", yscale="log")
        ax.legend(fontsize=8)
    fig.suptitle(f"Gradient flow, plain vs residual at depth {int(deep)}; one line per seed")
    return fig


MECHANISM_FIGURES = {
    "mech_activation_percentiles": plot_activation_percentiles,
    "mech_landscape": plot_landscape,
    "mech_response_std": plot_response_std,
    "mech_grad_flow": plot_grad_flow,
}


def make_mechanism_plots(records: Sequence[dict[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    """Save every mechanism figure whose data the records hold; ``{name: path}``."""
    runs = probe_runs(records)
    written = {}
    if runs.empty:
        return written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, build in MECHANISM_FIGURES.items():
        fig = build(runs)
        if fig is not None:
            path = out_dir / f"{name}.png"
            fig.savefig(path, dpi=DPI, bbox_inches="tight")
            written[name] = path
    return written


# --------------------------------------------------------------------------------------------
# numbers for claims.md


def mechanism_numbers(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every number of the Mechanisms section, per seed (lists), keyed by what it measures."""
    runs = probe_runs(records)
    out: dict[str, Any] = {}
    if runs.empty:
        return out
    group, lrs, lr = bn_comparison(runs, "landscape")
    if lrs:
        rows = []
        for at in lrs:
            for bn in (False, True):
                setting = group[(group["lr"] == at) & (group["bn"] == bn)]
                numbers = [landscape_numbers(ls) for ls in setting["landscape"]]
                rows.append({"lr": at, "bn": bn, "trains": f"{int(setting['trains'].sum())}/{len(setting)}",
                             **{k: [n[k] for n in numbers] for k in ("loss_range", "grad_change_max", "beta")}})
        out["landscape"] = {"lr_shown": lr, "rows": rows, "scope": _scope(group)}
    group, lrs, lr = bn_comparison(runs, "layers")
    if lrs:
        rows = []
        for at in lrs:
            for bn in (False, True):
                setting = group[(group["lr"] == at) & (group["bn"] == bn)]
                drifts = [activation_drift(layers) for layers in setting["layers"]]
                rows.append({"lr": at, "bn": bn, **{k: [d[k] for d in drifts] for k in ("median_shift", "spread_ratio")}})
        out["activation"] = {"lr_shown": lr, "activation": group["layers"].iloc[0]["activation"], "rows": rows, "scope": _scope(group)}
    group = depth_comparison(runs)
    if not group.empty:
        rows = []
        for (residual, depth), runs_at in group.groupby(["residual", "depth"]):
            rows.append({
                "family": FAMILY_NAMES[residual], "depth": int(depth),
                "mean_response_std": [float(np.nanmean(response_std(layers))) for layers in runs_at["layers"]],
                "first_layer_grad_init": [float(grad_norms(layers, 0)[0]) for layers in runs_at["layers"]],
                "first_layer_grad_end": [float(grad_norms(layers, -1)[0]) for layers in runs_at["layers"]],
                # first weight layer over the last conv (the classifier left out): how much gradient reaches the input
                "first_over_last_conv_init": [float(g[0] / g[-2]) if len(g) > 2 and g[-2] > 0 else math.nan for g in (grad_norms(layers, 0) for layers in runs_at["layers"])],
            })
        out["depth"] = {"rows": rows, "scope": _scope(group)}
    return out


def _scope(group: pd.DataFrame) -> str:
    models = ", ".join(sorted(group["model_name"].dropna().unique()))
    data = ", ".join(sorted(str(d) for d in group["data"].dropna().unique()))
    epochs = ", ".join(str(int(e)) for e in sorted(group["max_epochs"].dropna().unique()))
    return f"{models} on {data}, {epochs} epochs, {len(group)} runs"


def mechanisms_markdown(numbers: dict[str, Any], figures: dict[str, Path] | None = None) -> str:
    """The "Mechanisms" section of ``claims.md``: what was measured, with the spread over seeds."""
    parts = ["## Mechanisms", "",
             "Measured by the probes (`probes=...`, `bnres.training.probes`) of the same runs: values are mean [min, max] "
             "over seeds. These are measurements that explain the verdicts above, not verdicts.", ""]
    if not numbers:
        return "\n".join(parts + ["No run of these sweeps recorded probes (run them with `probes=all`).", ""])
    figures = figures or {}
    if "landscape" in numbers:
        ls = numbers["landscape"]
        parts += ["### Loss landscape along the gradient (Santurkar et al. 2018, Fig. 4)", "",
                  f"Runs: {ls['scope']}. Per run, the median over probe steps of: the range of the loss at "
                  "θ − ηg over the step sizes η (and θ), the largest change of the gradient there, and the effective "
                  "β-smoothness (largest gradient change per unit of distance moved). Smaller means a smoother, more "
                  "predictable landscape along the gradient, i.e. room for larger steps.", "",
                  "| lr | setting | trains | loss range | gradient change | β-smoothness |", "|---|---|---|---|---|---|"]
        for row in ls["rows"]:
            parts.append(f"| {row['lr']:g} | {'BN' if row['bn'] else 'no BN'} | {row['trains']} | {_spread(row['loss_range'])} | "
                         f"{_spread(row['grad_change_max'])} | {_spread(row['beta'])} |")
        parts += ["", _landscape_sentence(ls), ""]
        if "mech_landscape" in figures:
            parts += [f"Figure: `{figures['mech_landscape'].name}` (lr {ls['lr_shown']:g}).", ""]
    if "activation" in numbers:
        act = numbers["activation"]
        parts += [f"### Input distribution of `{act['activation']}` over training (Ioffe & Szegedy 2015, Fig. 1b,c)", "",
                  f"Runs: {act['scope']}. Per run: the largest distance of the 50th percentile from its value at step 0, "
                  "and the 15th–85th percentile spread at the end over that at step 0 (1 = unchanged).", "",
                  "| lr | setting | median shift | spread end/start |", "|---|---|---|---|"]
        for row in act["rows"]:
            parts.append(f"| {row['lr']:g} | {'BN' if row['bn'] else 'no BN'} | {_spread(row['median_shift'])} | {_spread(row['spread_ratio'])} |")
        parts.append("")
        if "mech_activation_percentiles" in figures:
            parts += [f"Figure: `{figures['mech_activation_percentiles'].name}` (lr {act['lr_shown']:g}).", ""]
    if "depth" in numbers:
        dp = numbers["depth"]
        parts += ["### Layer responses and gradient flow, plain vs residual (He et al. 2016, Fig. 7)", "",
                  f"Runs: {dp['scope']}. Response std: the standard deviation of the output at each BN position "
                  "(after BN, before the addition/ReLU) at the end of training, averaged over layers. Gradient: the norm "
                  "of the first conv layer's weight gradient at step 0 and at the last step, and its ratio to the last "
                  "conv layer's at step 0 (how much of the gradient reaches the input).", "",
                  "| family | depth | response std (end) | first-layer ‖∇W‖ at init | at the end | first/last conv at init |",
                  "|---|---|---|---|---|---|"]
        for row in sorted(dp["rows"], key=lambda r: (r["family"], r["depth"])):
            parts.append(f"| {row['family']} | {row['depth']} | {_spread(row['mean_response_std'])} | {_spread(row['first_layer_grad_init'])} | "
                         f"{_spread(row['first_layer_grad_end'])} | {_spread(row['first_over_last_conv_init'])} |")
        parts.append("")
        shown = [f"`{figures[k].name}`" for k in ("mech_response_std", "mech_grad_flow") if k in figures]
        if shown:
            parts += [f"Figures: {', '.join(shown)}.", ""]
    return "\n".join(parts)


def _landscape_sentence(ls: dict[str, Any]) -> str:
    """One sentence on the shown LR: the BN / no-BN ratio of the medians (no verdict)."""
    at = [r for r in ls["rows"] if r["lr"] == ls["lr_shown"]]
    by_bn = {r["bn"]: r for r in at}
    if set(by_bn) != {True, False}:
        return ""
    texts = []
    for key, name in (("loss_range", "loss range"), ("beta", "β-smoothness")):
        bn, nobn = _mean(by_bn[True][key]), _mean(by_bn[False][key])
        if math.isfinite(bn) and math.isfinite(nobn) and bn > 0:
            texts.append(f"{name} {nobn:.3g} without BN vs {bn:.3g} with BN ({nobn / bn:.2g}×)")
    return f"At lr {ls['lr_shown']:g} (mean over seeds): " + "; ".join(texts) + "." if texts else ""


def _mean(values) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def mechanisms_summary(numbers: dict[str, Any]) -> str:
    """A few lines for the terminal (printed by ``analyze`` after the verdicts)."""
    lines = []
    if "landscape" in numbers:
        sentence = _landscape_sentence(numbers["landscape"])
        if sentence:
            lines.append("  landscape: " + sentence)
    if "depth" in numbers:
        rows = numbers["depth"]["rows"]
        deep = max(r["depth"] for r in rows)
        for r in sorted((r for r in rows if r["depth"] == deep), key=lambda r: r["family"]):
            lines.append(f"  {r['family']}-{deep}: first-layer grad norm at init {_spread(r['first_layer_grad_init'])}, "
                         f"response std {_spread(r['mean_response_std'])}")
    return ("Mechanisms (measured, see claims.md)\n" + "\n".join(lines)) if lines else ""

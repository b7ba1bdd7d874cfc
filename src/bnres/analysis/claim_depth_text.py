"""Claim 2's text, numbers and table, written from a :class:`~bnres.analysis.claim_depth.DepthEvidence`."""

from __future__ import annotations

import math
from typing import Any

from bnres.analysis.claim_depth import (
    CONFIDENCE,
    MIN_SEEDS,
    TRAINED_FRACTION_OF_CHANCE,
    VERDICT_OF,
    DepthEvidence,
    FamilyTrend,
)
from bnres.analysis.verdict_text import PARTIAL_RISE_FRACTION, _pct, _points, _times


def depth_table(evidence: DepthEvidence) -> list[dict[str, Any]]:
    """Per (family, depth): every run counted, and the seed-mean error."""
    return [{
        "family": c.family, "model_name": c.model_name, "depth": c.depth, "seeds": c.seeds,
        "completed": c.completed, "diverged": c.diverged, "failed": c.failed, "missing": c.missing,
        "mean_train_error": c.mean,
        "min_train_error": min(c.errors) if c.errors else math.nan,
        "max_train_error": max(c.errors) if c.errors else math.nan,
    } for c in sorted(evidence.cells, key=lambda c: (c.family, c.depth))]


def depth_numbers(evidence: DepthEvidence, key: str, scenarios: dict[str, str]) -> dict[str, Any]:
    numbers: dict[str, Any] = {
        "margin": evidence.margin, "relative_margin": evidence.relative_margin, "decision": key,
        "chance_error": evidence.chance_error, "trained_floor": evidence.trained_floor,
        "depths": ", ".join(str(d) for d in evidence.depths),
        "min_seeds_per_depth": evidence.min_seeds, "unresolved_runs": len(evidence.unresolved),
    }
    for what in ("completed", "diverged", "failed", "missing"):
        numbers[f"{what}_runs"] = sum(getattr(c, what) for c in evidence.compared)
    if scenarios:
        numbers |= {f"if_unresolved_{name}": VERDICT_OF[k] for name, k in scenarios.items()}
    if len(evidence.depths) >= 2:
        shallow, deep = evidence.depths[0], evidence.depths[-1]
        numbers |= {"shallowest_depth": shallow, "deepest_depth": deep}
        for name in ("plain", "residual"):
            numbers[f"{name}_error_at_{shallow}"] = evidence.cell(name, shallow).mean
            numbers[f"{name}_error_at_{deep}"] = evidence.cell(name, deep).mean
    for trend in (evidence.plain, evidence.residual):
        if trend is not None:
            name = trend.family
            numbers |= {f"{name}_error_rise": trend.rise, f"{name}_rise_low": trend.rise_low,
                        f"{name}_rise_high": trend.rise_high, f"{name}_tolerance": trend.tolerance,
                        f"{name}_slope_per_layer": trend.slope, f"{name}_slope_low": trend.slope_low,
                        f"{name}_slope_high": trend.slope_high, f"{name}_interval_dof": trend.dof}
    if evidence.plain and evidence.residual:
        deep = evidence.depths[-1]
        residual_deep = evidence.cell("residual", deep).mean
        numbers["error_ratio_plain_over_residual_at_deepest"] = (
            evidence.cell("plain", deep).mean / residual_deep if residual_deep > 0 else math.inf)
        if evidence.residual.rise > 0:
            numbers["rise_ratio_plain_over_residual"] = evidence.plain.rise / evidence.residual.rise
        numbers |= {"plain_degrades": evidence.plain.state == "rises", "residual_holds": evidence.residual.state == "holds",
                    "residual_better_at_deepest": evidence.residual_better_deep}
    if evidence.late is not None:
        numbers |= {"plain_deep_late_slope_per_epoch": evidence.late.plain_slope_per_epoch,
                    "plain_deep_still_improving": evidence.late.still_improving,
                    "deep_gap_closing": evidence.late.gap_closing}
    return numbers


def counts_text(evidence: DepthEvidence) -> str:
    """Every run of the compared cells: completed, diverged (counted at chance error), failed, missing."""
    cells = evidence.compared or evidence.cells
    parts = []
    for c in sorted(cells, key=lambda c: (c.family, c.depth)):
        extra = [f"{n} {what}" for n, what in ((c.diverged, "diverged"), (c.failed, "failed"), (c.missing, "missing")) if n]
        parts.append(f"{c.family}-{c.depth} {c.completed} completed" + (f" ({', '.join(extra)})" if extra else ""))
    text = "Runs: " + "; ".join(parts) + "."
    if any(c.diverged for c in cells):
        text += (f" Diverged runs count at chance error ({_pct(evidence.chance_error)}): against the claim at depth for "
                 f"residual nets, for it for plain nets.")
    return text


def trend_text(trend: FamilyTrend, evidence: DepthEvidence) -> str:
    shallow, deep = evidence.depths[0], evidence.depths[-1]
    means = ", ".join(f"{d}: {_pct(m)}" for d, m in zip(trend.depths, trend.means))
    interval = (f"[{_points(trend.rise_low, signed=True)}, {_points(trend.rise_high, signed=True)}]"
                if math.isfinite(trend.rise_low) else "[no interval: one seed per depth]")
    return (f"{trend.family} nets' training error {'rises' if trend.rise >= 0 else 'falls'} by {_points(abs(trend.rise))} "
            f"{interval} ({_pct(trend.means[0])} -> {_pct(trend.means[-1])}; tolerance {_points(trend.tolerance)}; "
            f"least-squares line over the seed means at depths {means}, from {shallow} to {deep})")


def facts_text(evidence: DepthEvidence) -> str:
    plain, residual = evidence.plain, evidence.residual
    deep = evidence.depths[-1]
    comparison = ""
    if plain.rise > 0 and residual.rise > 0:
        comparison = f": {_times(plain.rise / residual.rise)}x less for residual nets"
    elif plain.rise > 0:
        comparison = ": residual nets do not get worse at all"
    plain_deep, residual_deep = evidence.cell("plain", deep).mean, evidence.cell("residual", deep).mean
    text = (f"{trend_text(plain, evidence)}; {trend_text(residual, evidence)}{comparison}. "
            f"At depth {deep}: residual {_pct(residual_deep)} vs plain {_pct(plain_deep)}"
            + (f" ({_times(plain_deep / residual_deep)}x lower)." if evidence.residual_better_deep and residual_deep > 0 else "."))
    text += (f" Brackets: {100 * CONFIDENCE:.0f}% t interval of the fitted rise, from the pooled seed-to-seed variance "
             f"({evidence.min_seeds} or more seeds per depth; {plain.dof} and {residual.dof} degrees of freedom). "
             f"A rise counts when its whole interval exceeds the tolerance, max({_points(evidence.margin)}, "
             f"{evidence.relative_margin:g} x the error at depth {evidence.depths[0]}).")
    if evidence.late is not None:
        late = evidence.late
        text += (f" Slower or worse: over the last {late.epochs_fitted} epochs the plain-{deep} training error "
                 f"{'still falls' if late.still_improving else 'has levelled off'} "
                 f"({_points(late.plain_slope_per_epoch, signed=True)} points per epoch), and its gap to residual-{deep} "
                 f"{'is closing' if late.gap_closing else 'is not closing'} ({_points(late.gap_then)} -> {_points(late.gap_end)})"
                 + ("; the plain nets may be slower rather than worse." if late.still_improving and late.gap_closing else "."))
    return text


EXPLANATIONS = {
    "supported": "plain nets degrade with depth, residual nets do not",
    "plain_unsettled": "whether plain nets degrade is not settled: the interval of their rise straddles the tolerance; more seeds would tell",
    "plain_holds": "plain nets do not degrade with depth here, so these depths/budget show no problem for residual connections to fix",
    "residual_degrades": "residual nets degrade with depth about as much as plain nets",
}


def depth_reason(evidence: DepthEvidence, key: str, scenarios: dict[str, str], flips: bool) -> str:
    """The verdict's text, from the numbers."""
    if key == "no_family":
        lacking = " and ".join(sorted({"plain", "residual"} - {c.family for c in evidence.cells}))
        return f"no {lacking} runs to compare with."
    counts = counts_text(evidence)
    if key == "few_depths":
        return (f"plain and residual nets share {len(evidence.depths)} depth(s) with finished runs "
                f"({', '.join(map(str, evidence.depths)) or 'none'}); at least 2 are needed. {counts}"
                + (f" Runs without an outcome: {', '.join(u for c in evidence.cells for u in c.unresolved)}."
                   if any(c.unresolved for c in evidence.cells) else ""))
    if key == "did_not_train":
        shallow = evidence.depths[0]
        errors = ", ".join(f"{f} {_pct(evidence.cell(f, shallow).mean)}" for f in ("plain", "residual"))
        return (f"the shallowest nets (depth {shallow}) did not train: training error {errors}, above the floor of "
                f"{_pct(evidence.trained_floor)} ({TRAINED_FRACTION_OF_CHANCE:g} x chance error 1 - 1/{round(1 / (1 - evidence.chance_error))}"
                f" = {_pct(evidence.chance_error)}). The training budget is too small to say anything about depth. {counts}")
    facts = facts_text(evidence)
    if key == "few_seeds":
        reason = (f"seed-to-seed spread unknown (only {evidence.min_seeds} seed at some compared depth; "
                  f"{MIN_SEEDS} are needed), so no rise can be called real. Observed: {facts}")
    elif key == "partial":
        residual_part = ("not shown at this budget -- their error also rises, though by at most "
                         f"{PARTIAL_RISE_FRACTION:g}x the plain rise, which is what nets that have not yet converged look like; train longer to tell"
                         if evidence.residual.state == "rises" else
                         "not settled -- the interval of their rise straddles the tolerance; more seeds would tell")
        reason = (f"partially supported. Degradation of plain nets: supported. Residual nets avoiding it (no rise with depth): "
                  f"{residual_part}. {facts[0].upper()}{facts[1:]}")
    else:
        reason = f"{EXPLANATIONS[key]}: {facts}"
    unresolved = ", ".join(evidence.unresolved)
    if flips:
        outcomes = ", ".join(f"'{VERDICT_OF[k]}' if they go {name} the claim" for name, k in scenarios.items())
        reason = (f"{len(evidence.unresolved)} run(s) without an outcome could change the verdict: {unresolved}. "
                  f"Filled in as diverged or as good as the best seed of their cell: {outcomes}. "
                  f"As observed ('{VERDICT_OF[key]}'): {reason}")
    elif unresolved:
        reason += f" {len(evidence.unresolved)} run(s) without an outcome ({unresolved}) cannot change the verdict."
    return f"{reason} {counts}"

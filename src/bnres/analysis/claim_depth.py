"""Claim 2 -- residual connections let networks go deeper where plain nets degrade."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bnres.analysis.verdict_text import *  # noqa
from bnres.analysis.verdict_text import _depth_scope, _fmt, _groups, _pct, _points, _times
from bnres.runs.record import FINISHED

# Claim 2: residual connections and depth

#: columns that identify one depth comparison (everything but model, depth and seed matched)
DEPTH_KEYS = ["data", "family", "bn", "bn_label", "lr", "max_epochs"]


def depth_sweep_candidates(runs: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Plain/residual comparisons: runs of one architecture style and setting, both families.

    Sorted by the number of depths both families share, then by run count.
    """
    twins = runs[runs["family"].notna()]
    candidates = []
    for key, group in _groups(twins, DEPTH_KEYS):
        plain_depths = set(group.loc[~group["residual"], "depth"].dropna())
        residual_depths = set(group.loc[group["residual"], "depth"].dropna())
        candidates.append((key, group, len(plain_depths & residual_depths)))
    candidates.sort(key=lambda kgn: (-kgn[2], -len(kgn[1])))
    return [(key, group) for key, group, _ in candidates]


def claim_residual_depth(runs: pd.DataFrame, margin: float = DEFAULT_ERROR_MARGIN, relative_margin: float = DEFAULT_RELATIVE_MARGIN) -> Verdict:
    """Verdict on claim 2 for the best-covered plain/residual depth comparison in ``runs``."""
    candidates = depth_sweep_candidates(runs)
    if not candidates:
        return Verdict(
            CLAIM2_ID, INCONCLUSIVE,
            "no plain/residual runs (models plain_*/resnet_*) in the given sweeps.",
            {"margin": margin},
        )
    key, group = candidates[0]
    return claim_residual_depth_for(group, margin, scope=_depth_scope(key), relative_margin=relative_margin)


def depth_summary(group: pd.DataFrame) -> pd.DataFrame:
    """Per (family, depth): seeds used, mean/min/max final training error, runs left out."""
    rows = []
    for (residual, depth), at_depth in group.groupby(["residual", "depth"]):
        usable = at_depth[(at_depth["status"] == "completed") & at_depth["train_error"].notna()]
        errors = usable["train_error"]
        rows.append({
            "family": "residual" if residual else "plain",
            "model_name": ", ".join(sorted(at_depth["model_name"].dropna().unique())),
            "depth": int(depth),
            "seeds": len(usable),
            "mean_train_error": errors.mean() if len(errors) else math.nan,
            "min_train_error": errors.min() if len(errors) else math.nan,
            "max_train_error": errors.max() if len(errors) else math.nan,
            "spread": (errors.max() - errors.min()) if len(errors) >= 2 else math.nan,
            "diverged": int((at_depth["status"] == "diverged").sum()),
            "missing": int((~at_depth["status"].isin(FINISHED)).sum()),
        })
    return pd.DataFrame(rows)


def claim_residual_depth_for(
    group: pd.DataFrame,
    margin: float = DEFAULT_ERROR_MARGIN,
    scope: str = "",
    relative_margin: float = DEFAULT_RELATIVE_MARGIN,
) -> Verdict:
    """Verdict on claim 2 for one plain/residual comparison (matched setting, several depths).

    Per family, the rise of the mean final training error from the shallowest to the deepest depth, with a
    95% bootstrap interval over seeds. The rise is real when the whole interval lies above the tolerance
    ``max(margin, relative_margin x error at the shallowest depth)``, absent when it lies at or below it,
    and unsettled when it straddles it.
    """
    numbers: dict[str, Any] = {"margin": margin, "relative_margin": relative_margin}
    summary = depth_summary(group)
    table = summary.to_dict("records")

    def verdict(v: str, reason: str) -> Verdict:
        return Verdict(CLAIM2_ID, v, reason, numbers, scope=scope, table=table)

    families = set(summary["family"]) if len(summary) else set()
    if families != {"plain", "residual"}:
        lacking = " and ".join(sorted({"plain", "residual"} - families))
        return verdict(INCONCLUSIVE, f"no {lacking} runs to compare with.")
    usable = summary[summary["seeds"] > 0]
    plain = usable[usable["family"] == "plain"].set_index("depth")
    residual = usable[usable["family"] == "residual"].set_index("depth")
    depths = sorted(set(plain.index) & set(residual.index))
    numbers["depths"] = ", ".join(str(d) for d in depths)
    if len(depths) < 2:
        return verdict(INCONCLUSIVE, f"plain and residual nets share {len(depths)} depth(s) with finished runs ({numbers['depths'] or 'none'}); at least 2 are needed.")

    shallow, deep = depths[0], depths[-1]
    numbers |= {"shallowest_depth": shallow, "deepest_depth": deep}
    errors = _seed_errors(group)
    rise, tolerance, interval, state = {}, {}, {}, {}
    for name, fam in (("plain", plain), ("residual", residual)):
        numbers[f"{name}_error_at_{shallow}"] = fam.at[shallow, "mean_train_error"]
        numbers[f"{name}_error_at_{deep}"] = fam.at[deep, "mean_train_error"]
        rise[name] = fam.at[deep, "mean_train_error"] - fam.at[shallow, "mean_train_error"]
        interval[name] = bootstrap_mean_difference(errors[name == "residual", shallow], errors[name == "residual", deep])
        # the bar scales with the error level: a 1-point rise means little at 40% error, a lot at 2%
        tolerance[name] = max(margin, relative_margin * fam.at[shallow, "mean_train_error"])
        low, high = interval[name]
        state[name] = "rises" if low > tolerance[name] else "holds" if high <= tolerance[name] else "unsettled"
        numbers |= {f"{name}_error_rise": rise[name], f"{name}_rise_low": low, f"{name}_rise_high": high,
                    f"{name}_tolerance": tolerance[name]}
    plain_deep, residual_deep = plain.at[deep, "mean_train_error"], residual.at[deep, "mean_train_error"]
    numbers["error_ratio_plain_over_residual_at_deepest"] = plain_deep / residual_deep if residual_deep > 0 else math.inf
    deep_low, _ = bootstrap_mean_difference(errors[True, deep], errors[False, deep])  # plain minus residual
    residual_better_deep = deep_low > max(margin, relative_margin * residual_deep)
    if rise["residual"] > 0:
        numbers["rise_ratio_plain_over_residual"] = rise["plain"] / rise["residual"]

    def family_text(name: str, fam: pd.DataFrame) -> str:
        low, high = interval[name]
        return (f"{name} nets' training error {'rises' if rise[name] >= 0 else 'falls'} by {_points(abs(rise[name]))} "
                f"[{_points(low, signed=True)}, {_points(high, signed=True)}] ({_pct(fam.at[shallow, 'mean_train_error'])} -> "
                f"{_pct(fam.at[deep, 'mean_train_error'])}; tolerance {_points(tolerance[name])})")

    comparison = ""
    if rise["plain"] > 0 and rise["residual"] > 0:
        comparison = f": {_times(rise['plain'] / rise['residual'])}x less for residual nets"
    elif rise["plain"] > 0:
        comparison = ": residual nets do not get worse at all"
    facts = (
        f"from depth {shallow} to {deep}, {family_text('plain', plain)}; {family_text('residual', residual)}{comparison}. "
        f"At depth {deep}: residual {_pct(residual_deep)} vs plain {_pct(plain_deep)}"
        + (f" ({_times(numbers['error_ratio_plain_over_residual_at_deepest'])}x lower)." if residual_better_deep else ".")
    )
    diverged = int(summary["diverged"].sum())
    if diverged:
        facts += f" {diverged} diverged run(s) are left out of the means."

    min_seeds = int(min(fam.at[d, "seeds"] for fam in (plain, residual) for d in (shallow, deep)))
    numbers["min_seeds_per_depth"] = min_seeds
    if min_seeds < 2:
        return verdict(INCONCLUSIVE, f"seed-to-seed spread unknown (only {min_seeds} seed at some compared depth), so no rise can be called real. Observed: {facts}")
    facts += (f" Brackets: 95% bootstrap interval of the rise over seeds ({min_seeds} or more per depth"
              + ("; with so few seeds it is little more than the range of the seed means" if min_seeds < 4 else "")
              + f"). A rise counts when its whole interval exceeds the tolerance, max({_points(margin)}, "
              f"{relative_margin:g} x the error at depth {shallow}).")

    numbers |= {"plain_degrades": state["plain"] == "rises", "residual_holds": state["residual"] == "holds",
                "residual_better_at_deepest": bool(residual_better_deep)}
    if state["plain"] == "rises" and state["residual"] == "holds":
        return verdict(SUPPORTED, f"plain nets degrade with depth, residual nets do not: {facts}")
    if state["plain"] == "rises" and rise["residual"] <= PARTIAL_RISE_FRACTION * rise["plain"] and residual_better_deep:
        residual_part = ("not shown at this budget -- their error also rises, though by at most "
                         f"{PARTIAL_RISE_FRACTION:g}x the plain rise, which is what nets that have not yet converged look like; train longer to tell"
                         if state["residual"] == "rises" else
                         "not settled -- the interval of their rise straddles the tolerance; more seeds would tell")
        return verdict(INCONCLUSIVE, f"partially supported. Degradation of plain nets: supported. Residual nets avoiding it (no rise with depth): {residual_part}. {facts[0].upper()}{facts[1:]}")
    if state["plain"] == "unsettled":
        return verdict(INCONCLUSIVE, f"whether plain nets degrade is not settled: the interval of their rise straddles the tolerance; more seeds would tell. {facts[0].upper()}{facts[1:]}")
    if state["plain"] == "holds":
        return verdict(NOT_SUPPORTED, f"plain nets do not degrade with depth here, so these depths/budget show no problem for residual connections to fix: {facts}")
    return verdict(NOT_SUPPORTED, f"residual nets degrade with depth about as much as plain nets: {facts}")


def _seed_errors(group: pd.DataFrame) -> dict[tuple[bool, int], list[float]]:
    """(residual, depth) -> final training errors of the completed runs, one per seed."""
    usable = group[(group["status"] == "completed") & group["train_error"].notna()]
    errors: dict[tuple[bool, int], list[float]] = {}
    for (residual, depth), at in usable.groupby(["residual", "depth"]):
        errors[bool(residual), int(depth)] = [float(e) for e in at["train_error"]]
    return errors


def bootstrap_mean_difference(a: list[float], b: list[float], resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """95% percentile-bootstrap interval of mean(b) - mean(a), resampling each list's seeds with replacement.

    A fixed generator: the same records always give the same interval.
    """
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    a_means = rng.choice(np.asarray(a, dtype=float), size=(resamples, len(a))).mean(axis=1)
    b_means = rng.choice(np.asarray(b, dtype=float), size=(resamples, len(b))).mean(axis=1)
    low, high = np.percentile(b_means - a_means, [2.5, 97.5])
    return float(low), float(high)


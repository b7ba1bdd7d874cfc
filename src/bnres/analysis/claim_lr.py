"""Claim 1 -- batch norm lets a network train at much larger learning rates."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bnres.analysis.verdict_text import (
    ARCH_KEYS, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CLAIM1_ID, DEFAULT_ACC_THRESHOLD, DEFAULT_MIN_LR_RATIO,
    INCONCLUSIVE, MIN_SEEDS, NOT_SUPPORTED, PREFERRED_IMPL, PREFERRED_PLACEMENT, SUPPORTED, Verdict,
    _arch_scope, _fmt, _groups, _matches, _pick, _times,
)
from bnres.runs.record import FINISHED

def run_trains(runs: pd.DataFrame, acc_threshold: float = DEFAULT_ACC_THRESHOLD) -> pd.Series:
    """Per run: did it train (not diverged, finite final training loss, val acc >= threshold)?"""
    loss_finite = runs["final_train_loss"].map(lambda v: isinstance(v, float) and math.isfinite(v))
    acc = runs["final_val_acc"]
    return (runs["status"] == "completed") & loss_finite & acc.notna() & (acc >= acc_threshold)


def lr_sweep_candidates(runs: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Architectures with an LR sweep: both BN and no-BN runs and at least two learning rates.

    Returns ``(key, runs)`` pairs, largest sweep first. ``key`` holds the :data:`ARCH_KEYS`.
    """
    candidates = []
    for key, group in _groups(runs, ARCH_KEYS):
        has_both = group["bn"].any() and (~group["bn"]).any()
        if has_both and group["lr"].nunique() >= 2:
            candidates.append((key, group))
    candidates.sort(key=lambda kg: (-kg[1]["lr"].nunique(), -len(kg[1])))
    return candidates


def select_lr_sweep_runs(group: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The runs of one architecture that claim 1 compares: no-BN runs and one BN variant.

    Where BN runs come in several placements or implementations (a placement sweep that shares
    the architecture), the variant covering the most learning rates is used, preferring the
    default placement, so every seed at every LR is the same network.
    """
    bn_runs = group[group["bn"]]
    note = ""
    if len(bn_runs):
        placement = _pick(bn_runs, "bn_placement", PREFERRED_PLACEMENT)
        bn_runs = bn_runs[_matches(bn_runs["bn_placement"], placement)]
        impl = _pick(bn_runs, "bn_impl", PREFERRED_IMPL)
        bn_runs = bn_runs[_matches(bn_runs["bn_impl"], impl)]
        note = f"BN placement {placement}" + (f", bn_impl {impl}" if impl is not None else "")
    return pd.concat([group[~group["bn"]], bn_runs]), note


def claim_bn_lr(
    runs: pd.DataFrame,
    acc_threshold: float = DEFAULT_ACC_THRESHOLD,
    min_ratio: float = DEFAULT_MIN_LR_RATIO,
    model_name: str | None = None,
) -> Verdict:
    """Verdict on claim 1 for one architecture (the largest LR sweep, or ``model_name``'s)."""
    pool = runs if model_name is None else runs[runs["model_name"] == model_name]
    candidates = lr_sweep_candidates(pool)
    if candidates:
        key, group = candidates[0]
    elif len(pool):
        # no architecture has a full BN/no-BN LR sweep: explain what the biggest one lacks
        (key, group), *_ = sorted(_groups(pool, ARCH_KEYS), key=lambda kg: -len(kg[1]))
    else:
        what = f"model {model_name}" if model_name else "the given sweeps"
        return Verdict(CLAIM1_ID, INCONCLUSIVE, f"no runs for {what}.", {"acc_threshold": acc_threshold, "min_ratio": min_ratio})
    return claim_bn_lr_for(group, acc_threshold, min_ratio, scope=_arch_scope(key))


def claim_bn_lr_for(
    group: pd.DataFrame,
    acc_threshold: float = DEFAULT_ACC_THRESHOLD,
    min_ratio: float = DEFAULT_MIN_LR_RATIO,
    scope: str = "",
) -> Verdict:
    """Verdict on claim 1 for the runs of one architecture (BN and no-BN, several LRs, seeds)."""
    subset, variant = select_lr_sweep_runs(group)
    scope = ", ".join(s for s in (scope, variant) if s)
    numbers: dict[str, Any] = {"acc_threshold": acc_threshold, "min_ratio": min_ratio}

    outcomes = {}  # bn -> per-LR outcome table
    for bn in (True, False):
        outcomes[bn] = _lr_outcomes(subset[subset["bn"] == bn], acc_threshold, set(subset["seed"].dropna()))
    table = _claim1_table(outcomes)
    n_missing = int(sum(o["missing"].sum() for o in outcomes.values() if len(o)))
    seeds = sorted({int(s) for s in subset["seed"].dropna()})
    numbers |= {"seeds": len(seeds), "missing_runs": n_missing}

    # as observed: an LR counts when every finished seed there trains
    observed = _decide_claim1(_ok(outcomes[True], "observed"), _ok(outcomes[False], "observed"), min_ratio)
    numbers |= observed["numbers"]
    verdict, reason = observed["verdict"], observed["reason"]

    if n_missing:
        # the extremes of the ratio: missing BN runs train & missing no-BN runs fail, and vice versa
        best = _decide_claim1(_ok(outcomes[True], "optimistic"), _ok(outcomes[False], "pessimistic"), min_ratio)
        worst = _decide_claim1(_ok(outcomes[True], "pessimistic"), _ok(outcomes[False], "optimistic"), min_ratio)
        where = _missing_where(outcomes)
        if best["verdict"] == worst["verdict"]:
            if verdict != worst["verdict"]:  # e.g. a grid top that only missing runs reached
                verdict = worst["verdict"]
                numbers |= worst["numbers"]
                reason = worst["reason"] + " (Counting missing BN runs as failed and missing no-BN runs as trained.)"
            reason += f" ({n_missing} run(s) missing at {where}; they cannot change the verdict.)"
        else:
            verdict = INCONCLUSIVE
            reason = (
                f"{n_missing} run(s) missing (running, failed or never run) at {where}, and the verdict "
                f"depends on them: if the missing BN runs train and the no-BN ones fail it would be "
                f"'{best['verdict']}', in the opposite case '{worst['verdict']}'. As observed so far: {reason}"
            )
    # expected seeds per cell: finished plus missing ones (those are weighed above)
    min_cell_seeds = int(min((o["expected"].min() for o in outcomes.values() if len(o)), default=0))
    numbers["min_seeds_per_cell"] = min_cell_seeds
    if verdict == SUPPORTED and min_cell_seeds < MIN_SEEDS:
        verdict = INCONCLUSIVE
        reason = (f"only {min_cell_seeds} seed at some (BN, LR) cell; {MIN_SEEDS} are needed in every cell before "
                  f"'every seed trains' means anything. Observed: {reason}")
    elif len(seeds) > 1 and numbers.get("lr_ratio"):
        boot = bootstrap_lr_ratio(subset, acc_threshold, min_ratio)
        numbers |= boot
        if boot.get("lr_ratio_low") is not None:
            reason += (
                f" Over seeds (bootstrap, {BOOTSTRAP_RESAMPLES} resamples of the {len(seeds)} seeds, max stable LRs "
                f"recomputed on each): ratio {_fmt(boot['lr_ratio_low'])}x to {_fmt(boot['lr_ratio_high'])}x (95%), "
                f">= {_fmt(min_ratio)}x in {100 * boot['lr_ratio_share_at_least_min']:.0f}% of resamples"
                + (" -- with so few seeds this shows which single seeds the ratio hangs on, not a confidence interval."
                   if len(seeds) < 4 else ".")
            )
    counts = {what: int(sum(o[what].sum() for o in outcomes.values() if len(o)))
              for what in ("trained", "finished", "diverged", "failed", "missing")}
    numbers |= {f"{what}_runs": n for what, n in counts.items() if what != "missing"}
    reason += (f" Runs: {counts['finished']} finished ({counts['trained']} trained, {counts['diverged']} diverged), "
               f"{counts['failed']} failed or unfinished, {counts['missing'] - counts['failed']} missing (a seed run elsewhere in the sweep "
               f"but not in that cell).")
    return Verdict(CLAIM1_ID, verdict, reason, numbers, scope=scope, table=table)


def bootstrap_lr_ratio(subset: pd.DataFrame, acc_threshold: float, min_ratio: float,
                       resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """Bootstrap over seeds of max stable LR(BN) / max stable LR(no BN).

    Each resample draws, per setting, as many seeds as were run, with replacement, and recomputes the
    max stable LR from those seeds' finished runs ("every drawn seed trains"). Returns the 95% interval
    of the ratio and the share of resamples where it reaches ``min_ratio`` (None where a net never trains).
    """
    done = subset[subset["status"].isin(FINISHED) & subset["seed"].notna()]
    done = done.assign(trains=run_trains(done, acc_threshold))
    lrs = np.array(sorted(done["lr"].unique()), dtype=float)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    best = {}
    for bn in (True, False):
        setting = done[done["bn"] == bn]
        seeds = sorted(setting["seed"].unique())
        # seeds x LRs: 1 trains, 0 does not, nan not run (a seed with several records must train in all)
        grid = np.full((len(seeds), len(lrs)), np.nan)
        for (seed, lr), at in setting.groupby(["seed", "lr"]):
            grid[seeds.index(seed), int(np.searchsorted(lrs, lr))] = float(at["trains"].all())
        drawn = grid[rng.integers(0, len(seeds), size=(resamples, len(seeds)))]  # resamples x seeds x LRs
        present = ~np.isnan(drawn).all(axis=1)
        ok = present & (np.nan_to_num(drawn, nan=1.0) == 1.0).all(axis=1)
        best[bn] = np.where(ok.any(axis=1), np.where(ok, lrs, -np.inf).max(axis=1), np.nan)
    ratio = best[True] / best[False]
    ratio = ratio[np.isfinite(ratio)]
    if not len(ratio):
        return {"lr_ratio_low": None, "lr_ratio_high": None, "lr_ratio_share_at_least_min": None}
    low, high = np.percentile(ratio, [2.5, 97.5])
    return {"lr_ratio_low": float(low), "lr_ratio_high": float(high),
            "lr_ratio_share_at_least_min": float((ratio >= min_ratio * (1 - 1e-9)).mean()) * len(ratio) / resamples}


def _lr_outcomes(setting: pd.DataFrame, acc_threshold: float, sweep_seeds: set) -> pd.DataFrame:
    """Per LR of one BN setting: seeds expected, finished, trained, missing, mean metrics."""
    columns = ["lr", "expected", "finished", "trained", "missing", "failed", "diverged", "mean_val_acc", "mean_train_loss"]
    if setting.empty:
        return pd.DataFrame(columns=columns)
    setting = setting.assign(trains=run_trains(setting, acc_threshold))
    rows = []
    for lr, at_lr in setting.groupby("lr"):
        done = at_lr[at_lr["status"].isin(FINISHED)]
        # missing: records at this LR that have not finished (running, failed), unless the same
        # seed also has a finished record here (a rerun)
        unfinished = at_lr[~at_lr["status"].isin(FINISHED)]
        done_seeds = set(done["seed"].dropna())
        failed = sum(1 for seed in unfinished["seed"] if pd.isna(seed) or seed not in done_seeds)
        absent = len(sweep_seeds - set(at_lr["seed"].dropna()))
        missing = failed + absent  # both could go either way; "failed" keeps the unfinished share
        expected = len(done) + missing
        rows.append({
            "lr": float(lr),
            "expected": expected,
            "finished": len(done),
            "trained": int(done["trains"].sum()),
            "missing": missing,
            "failed": failed,
            "diverged": int((done["status"] == "diverged").sum()),
            "mean_val_acc": done["final_val_acc"].mean(),
            "mean_train_loss": done["final_train_loss"].replace([math.inf, -math.inf], math.nan).mean(),
        })
    return pd.DataFrame(rows, columns=columns).sort_values("lr").reset_index(drop=True)


def _ok(outcome: pd.DataFrame, scenario: str) -> dict[float, bool]:
    """LR -> did every seed train, with missing runs ignored / assumed trained / assumed failed."""
    result = {}
    for row in outcome.itertuples():
        failed = row.finished - row.trained
        if scenario == "observed":
            if row.finished:
                result[row.lr] = failed == 0
        elif scenario == "optimistic":
            result[row.lr] = failed == 0
        else:  # pessimistic
            result[row.lr] = failed == 0 and row.missing == 0
    return result


def _decide_claim1(bn_ok: dict[float, bool], nobn_ok: dict[float, bool], min_ratio: float) -> dict[str, Any]:
    """Verdict from per-LR "every seed trains" flags of both settings."""
    numbers: dict[str, Any] = {}

    def out(verdict: str, reason: str) -> dict[str, Any]:
        return {"verdict": verdict, "reason": reason, "numbers": numbers}

    if not bn_ok or not nobn_ok:
        missing = " and ".join(name for name, ok in (("BN", bn_ok), ("no-BN", nobn_ok)) if not ok)
        return out(INCONCLUSIVE, f"no finished {missing} runs, so there is nothing to compare.")
    lrs_tried = sorted(set(bn_ok) | set(nobn_ok))
    numbers["lrs_tried"] = ", ".join(_fmt(lr) for lr in lrs_tried)
    if len(lrs_tried) < 2:
        return out(INCONCLUSIVE, f"only one learning rate ({_fmt(lrs_tried[0])}) was tried; a max stable LR needs a sweep.")

    stable, gaps, next_above = {}, [], {}
    for name, ok in (("bn", bn_ok), ("nobn", nobn_ok)):
        top = max(ok)
        best = contiguous_max(ok)
        # an LR that trains above a failing one is reported, not taken as the max: the range is broken
        above = [lr for lr in sorted(ok) if best is None or lr > best]
        next_above[name] = above[0] if above else None
        trained_above = [lr for lr in above if ok[lr]]
        if trained_above:
            gaps.append(f"{'BN' if name == 'bn' else 'no BN'} fails at {_fmt(above[0])} but trains again at "
                        f"{', '.join(_fmt(lr) for lr in trained_above)}")
        numbers[f"{name}_trains_above_gap"] = ", ".join(_fmt(lr) for lr in trained_above)
        stable[name] = (best, best is not None and best == top, top)
        numbers[f"{name}_max_stable_lr"] = best
        numbers[f"{name}_max_stable_lr_is_lower_bound"] = bool(best is not None and best == top)
        numbers[f"{name}_largest_lr_tried"] = top
    (bn_max, bn_lower, bn_top), (nb_max, nb_lower, _) = stable["bn"], stable["nobn"]

    if bn_max is None:
        return out(INCONCLUSIVE, f"the BN net never trains (val acc never >= threshold for every seed at any LR up to {_fmt(bn_top)}); the training budget is too small (or the threshold too strict) to test the claim.")
    if nb_max is None:
        return out(
            INCONCLUSIVE,
            f"the no-BN net never trains at any LR tried (smallest {_fmt(min(nobn_ok))}), so its max stable LR is unknown; "
            f"BN trains up to {_fmt(bn_max)}. Try smaller LRs or a longer budget for the no-BN net.",
        )
    ratio = bn_max / nb_max
    numbers["lr_ratio"] = ratio
    # the grid bounds the true ratio: each true max lies below the next LR tried above the observed one
    grid_low = bn_max / next_above["nobn"] if next_above["nobn"] else 0.0
    grid_high = next_above["bn"] / nb_max if next_above["bn"] else math.inf
    numbers |= {"lr_ratio_grid_low": grid_low, "lr_ratio_grid_high": grid_high}
    grid_text = (f" The LR grid allows a true ratio between {_times(grid_low)}x and "
                 + (f"{_times(grid_high)}x" if math.isfinite(grid_high) else "no upper bound") + ".")
    gap_text = (" Gap in the trained range: " + "; ".join(gaps) + " (the max stable LR is the top of the range "
                "that trains from the smallest LR up).") if gaps else ""
    # the data bound the true ratio: a max stable LR that is the largest LR tried may be higher
    ratio_low = 0.0 if nb_lower else bn_max / nb_max
    ratio_high = math.inf if bn_lower else bn_max / nb_max
    facts = (
        f"max stable LR with BN {_fmt(bn_max)}{' (the largest LR tried: a lower bound)' if bn_lower else ''}, "
        f"without BN {_fmt(nb_max)}{' (the largest LR tried: a lower bound)' if nb_lower else ''}; "
        f"ratio {_fmt(ratio)}{' or more' if bn_lower and not nb_lower else ''} (required: >= {_fmt(min_ratio)})."
        + grid_text + gap_text
    )
    # LR grids are decimal (0.1 / 0.3 * 9 = 2.999...): compare with a tiny relative tolerance
    required = min_ratio * (1 - 1e-9)
    if ratio_low >= required:
        return out(SUPPORTED, f"BN trains at a {_fmt(ratio)}x{' (at least)' if bn_lower else ''} larger learning rate: {facts}")
    if ratio_high < required:
        return out(NOT_SUPPORTED, f"BN does not train at a {_fmt(min_ratio)}x larger learning rate: {facts}")
    if bn_lower and nb_lower:
        why = "both nets train at the largest LR tried, so neither max stable LR is known; extend the LR grid upwards"
    elif bn_lower:
        why = "the BN net still trains at the largest LR tried, so its max stable LR is only a lower bound; extend the LR grid upwards"
    else:
        why = "the no-BN net still trains at its largest LR tried, so its max stable LR is only a lower bound; run it at larger LRs"
    return out(INCONCLUSIVE, f"{why}. {facts}")


def contiguous_max(ok: dict[float, bool]) -> float | None:
    """The largest LR of the unbroken run of trained LRs that starts at the smallest LR tried."""
    best = None
    for lr in sorted(ok):
        if not ok[lr]:
            break
        best = lr
    return best


def _claim1_table(outcomes: dict[bool, pd.DataFrame]) -> list[dict[str, Any]]:
    rows = []
    for bn, outcome in outcomes.items():
        for row in outcome.itertuples():
            rows.append({
                "setting": "BN" if bn else "no BN",
                "lr": row.lr,
                "trained / finished": f"{row.trained}/{row.finished}",
                "diverged": row.diverged,
                "missing": row.missing,
                "mean val acc": row.mean_val_acc,
                "mean final train loss": row.mean_train_loss,
            })
    return rows


def _missing_where(outcomes: dict[bool, pd.DataFrame]) -> str:
    places = []
    for bn, outcome in outcomes.items():
        for row in outcome.itertuples():
            if row.missing:
                places.append(f"{'BN' if bn else 'no BN'} lr={_fmt(row.lr)} ({row.missing})")
    return ", ".join(places)


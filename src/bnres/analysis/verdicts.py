"""Verdicts on the two claims, computed from the runs table (never asserted).

Claim 1 -- batch norm lets a network train at much larger learning rates.
    A run *trains* when it did not diverge, its final training loss is finite and its final
    validation accuracy reaches ``acc_threshold``. (At too high a learning rate training often
    does not blow up to NaN: the loss sits at ln(10) ~ 2.30 with chance accuracy, so the
    accuracy test matters.) A setting's *max stable LR* is the largest LR at which every seed
    trains. The claim is supported when max stable LR(BN) / max stable LR(no BN) >= ``min_ratio``.
    Where a max stable LR is the largest LR tried, it is only a lower bound; the verdict then
    uses the interval of ratios the data allows and is inconclusive when that interval
    straddles ``min_ratio``. Missing runs (records still running, or failed) are treated the
    same way: the verdict stands only if it is the same whether they would train or not.

Claim 2 -- residual connections let networks go deeper where plain nets degrade.
    Per family (plain vs residual, same architecture style, matched depths) the mean final
    training error over seeds is compared between the shallowest and the deepest depth.
    A rise counts when it exceeds ``max(seed range at either depth, margin)``. Supported when
    the plain net's error rises and the residual net's does not. When both rise but the
    residual rise is much smaller (at most half) and the residual net is clearly better at
    the deepest depth, the verdict is inconclusive, stating what is and is not shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bnres.runs.record import FINISHED

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)

#: final validation accuracy a run must reach to count as "trains" (10 classes: chance is 0.1)
DEFAULT_ACC_THRESHOLD = 0.5
#: BN must reach this multiple of the no-BN max stable LR; 3 is one half-decade step on the
#: usual log grid (0.01, 0.03, 0.1, ...), i.e. the smallest gap a half-decade grid can resolve
DEFAULT_MIN_LR_RATIO = 3.0
#: smallest change in training error (absolute) that counts as a rise, whatever the error level
DEFAULT_ERROR_MARGIN = 0.005
#: ... and the share of the error at the shallowest depth a rise must exceed: the bar scales with the
#: error level (2.4% -> 3.6% is half as much error again, not "within 2 points")
DEFAULT_RELATIVE_MARGIN = 0.25
#: seed resamples of the bootstrap intervals (fixed generator seed: same records, same intervals)
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
#: a residual rise at most this fraction of the plain rise counts as "much smaller"
PARTIAL_RISE_FRACTION = 0.5

CLAIM1_ID = "claim1_bn_lr"
CLAIM2_ID = "claim2_residual_depth"
CLAIM1_TITLE = "Claim 1: batch norm lets a network train at much larger learning rates"
CLAIM2_TITLE = "Claim 2: residual connections let networks go deeper where plain nets degrade"

#: columns that identify one architecture/budget (runs that differ only in lr/bn/seed)
ARCH_KEYS = ["data", "model_name", "depth", "max_epochs"]
PREFERRED_PLACEMENT = "before_activation"
PREFERRED_IMPL = "torch"


@dataclass
class Verdict:
    """The outcome of testing one claim on one set of runs."""

    claim: str  # CLAIM1_ID or CLAIM2_ID
    verdict: str  # one of VERDICTS
    reason: str  # why, with the numbers that decided it
    numbers: dict[str, Any] = field(default_factory=dict)
    scope: str = ""  # which runs were used (model, data, budget, ...)
    title: str = ""
    #: per-LR or per-depth table behind the verdict (rows of plain dicts)
    table: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if not self.title:
            self.title = {CLAIM1_ID: CLAIM1_TITLE, CLAIM2_ID: CLAIM2_TITLE}.get(self.claim, self.claim)
        # plain Python numbers (not numpy scalars), so verdicts serialize with json
        self.numbers = _plain(self.numbers)
        self.table = _plain(self.table)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return {"claim": self.claim, "title": self.title, "verdict": self.verdict, "reason": self.reason,
                "scope": self.scope, "numbers": self.numbers, "table": self.table}

    def summary(self) -> str:
        """Plain-text summary for terminals."""
        lines = [self.title, f"  verdict: {self.verdict.upper()}"]
        if self.scope:
            lines.append(f"  runs:    {self.scope}")
        lines.append(f"  why:     {self.reason}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """Markdown section: verdict, reason, key numbers and the table behind them."""
        parts = [f"## {self.title}", "", f"**Verdict: {self.verdict.upper()}**", ""]
        if self.scope:
            parts += [f"Runs: {self.scope}", ""]
        parts += [self.reason, ""]
        scalars = {k: v for k, v in self.numbers.items() if not isinstance(v, (dict, list))}
        if scalars:
            parts += ["| number | value |", "|---|---|"]
            parts += [f"| {key} | {_fmt(value)} |" for key, value in scalars.items()]
            parts.append("")
        if self.table:
            parts += [pd.DataFrame(self.table).to_markdown(index=False, floatfmt=".4g"), ""]
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------------------------
# Claim 1: batch norm and learning rate


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
        outcomes[bn] = _lr_outcomes(subset[subset["bn"] == bn], acc_threshold)
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
    if len(seeds) == 1 and verdict != INCONCLUSIVE:
        reason += " Only one seed was run, so 'every seed trains' rests on a single run per LR."
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


def _lr_outcomes(setting: pd.DataFrame, acc_threshold: float) -> pd.DataFrame:
    """Per LR of one BN setting: seeds expected, finished, trained, missing, mean metrics."""
    columns = ["lr", "expected", "finished", "trained", "missing", "diverged", "mean_val_acc", "mean_train_loss"]
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
        missing = sum(1 for seed in unfinished["seed"] if pd.isna(seed) or seed not in done_seeds)
        expected = len(done) + missing
        rows.append({
            "lr": float(lr),
            "expected": expected,
            "finished": len(done),
            "trained": int(done["trains"].sum()),
            "missing": missing,
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

    stable = {}
    for name, ok in (("bn", bn_ok), ("nobn", nobn_ok)):
        trained_lrs = [lr for lr, good in ok.items() if good]
        top = max(ok)
        best = max(trained_lrs) if trained_lrs else None
        stable[name] = (best, best is not None and best == top, top)
        numbers[f"{name}_max_stable_lr"] = best
        numbers[f"{name}_max_stable_lr_is_lower_bound"] = bool(best is not None and best == top)
        numbers[f"{name}_largest_lr_tried"] = top
    (bn_max, bn_lower, bn_top), (nb_max, nb_lower, _) = stable["bn"], stable["nobn"]

    if bn_max is None:
        return out(INCONCLUSIVE, f"the BN net never trains (val acc never >= threshold for every seed at any LR up to {_fmt(bn_top)}); the budget or threshold may be too strict.")
    if nb_max is None:
        return out(
            INCONCLUSIVE,
            f"the no-BN net never trains at any LR tried (smallest {_fmt(min(nobn_ok))}), so its max stable LR is unknown; "
            f"BN trains up to {_fmt(bn_max)}. Try smaller LRs or a longer budget for the no-BN net.",
        )
    ratio = bn_max / nb_max
    numbers["lr_ratio"] = ratio
    # the data bound the true ratio: a max stable LR that is the largest LR tried may be higher
    ratio_low = 0.0 if nb_lower else bn_max / nb_max
    ratio_high = math.inf if bn_lower else bn_max / nb_max
    facts = (
        f"max stable LR with BN {_fmt(bn_max)}{' (the largest LR tried: a lower bound)' if bn_lower else ''}, "
        f"without BN {_fmt(nb_max)}{' (the largest LR tried: a lower bound)' if nb_lower else ''}; "
        f"ratio {_fmt(ratio)}{' or more' if bn_lower and not nb_lower else ''} (required: >= {_fmt(min_ratio)})."
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


# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# both claims


def evaluate_claims(
    runs: pd.DataFrame,
    acc_threshold: float = DEFAULT_ACC_THRESHOLD,
    min_ratio: float = DEFAULT_MIN_LR_RATIO,
    margin: float = DEFAULT_ERROR_MARGIN,
) -> list[Verdict]:
    """Verdicts on both claims: ``[claim 1, claim 2]`` for the best-covered runs of each.

    Where several architectures carry an LR sweep (or several styles a depth sweep), one
    verdict per extra comparison follows; the first of each claim is the main one.
    """
    verdicts = [claim_bn_lr(runs, acc_threshold, min_ratio)]
    for key, group in lr_sweep_candidates(runs)[1:]:
        verdicts.append(claim_bn_lr_for(group, acc_threshold, min_ratio, scope=_arch_scope(key)))
    verdicts.append(claim_residual_depth(runs, margin))
    for key, group in depth_sweep_candidates(runs)[1:]:
        if group["residual"].any() and (~group["residual"]).any() and group["depth"].nunique() >= 2:
            verdicts.append(claim_residual_depth_for(group, margin, scope=_depth_scope(key)))
    return verdicts


def verdicts_markdown(verdicts: list[Verdict], preamble: str = "") -> str:
    """``claims.md``: every verdict with its numbers."""
    parts = ["# Claims", ""]
    if preamble:
        parts += [preamble, ""]
    parts += [v.to_markdown() for v in verdicts]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# helpers


def _groups(runs: pd.DataFrame, keys: list[str]):
    """``groupby`` that keeps NaN keys (lenet has no depth) and yields ``(key dict, group)``."""
    if runs.empty:
        return []
    return [(dict(zip(keys, values)), group) for values, group in runs.groupby(keys, dropna=False, sort=True)]


def _pick(runs: pd.DataFrame, column: str, preferred: Any) -> Any:
    """The value of ``column`` covering the most LRs (ties: ``preferred``, then most runs)."""
    values = runs[column].fillna("<unset>")
    coverage = runs.assign(_v=values).groupby("_v").agg(lrs=("lr", "nunique"), n=("lr", "size"))
    coverage["preferred"] = coverage.index == preferred
    best = coverage.sort_values(["lrs", "preferred", "n"], ascending=False).index[0]
    return None if best == "<unset>" else best


def _matches(column: pd.Series, value: Any) -> pd.Series:
    return column.isna() if value is None else column == value


def _arch_scope(key: dict[str, Any]) -> str:
    parts = [str(key.get("model_name"))]
    if _present(key.get("depth")):
        parts[0] += f" (depth {int(key['depth'])})"
    if _present(key.get("data")):
        parts.append(f"data {key['data']}")
    if _present(key.get("max_epochs")):
        parts.append(f"{int(key['max_epochs'])} epochs")
    return ", ".join(parts)


def _depth_scope(key: dict[str, Any]) -> str:
    parts = [f"plain vs residual ({key.get('family')} style)"]
    if _present(key.get("data")):
        parts.append(f"data {key['data']}")
    parts.append(f"BN {key.get('bn_label')}" if key.get("bn") else "no BN")
    if _present(key.get("lr")):
        parts.append(f"lr {_fmt(key['lr'])}")
    if _present(key.get("max_epochs")):
        parts.append(f"{int(key['max_epochs'])} epochs")
    return ", ".join(str(p) for p in parts)


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars turned into Python ones (recursively through dicts/lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar
        return value.item()
    return value


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _nan_to(value: float, default: float) -> float:
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}"
    return str(value)


def _times(ratio: float) -> str:
    """A ratio to two significant digits (``6.1``, ``20``, ``140``)."""
    return "n/a" if ratio is None or math.isnan(ratio) else f"{ratio:.2g}" if ratio < 100 else f"{ratio:.0f}"


def _points(value: float, signed: bool = False) -> str:
    """An error difference in percentage points: ``1.3 points``, or ``+1.3`` with ``signed``."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f} points"


def _pct(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}%"

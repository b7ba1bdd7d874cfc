"""Claim 2 -- residual connections let networks go deeper where plain nets degrade.

The numbers come first (:class:`DepthEvidence`, built by :func:`depth_evidence`); the verdict is
decided from them (:func:`decide_depth`) and the text is written from them (:mod:`claim_depth_text`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bnres.analysis.verdict_text import (
    CLAIM2_ID,
    DEFAULT_ERROR_MARGIN,
    DEFAULT_RELATIVE_MARGIN,
    INCONCLUSIVE,
    MIN_SEEDS,
    NOT_SUPPORTED,
    PARTIAL_RISE_FRACTION,
    SUPPORTED,
    Verdict,
    _depth_scope,
    _groups,
)

#: columns that identify one depth comparison (everything but model, depth and seed matched)
DEPTH_KEYS = ["data", "family", "bn", "bn_label", "lr", "max_epochs"]
#: classes of the data sets the depth sweeps use (CIFAR-10, MNIST): chance error is 1 - 1/10
DEFAULT_NUM_CLASSES = 10
#: a net "trained" when its error is below this fraction of chance error; above it the budget is too
#: small to say anything about depth (every net near chance looks the same at every depth)
TRAINED_FRACTION_OF_CHANCE = 0.5
#: two-sided confidence of the t intervals
CONFIDENCE = 0.95


@dataclass
class DepthCell:
    """The runs of one family at one depth, every one accounted for."""

    family: str  # "plain" or "residual"
    depth: int
    model_name: str
    completed: int = 0
    diverged: int = 0
    failed: int = 0  # a record that did not finish (failed, running, preempted)
    missing: int = 0  # a seed run elsewhere in the comparison but with no record here
    #: per finished seed: final training error; a diverged run counts at chance error
    errors: list[float] = field(default_factory=list)
    #: runs whose outcome is unknown, as "plain-56 seed 2 (failed)"
    unresolved: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)  # the finished runs, for their histories

    @property
    def seeds(self) -> int:
        return len(self.errors)

    @property
    def mean(self) -> float:
        return float(np.mean(self.errors)) if self.errors else math.nan


@dataclass
class FamilyTrend:
    """Least-squares line of seed-mean training error against depth, with a t interval."""

    family: str
    depths: list[int]
    means: list[float]
    slope: float  # error per layer
    slope_low: float
    slope_high: float
    rise: float  # slope x (deepest - shallowest): the fitted change over the depths compared
    rise_low: float
    rise_high: float
    dof: int  # degrees of freedom of the seed-noise estimate
    tolerance: float  # the smallest rise that counts
    state: str  # "rises", "holds" or "unsettled"


@dataclass
class LateProgress:
    """Whether the deepest plain nets are still getting better when training stops."""

    epochs_fitted: int
    plain_slope_per_epoch: float  # of training error over the last quarter of training
    still_improving: bool
    gap_then: float  # plain minus residual error at the start of the last quarter
    gap_end: float
    gap_closing: bool


@dataclass
class DepthEvidence:
    """Every number claim 2's verdict and text are made of."""

    cells: list[DepthCell]
    depths: list[int]
    chance_error: float
    trained_floor: float
    margin: float
    relative_margin: float
    plain: FamilyTrend | None = None
    residual: FamilyTrend | None = None
    deep_gap: float = math.nan  # plain minus residual mean error at the deepest depth
    deep_gap_low: float = math.nan
    residual_better_deep: bool = False
    late: LateProgress | None = None

    def cell(self, family: str, depth: int) -> DepthCell | None:
        return next((c for c in self.cells if c.family == family and c.depth == depth), None)

    @property
    def compared(self) -> list[DepthCell]:
        return [c for c in self.cells if c.depth in self.depths]

    @property
    def unresolved(self) -> list[str]:
        return [run for c in self.compared for run in c.unresolved]

    @property
    def min_seeds(self) -> int:
        return min((c.seeds for c in self.compared), default=0)


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


def claim_residual_depth(runs: pd.DataFrame, margin: float = DEFAULT_ERROR_MARGIN,
                         relative_margin: float = DEFAULT_RELATIVE_MARGIN,
                         histories: pd.DataFrame | None = None) -> Verdict:
    """Verdict on claim 2 for the best-covered plain/residual depth comparison in ``runs``."""
    candidates = depth_sweep_candidates(runs)
    if not candidates:
        return Verdict(CLAIM2_ID, INCONCLUSIVE, "no plain/residual runs (models plain_*/resnet_*) in the given sweeps.",
                       {"margin": margin})
    key, group = candidates[0]
    return claim_residual_depth_for(group, margin, scope=_depth_scope(key), relative_margin=relative_margin,
                                    histories=histories)


def depth_cells(group: pd.DataFrame, chance_error: float) -> list[DepthCell]:
    """One :class:`DepthCell` per (family, depth), counting completed, diverged, failed and missing runs."""
    seeds_in_sweep = set(group["seed"].dropna().astype(int))
    cells = []
    for (residual, depth), at in group.groupby(["residual", "depth"]):
        family = "residual" if residual else "plain"
        cell = DepthCell(family, int(depth), ", ".join(sorted(at["model_name"].dropna().unique())))
        finished_seeds = set()
        for row in at.itertuples():
            seed = None if pd.isna(row.seed) else int(row.seed)
            name = f"{family}-{int(depth)} seed {seed}"
            if row.status == "completed" and not pd.isna(row.train_error):
                cell.completed += 1
                cell.errors.append(float(row.train_error))
            elif row.status == "diverged":
                cell.diverged += 1
                cell.errors.append(chance_error)  # a diverged net learned nothing: chance error
            else:
                if seed not in finished_seeds:
                    cell.failed += 1
                    cell.unresolved.append(f"{name} ({row.status})")
                continue
            cell.run_ids.append(str(getattr(row, "run_id", "")))
            finished_seeds.add(seed)
        # a rerun that finished settles an earlier failed record of the same seed
        cell.unresolved = [u for u in cell.unresolved if not any(u.startswith(f"{family}-{int(depth)} seed {s} ") for s in finished_seeds)]
        cell.failed = len(cell.unresolved)
        present = set(at["seed"].dropna().astype(int))
        for seed in sorted(seeds_in_sweep - present):
            cell.missing += 1
            cell.unresolved.append(f"{family}-{int(depth)} seed {seed} (missing)")
        cells.append(cell)
    return cells


def family_trend(cells: list[DepthCell], family: str, depths: list[int], margin: float, relative_margin: float,
                 fill: dict[tuple[str, int], list[float]] | None = None) -> FamilyTrend | None:
    """Least squares over the seed means of ``depths``; the interval uses the pooled seed-to-seed variance.

    ``fill`` adds assumed errors to cells (the outcomes of unresolved runs, in a what-if).
    """
    errors = []
    for depth in depths:
        cell = next(c for c in cells if c.family == family and c.depth == depth)
        errors.append(np.asarray(cell.errors + (fill or {}).get((family, depth), []), dtype=float))
    if any(len(e) == 0 for e in errors) or len(depths) < 2:
        return None
    x = np.asarray(depths, dtype=float)
    means = np.array([e.mean() for e in errors])
    counts = np.array([len(e) for e in errors])
    weights = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
    slope = float(weights @ means)
    dof = int((counts - 1).sum())
    if dof > 0:
        pooled_var = sum(((e - e.mean()) ** 2).sum() for e in errors) / dof
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * math.sqrt(pooled_var * (weights ** 2 / counts).sum()))
    else:
        half = math.inf  # one seed per depth: no seed-to-seed spread to bound the line with
    span = x[-1] - x[0]
    rise, rise_half = slope * span, half * span
    # the bar scales with the error level: a 1-point rise means little at 40% error, a lot at 2%
    tolerance = max(margin, relative_margin * means[0])
    low, high = rise - rise_half, rise + rise_half
    state = "rises" if low > tolerance else "holds" if high <= tolerance else "unsettled"
    return FamilyTrend(family, list(depths), [float(m) for m in means], slope, slope - half, slope + half,
                       float(rise), float(low), float(high), dof, float(tolerance), state)


def welch_low(a: list[float], b: list[float]) -> float:
    """Lower end of the t interval of mean(a) - mean(b) (Welch); -inf with fewer than 2 seeds a side."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return -math.inf
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = a.mean() - b.mean()
    if va + vb == 0:
        return float(diff)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(diff - stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * math.sqrt(va + vb))


def depth_evidence(group: pd.DataFrame, margin: float = DEFAULT_ERROR_MARGIN,
                   relative_margin: float = DEFAULT_RELATIVE_MARGIN, histories: pd.DataFrame | None = None,
                   num_classes: int = DEFAULT_NUM_CLASSES,
                   fill: dict[tuple[str, int], list[float]] | None = None) -> DepthEvidence:
    """The numbers of claim 2 for one plain/residual comparison."""
    chance_error = 1.0 - 1.0 / num_classes
    cells = depth_cells(group, chance_error)
    plain_depths = {c.depth for c in cells if c.family == "plain"}
    residual_depths = {c.depth for c in cells if c.family == "residual"}
    evidence = DepthEvidence(cells, [], chance_error, TRAINED_FRACTION_OF_CHANCE * chance_error, margin, relative_margin)

    def has_outcome(c: DepthCell) -> bool:
        return bool(c.errors) or bool((fill or {}).get((c.family, c.depth)))

    evidence.depths = sorted(d for d in plain_depths & residual_depths
                             if all(has_outcome(evidence.cell(f, d)) for f in ("plain", "residual")))
    if len(evidence.depths) < 2:
        return evidence
    evidence.plain = family_trend(cells, "plain", evidence.depths, margin, relative_margin, fill)
    evidence.residual = family_trend(cells, "residual", evidence.depths, margin, relative_margin, fill)
    deep = evidence.depths[-1]
    plain_deep = evidence.cell("plain", deep).errors + (fill or {}).get(("plain", deep), [])
    residual_deep = evidence.cell("residual", deep).errors + (fill or {}).get(("residual", deep), [])
    evidence.deep_gap = float(np.mean(plain_deep) - np.mean(residual_deep))
    evidence.deep_gap_low = welch_low(plain_deep, residual_deep)
    evidence.residual_better_deep = evidence.deep_gap_low > max(margin, relative_margin * float(np.mean(residual_deep)))
    if histories is not None and fill is None:
        evidence.late = late_progress(evidence, histories)
    return evidence


def late_progress(evidence: DepthEvidence, histories: pd.DataFrame) -> LateProgress | None:
    """Slope of the deepest plain nets' training error over the last quarter of training, and the plain-residual gap then."""
    if histories is None or histories.empty or "run_id" not in histories:
        return None
    deep = evidence.depths[-1]

    def curve(family: str) -> pd.Series | None:
        ids = set(evidence.cell(family, deep).run_ids)
        rows = histories[histories["run_id"].astype(str).isin(ids)]
        rows = rows[rows["train_error"].notna()]
        return rows.groupby("epoch")["train_error"].mean().sort_index() if len(rows) else None

    plain, residual = curve("plain"), curve("residual")
    if plain is None or residual is None or len(plain) < 4:
        return None
    last = plain.iloc[-max(2, len(plain) // 4) - 1:]  # the last quarter, and the epoch it starts from
    slope = float(np.polyfit(last.index.to_numpy(dtype=float), last.to_numpy(), 1)[0])
    start = last.index[0]
    gap_then = float(plain.loc[start] - residual.get(start, math.nan))
    gap_end = float(plain.iloc[-1] - residual.iloc[-1])
    still_improving = -slope * (len(last) - 1) > evidence.margin  # fell by more than the margin over the quarter
    return LateProgress(len(last), slope, bool(still_improving), gap_then, gap_end,
                        bool(math.isfinite(gap_then) and gap_end < gap_then - evidence.margin))


def decide_depth(evidence: DepthEvidence) -> str:
    """The verdict key from the numbers alone (see :data:`claim_depth_text.EXPLANATIONS`)."""
    families = {c.family for c in evidence.cells}
    if families != {"plain", "residual"}:
        return "no_family"
    if len(evidence.depths) < 2:
        return "few_depths"
    shallow = evidence.depths[0]
    if any(evidence.cell(f, shallow).mean > evidence.trained_floor for f in ("plain", "residual")):
        return "did_not_train"
    if evidence.min_seeds < MIN_SEEDS:
        return "few_seeds"
    plain, residual = evidence.plain, evidence.residual
    if plain.state == "rises" and residual.state == "holds":
        return "supported"
    if plain.state == "rises" and residual.rise <= PARTIAL_RISE_FRACTION * plain.rise and evidence.residual_better_deep:
        return "partial"
    if plain.state == "unsettled":
        return "plain_unsettled"
    if plain.state == "holds":
        return "plain_holds"
    return "residual_degrades"


VERDICT_OF = {"no_family": INCONCLUSIVE, "few_depths": INCONCLUSIVE, "did_not_train": INCONCLUSIVE,
              "few_seeds": INCONCLUSIVE, "supported": SUPPORTED, "partial": INCONCLUSIVE,
              "plain_unsettled": INCONCLUSIVE, "plain_holds": NOT_SUPPORTED, "residual_degrades": NOT_SUPPORTED,
              "unresolved_runs": INCONCLUSIVE}


def what_ifs(group: pd.DataFrame, evidence: DepthEvidence, **kwargs: Any) -> dict[str, str]:
    """Verdict keys with the unresolved runs filled in the two ways most for and most against the claim.

    A run's error pulls the fitted slope up when it sits deeper than the mean depth; so "most for" fills
    deep plain runs and shallow residual runs with chance error (diverged) and the others with the best
    error seen in their cell, and "most against" the other way round.
    """
    depths = evidence.depths or sorted({c.depth for c in evidence.cells})
    if not depths:
        return {}
    centre = float(np.mean(sorted({c.depth for c in evidence.cells})))
    keys = {}
    for scenario, plain_deep_fails in (("for", True), ("against", False)):
        fill: dict[tuple[str, int], list[float]] = {}
        for c in evidence.cells:
            n = c.failed + c.missing
            if not n:
                continue
            deep = c.depth > centre
            fails = (deep == plain_deep_fails) if c.family == "plain" else (deep != plain_deep_fails)
            best = min(c.errors) if c.errors else min((e for o in evidence.cells if o.family == c.family for e in o.errors),
                                                       default=0.0)
            fill[c.family, c.depth] = [evidence.chance_error if fails else best] * n
        keys[scenario] = decide_depth(depth_evidence(group, fill=fill, **kwargs))
    return keys


def claim_residual_depth_for(group: pd.DataFrame, margin: float = DEFAULT_ERROR_MARGIN, scope: str = "",
                             relative_margin: float = DEFAULT_RELATIVE_MARGIN,
                             histories: pd.DataFrame | None = None,
                             num_classes: int = DEFAULT_NUM_CLASSES) -> Verdict:
    """Verdict on claim 2 for one plain/residual comparison (matched setting, several depths)."""
    from bnres.analysis.claim_depth_text import depth_numbers, depth_reason, depth_table

    settings = dict(margin=margin, relative_margin=relative_margin, num_classes=num_classes)
    evidence = depth_evidence(group, histories=histories, **settings)
    key = decide_depth(evidence)
    scenarios = what_ifs(group, evidence, **settings) if evidence.unresolved else {}
    flips = any(VERDICT_OF[k] != VERDICT_OF[key] for k in scenarios.values())
    verdict = INCONCLUSIVE if flips else VERDICT_OF[key]
    return Verdict(CLAIM2_ID, verdict, depth_reason(evidence, key, scenarios, flips),
                   depth_numbers(evidence, key, scenarios), scope=scope, table=depth_table(evidence))

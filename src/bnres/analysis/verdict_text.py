"""Verdicts as data: the thresholds both claims share, the :class:`Verdict` record and the number formats of its text."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

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
#: seeds every compared cell needs before a claim can be SUPPORTED (one seed has no spread)
MIN_SEEDS = 2

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

"""Verdicts on the two claims, computed from the runs table (never asserted).

Claim 1 (batch norm allows larger learning rates) lives in :mod:`bnres.analysis.claim_lr`, claim 2
(residual connections allow deeper nets) in :mod:`bnres.analysis.claim_depth`; the rules, gates,
intervals and run counts are described in ``docs/verdicts.md``. This module runs both and keeps the
public names importable from one place.
"""

from __future__ import annotations

import pandas as pd

from bnres.analysis.claim_depth import (  # noqa: F401  (public names of claim 2)
    DEPTH_KEYS, claim_residual_depth, claim_residual_depth_for, depth_evidence, depth_sweep_candidates,
)
from bnres.analysis.claim_lr import (  # noqa: F401  (public names of claim 1)
    bootstrap_lr_ratio, claim_bn_lr, claim_bn_lr_for, lr_sweep_candidates, run_trains, select_lr_sweep_runs,
)
from bnres.analysis.verdict_text import *  # noqa: F401,F403
from bnres.analysis.verdict_text import _arch_scope, _depth_scope, _groups  # noqa: F401  (used by plots)
from bnres.analysis.verdict_text import (
    DEFAULT_ACC_THRESHOLD, DEFAULT_ERROR_MARGIN, DEFAULT_MIN_LR_RATIO, Verdict,
)

def evaluate_claims(
    runs: pd.DataFrame,
    acc_threshold: float = DEFAULT_ACC_THRESHOLD,
    min_ratio: float = DEFAULT_MIN_LR_RATIO,
    margin: float = DEFAULT_ERROR_MARGIN,
    histories: pd.DataFrame | None = None,
) -> list[Verdict]:
    """Verdicts on both claims: ``[claim 1, claim 2]`` for the best-covered runs of each.

    Where several architectures carry an LR sweep (or several styles a depth sweep), one
    verdict per extra comparison follows; the first of each claim is the main one.
    """
    verdicts = [claim_bn_lr(runs, acc_threshold, min_ratio)]
    for key, group in lr_sweep_candidates(runs)[1:]:
        verdicts.append(claim_bn_lr_for(group, acc_threshold, min_ratio, scope=_arch_scope(key)))
    verdicts.append(claim_residual_depth(runs, margin, histories=histories))
    for key, group in depth_sweep_candidates(runs)[1:]:
        if group["residual"].any() and (~group["residual"]).any() and group["depth"].nunique() >= 2:
            verdicts.append(claim_residual_depth_for(group, margin, scope=_depth_scope(key), histories=histories))
    return verdicts


def verdicts_markdown(verdicts: list[Verdict], preamble: str = "") -> str:
    """``claims.md``: every verdict with its numbers."""
    parts = ["# Claims", ""]
    if preamble:
        parts += [preamble, ""]
    parts += [v.to_markdown() for v in verdicts]
    return "\n".join(parts)


"""Sweep analysis: records -> tidy tables, plots and verdicts on the two claims.

Typical use::

    from bnres.analysis import analyze
    result = analyze(["multirun/lr_sweep", "multirun/depth_sweep"], out_dir="claims_out")
    result.verdict("claim1_bn_lr").verdict   # "supported" | "not supported" | "inconclusive"

The W&B report builder lives in :mod:`bnres.analysis.wandb_report` (needs ``wandb-workspaces``)
and is not imported here.
"""

from bnres.analysis.plots import (
    make_plots,
    plot_depth,
    plot_depth_curves,
    plot_lr_sweep,
    plot_placement,
)
from bnres.analysis.records import (
    NoResultsError,
    find_result_files,
    finished_runs,
    load_histories,
    load_records,
    load_runs,
    load_sweeps,
    records_to_histories,
    records_to_runs,
    runs_markdown,
    status_counts,
    write_tables,
)
from bnres.analysis.report import AnalysisResult, analyze, format_verdicts
from bnres.analysis.verdicts import (
    CLAIM1_ID,
    CLAIM2_ID,
    DEFAULT_ACC_THRESHOLD,
    DEFAULT_ERROR_MARGIN,
    DEFAULT_MIN_LR_RATIO,
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    Verdict,
    claim_bn_lr,
    claim_residual_depth,
    evaluate_claims,
    run_trains,
    verdicts_markdown,
)

__all__ = [
    "AnalysisResult", "NoResultsError", "Verdict",
    "CLAIM1_ID", "CLAIM2_ID", "SUPPORTED", "NOT_SUPPORTED", "INCONCLUSIVE",
    "DEFAULT_ACC_THRESHOLD", "DEFAULT_MIN_LR_RATIO", "DEFAULT_ERROR_MARGIN",
    "analyze", "evaluate_claims", "claim_bn_lr", "claim_residual_depth", "run_trains",
    "find_result_files", "load_records", "load_runs", "load_histories", "load_sweeps",
    "records_to_runs", "records_to_histories", "finished_runs", "status_counts",
    "write_tables", "runs_markdown", "verdicts_markdown", "format_verdicts",
    "make_plots", "plot_lr_sweep", "plot_depth", "plot_depth_curves", "plot_placement",
]

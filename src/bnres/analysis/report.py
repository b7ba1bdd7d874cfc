"""One call that does the whole analysis of a set of sweeps: tables, plots, verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bnres.analysis import mechanisms
from bnres.analysis.plots import make_plots
from bnres.analysis.records import load_records, records_to_histories, records_to_runs, status_counts, write_tables
from bnres.analysis.verdicts import (
    DEFAULT_ACC_THRESHOLD,
    DEFAULT_ERROR_MARGIN,
    DEFAULT_MIN_LR_RATIO,
    DEFAULT_RELATIVE_MARGIN,
    Verdict,
    evaluate_claims,
    verdicts_markdown,
)

DEFAULT_OUT_SUBDIR = "analysis"


@dataclass
class AnalysisResult:
    """What :func:`analyze` computed and wrote."""

    runs: pd.DataFrame
    histories: pd.DataFrame
    verdicts: list[Verdict]
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)  # name -> file written

    def verdict(self, claim: str) -> Verdict:
        """The main verdict of a claim (``"claim1_bn_lr"`` or ``"claim2_residual_depth"``)."""
        return next(v for v in self.verdicts if v.claim == claim)


def analyze(
    sweep_dirs: str | Path | Sequence[str | Path],
    out_dir: str | Path | None = None,
    acc_threshold: float = DEFAULT_ACC_THRESHOLD,
    min_ratio: float = DEFAULT_MIN_LR_RATIO,
    margin: float = DEFAULT_ERROR_MARGIN,
    verbose: bool = True,
) -> AnalysisResult:
    """Load sweeps, write ``runs.csv``, ``runs.md``, the plots and ``claims.md`` to ``out_dir``.

    ``out_dir`` defaults to ``<first sweep>/analysis``. With ``verbose`` the verdicts are printed.
    Raises :class:`bnres.analysis.NoResultsError` when a sweep folder holds no ``result.json``.
    """
    sweep_paths = [Path(sweep_dirs)] if isinstance(sweep_dirs, (str, Path)) else [Path(d) for d in sweep_dirs]
    out_dir = Path(out_dir) if out_dir is not None else sweep_paths[0] / DEFAULT_OUT_SUBDIR
    records = load_records(sweep_paths)
    runs, histories = records_to_runs(records), records_to_histories(records)
    verdicts = evaluate_claims(runs, acc_threshold=acc_threshold, min_ratio=min_ratio, margin=margin)

    files: dict[str, Path] = {}
    files["runs_csv"], files["runs_md"] = write_tables(runs, out_dir)
    files |= make_plots(runs, histories, out_dir, acc_threshold=acc_threshold)
    mechanism_figures = mechanisms.make_mechanism_plots(records, out_dir)
    files |= mechanism_figures
    mechanism_numbers = mechanisms.mechanism_numbers(records)
    claims_path = out_dir / "claims.md"
    claims_path.write_text(
        verdicts_markdown(verdicts, preamble=_preamble(sweep_paths, runs, files, acc_threshold, min_ratio, margin))
        + "\n" + mechanisms.mechanisms_markdown(mechanism_numbers, mechanism_figures)
    )
    files["claims_md"] = claims_path

    if verbose:
        print(format_verdicts(verdicts))
        if mechanism_numbers:
            print("\n" + mechanisms.mechanisms_summary(mechanism_numbers))
        print(f"\nwrote {', '.join(p.name for p in files.values())} to {out_dir}")
    return AnalysisResult(runs, histories, verdicts, out_dir, files)


def format_verdicts(verdicts: Sequence[Verdict]) -> str:
    """All verdicts as plain text, separated by blank lines."""
    return "\n\n".join(v.summary() for v in verdicts)


def _preamble(sweeps, runs, files, acc_threshold, min_ratio, margin) -> str:
    counts = status_counts(runs)
    lines = [
        "Verdicts computed by `bnres.analysis` from the run records; every number below comes from them.",
        "",
        f"- sweeps: {', '.join(f'`{s}`' for s in sweeps)}",
        f"- runs: {len(runs)} ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); "
        "running and failed runs count as missing",
        f"- claim 1 thresholds: a run trains when it does not diverge, its final training loss is finite "
        f"and its final val accuracy is >= {acc_threshold:g}; supported when the BN/no-BN ratio of max stable "
        f"learning rates is >= {min_ratio:g}",
        f"- claim 2 thresholds: a rise in training error counts when its whole 95% bootstrap interval over "
        f"seeds exceeds max({margin:g}, {DEFAULT_RELATIVE_MARGIN:g} x the error at the shallowest depth)",
    ]
    plots = [p.name for name, p in files.items() if p.suffix == ".png"]
    if plots:
        lines.append(f"- plots: {', '.join(plots)}")
    return "\n".join(lines)

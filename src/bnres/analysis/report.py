"""One call that does the whole analysis of a set of sweeps: tables, plots, verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bnres.analysis import mechanisms
from bnres.analysis.factors import FactorSummary, factors_markdown, save_factor_plots, summarize_factors
from bnres.analysis.plots import make_plots
from bnres.analysis.records import load_records, records_to_histories, records_to_runs, status_counts, write_tables
from bnres.analysis.verdicts import (
    CLAIM1_ID,
    CLAIM2_ID,
    DEFAULT_ACC_THRESHOLD,
    DEFAULT_ERROR_MARGIN,
    DEFAULT_MIN_LR_RATIO,
    DEFAULT_RELATIVE_MARGIN,
    Verdict,
    depth_sweep_candidates,
    evaluate_claims,
    lr_sweep_candidates,
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
    factors: list[FactorSummary] = field(default_factory=list)  # what each sweep shows, claims or not
    applies: dict[str, bool] = field(default_factory=dict)  # claim -> do these runs test it at all

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
    replacing = (out_dir / "claims.md").exists()  # said out loud below: an earlier analysis's files are rewritten
    runs, histories = records_to_runs(records), records_to_histories(records)
    verdicts = evaluate_claims(runs, acc_threshold=acc_threshold, min_ratio=min_ratio, margin=margin, histories=histories)
    applies = claims_tested(runs)
    factors = summarize_factors(runs)

    files: dict[str, Path] = {}
    files["runs_csv"], files["runs_md"] = write_tables(runs, out_dir)
    files |= make_plots(runs, histories, out_dir, acc_threshold=acc_threshold)
    files |= save_factor_plots(factors, out_dir)
    mechanism_figures = mechanisms.make_mechanism_plots(records, out_dir)
    files |= mechanism_figures
    mechanism_numbers = mechanisms.mechanism_numbers(records)
    claims_path = out_dir / "claims.md"
    claims_path.write_text(
        verdicts_markdown([v for v in verdicts if applies.get(v.claim, True)], preamble=_preamble(sweep_paths, runs, files, acc_threshold, min_ratio, margin))
        + _not_tested_markdown(verdicts, applies) + "\n" + factors_markdown(factors)
        + "\n" + mechanisms.mechanisms_markdown(mechanism_numbers, mechanism_figures)
    )
    files["claims_md"] = claims_path

    if verbose:
        print(format_verdicts(verdicts, applies))
        print("\n" + "\n\n".join(f.to_text() for f in factors))
        if mechanism_numbers:
            print("\n" + mechanisms.mechanisms_summary(mechanism_numbers))
        print(f"\nwrote {', '.join(p.name for p in files.values())} to {out_dir}")
        if replacing:
            print("  (replacing an earlier analysis's files there; each analysis run keeps its own copy as an artifact)")
    return AnalysisResult(runs, histories, verdicts, out_dir, files, factors, applies)


def format_verdicts(verdicts: Sequence[Verdict], applies: dict[str, bool] | None = None) -> str:
    """All verdicts as plain text, separated by blank lines; a claim the runs do not test
    (``applies[claim]`` false) is one line."""
    applies = applies or {}
    return "\n\n".join(v.summary() if applies.get(v.claim, True) else _not_tested_line(v) for v in verdicts)


def claims_tested(runs: pd.DataFrame) -> dict[str, bool]:
    """Which claims the runs test at all: claim 1 needs BN and no-BN runs of one architecture at two
    or more learning rates; claim 2 plain and residual twins at two or more depths."""
    depth_tested = any(
        group["residual"].any() and (~group["residual"]).any() and group["depth"].nunique() >= 2
        for _, group in depth_sweep_candidates(runs)
    )
    return {CLAIM1_ID: bool(lr_sweep_candidates(runs)), CLAIM2_ID: depth_tested}


def _not_tested_line(verdict: Verdict) -> str:
    return f"{verdict.title}: does not apply to these runs ({verdict.verdict}): {verdict.reason}"


def _not_tested_markdown(verdicts: Sequence[Verdict], applies: dict[str, bool]) -> str:
    lines = [f"- {_not_tested_line(v)}" for v in verdicts if not applies.get(v.claim, True)]
    return "\n## Claims these runs do not test\n\n" + "\n".join(lines) + "\n" if lines else ""


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

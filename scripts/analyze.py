#!/usr/bin/env python
"""Analyze one or more sweep folders: tables, plots and verdicts on the two claims.

    python scripts/analyze.py multirun/lr_sweep multirun/depth_sweep --out claims_out

Writes runs.csv, runs.md, lr_sweep.png, depth.png, depth_curves.png, placement.png (those whose
data is present) and claims.md to --out (default: <first sweep>/analysis), prints the verdicts and
what the runs show, and writes the analysis as a new W&B run (job_type=analysis, offline unless
--online) into the W&B group of the analysed runs, under <out>/wandb/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import bnres.analysis as analysis
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import bnres.analysis as analysis
from bnres.analysis.wandb_run import add_wandb_args, log_analysis_run_from_args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR", help="sweep folder(s) holding **/result.json")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <first SWEEP_DIR>/analysis)")
    parser.add_argument("--acc-threshold", type=float, default=analysis.DEFAULT_ACC_THRESHOLD,
                        help="claim 1: final val accuracy a run must reach to count as 'trains' (default: %(default)s)")
    parser.add_argument("--min-ratio", type=float, default=analysis.DEFAULT_MIN_LR_RATIO,
                        help="claim 1: required ratio of max stable LRs, BN / no BN (default: %(default)s)")
    parser.add_argument("--margin", type=float, default=analysis.DEFAULT_ERROR_MARGIN,
                        help="claim 2: smallest change in training error (absolute) that counts as a rise (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="do not print the verdicts")
    add_wandb_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = analysis.analyze(
            args.sweep_dirs, out_dir=args.out, acc_threshold=args.acc_threshold,
            min_ratio=args.min_ratio, margin=args.margin, verbose=not args.quiet,
        )
    except analysis.NoResultsError as exc:
        print(f"analyze.py: error: {exc}", file=sys.stderr)
        return 2
    log_analysis_run_from_args(result, args, config={"sweep_dirs": [str(d) for d in args.sweep_dirs], "acc_threshold": args.acc_threshold,
                                    "min_ratio": args.min_ratio, "margin": args.margin})
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Build a W&B Report with claim panels for one sweep group; upload it with --save.

    python scripts/wandb_report.py --entity ENTITY --project bnres --group lr_sweep_2024 --save

Without --save (or offline: WANDB_MODE=offline/disabled) the report is only built and its outline
printed. Needs `pip install wandb-workspaces` (the `report` extra).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

try:
    from bnres.analysis.wandb_report import build_report, save_report
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from bnres.analysis.wandb_report import build_report, save_report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entity", required=True, help="W&B entity (user or team)")
    parser.add_argument("--project", required=True, help="W&B project the runs were logged to")
    parser.add_argument("--group", required=True, help="W&B run group of the sweep")
    parser.add_argument("--title", default=None, help="report title (default: 'bnres claims: sweep GROUP')")
    parser.add_argument("--save", action="store_true", help="upload the report (needs a W&B login and network)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = build_report(args.entity, args.project, args.group, title=args.title)
    except ImportError as exc:
        print(f"wandb_report.py: error: wandb-workspaces is needed ({exc}); pip install wandb-workspaces", file=sys.stderr)
        return 2
    print(f"report '{report.title}' for {args.entity}/{args.project}, group {args.group}:")
    for block in report.blocks:
        panels = getattr(block, "panels", None)
        what = ", ".join(p.title or type(p).__name__ for p in panels) if panels else (getattr(block, "text", "") or "")
        print(f"  - {type(block).__name__}: {what.splitlines()[0] if what else ''}"[:110])
    offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun")
    if not args.save:
        print("not saved (pass --save to upload)")
    elif offline:
        print(f"not saved: WANDB_MODE={os.environ['WANDB_MODE']}")
    else:
        print(f"saved: {save_report(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Build a W&B Report with claim panels for one W&B run group; upload it with --save.

    python scripts/wandb_report.py --entity ENTITY --group train/2026-12-01_08-53-35 --save   # one sweep
    python scripts/wandb_report.py --entity ENTITY --reproduce cpu --save                      # one reproduce.py call, every preset

Without --save (or offline: WANDB_MODE=offline/disabled) the report is only built and its outline
printed. Needs `pip install wandb-workspaces` (the `report` extra).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

try:
    from bnres.analysis.wandb_report import CPU_PRESETS, build_report, save_report
    from bnres.tracking.wandb_groups import reproduce_group
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from bnres.analysis.wandb_report import CPU_PRESETS, build_report, save_report
    from bnres.tracking.wandb_groups import reproduce_group


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entity", required=True, help="W&B entity (user or team)")
    parser.add_argument("--project", default="bnres", help="W&B project the runs were logged to (default: %(default)s)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--group", help="W&B run group: a sweep's (e.g. train/2026-12-01_08-53-35, see the runs' Group column)")
    where.add_argument("--reproduce", choices=("cpu", "cifar10"),
                       help="the group of a scripts/reproduce.py call (reproduce/KIND), one section per preset")
    parser.add_argument("--presets", default=None,
                        help="comma-separated job types (preset task_names) to give a section each, e.g. bn_lr,depth,bn_placement")
    parser.add_argument("--title", default=None, help="report title (default: 'bnres claims: sweep GROUP')")
    parser.add_argument("--save", action="store_true", help="upload the report (needs a W&B login and network)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    group = args.group or reproduce_group(args.reproduce)
    presets = args.presets.split(",") if args.presets else None
    if args.reproduce and presets is None:
        presets = list(CPU_PRESETS) if args.reproduce == "cpu" else [f"{p}_cifar10" for p in CPU_PRESETS]
    try:
        report = build_report(args.entity, args.project, group, title=args.title, presets=presets)
    except ImportError as exc:
        print(f"wandb_report.py: error: wandb-workspaces is needed ({exc}); pip install wandb-workspaces", file=sys.stderr)
        return 2
    print(f"report '{report.title}' for {args.entity}/{args.project}, group {group}:")
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

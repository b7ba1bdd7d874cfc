#!/usr/bin/env python
"""A whole sweep in W&B's terminal dashboard, offline: every run under its run name, then `wandb leet`.

    python scripts/dashboard.py multirun/train/2026-12-01_08-53-35        # lay out and open leet
    python scripts/dashboard.py SWEEP_DIR --no-open                        # lay out only; then: wandb leet SWEEP_DIR/dashboard

Lays out SWEEP_DIR/dashboard/ (or --out): one entry per W&B run of the sweep (every job's, and
the analysis runs of scripts/analyze.py), named by its run name, made of symlinks to the run's
files. Nothing in the job folders is moved or changed; rerunning rebuilds the folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

try:
    from bnres.tracking.dashboard import layout, shared_overrides
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from bnres.tracking.dashboard import layout, shared_overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="sweep folder (its jobs' wandb/ folders are searched)")
    parser.add_argument("--out", type=Path, default=None, help="dashboard folder (default: SWEEP_DIR/dashboard)")
    parser.add_argument("--no-open", action="store_true", help="only lay out the folder; do not start wandb leet")
    args = parser.parse_args(argv)
    try:
        out_dir, entries = layout(args.sweep_dir, args.out)
    except (FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(entries)} W&B runs in {out_dir} (newest first, as leet lists them):")
    for entry in entries:
        print(f"  {entry.key}\n      {entry.job_type} run {entry.run_id}: {entry.source}")
    shared = shared_overrides(entries)
    if shared:
        print(f"overrides every training run shares (left out of the names above): {','.join(shared)}")
    command = ["wandb", "leet", str(out_dir)]
    if args.no_open or not sys.stdout.isatty():
        print(f"open with: {' '.join(command)}")
        return 0
    wandb_cli = shutil.which("wandb")
    if wandb_cli is None:
        print("error: the wandb command is not on PATH; run: " + " ".join(command), file=sys.stderr)
        return 2
    os.execv(wandb_cli, [wandb_cli, *command[1:]])  # leet takes over the terminal


if __name__ == "__main__":
    sys.exit(main())

"""Answer both claims in one command: run the presets, analyse, print the verdicts.

    python scripts/reproduce.py                # CPU presets on the 5,000 MNIST digits (~25 min, 2 cores)
    python scripts/reproduce.py --gpu          # full-size CIFAR-10 presets (He et al. recipe) on a GPU
    python scripts/reproduce.py --only bn_lr   # one preset

Rerunning after an interruption keeps finished runs (each job skips itself when its folder
already holds a completed or diverged record) and resumes interrupted ones from their last
checkpoint. ``--fresh`` reruns everything.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("bn_lr", "depth", "bn_placement")
# the lines of a sweep's output worth showing as progress
# (the CPU presets run two jobs at a time: "packed job N: slot ..." is when job N starts)
PROGRESS = re.compile(r"[Ll]aunching \d+ jobs|\t#\d+ : |packed job \d+: slot|^Sweep |^job |^---|^\d+\s+(completed|diverged|failed|running|invalid)|^error:")


def run_preset(name: str, sweep_dir: Path, extra: list[str], fresh: bool) -> int:
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", f"experiment={name}", f"hydra.sweep.dir={sweep_dir}", "trainer.enable_progress_bar=false", *extra]
    if fresh:
        cmd.append("fresh=true")
    print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
    env = {**os.environ, "WANDB_SILENT": "true"}
    start = time.time()
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        for line in proc.stdout:
            if PROGRESS.search(line):
                stamp = time.strftime("%H:%M:%S")
                print(f"[{stamp} +{time.time() - start:5.0f}s] {line.rstrip()}", flush=True)
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "reproduce", help="folder for the sweeps and the analysis")
    parser.add_argument("--gpu", action="store_true", help="full-size CIFAR-10 presets (needs a GPU and the CIFAR-10 files or data.download=true)")
    parser.add_argument("--only", default=",".join(PRESETS), help=f"comma-separated presets among {', '.join(PRESETS)}")
    parser.add_argument("--fresh", action="store_true", help="rerun every job, even finished ones")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job, e.g. trainer.max_epochs=2")
    args = parser.parse_args(argv)

    chosen = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PRESETS]
    if unknown:
        parser.error(f"--only {','.join(unknown)}: not a preset; choose from {', '.join(PRESETS)}")
    out = args.out.resolve() / ("cifar10" if args.gpu else "cpu")
    failed = []
    for name in chosen:
        preset = f"{name}_cifar10" if args.gpu else name
        if run_preset(preset, out / name, args.overrides, args.fresh) != 0:
            failed.append(name)

    from bnres.analysis import NoResultsError, analyze

    print("\n=== analysis", flush=True)
    try:
        analyze([out / name for name in chosen], out_dir=out / "analysis")
    except NoResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if failed:
        print(f"error: some jobs of {', '.join(failed)} did not finish (see the tables above); rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Answer both claims in one command: run the presets, analyse, print the verdicts.

    python scripts/reproduce.py                # CPU presets on the 5,000 MNIST digits (about 10 min on 2 cores)
    python scripts/reproduce.py --gpu          # full-size CIFAR-10 presets (He et al. recipe) on a GPU
    python scripts/reproduce.py --data fashion_mnist   # the CPU presets on a 4,000-image Fashion-MNIST subset
    python scripts/reproduce.py --only bn_lr   # one preset

Rerunning after an interruption keeps finished runs (each job skips itself when its folder
already holds a completed or diverged record) and resumes interrupted ones from their last
checkpoint. ``--fresh`` reruns everything.

Every preset's runs go into one W&B group, ``reproduce/cpu`` (``reproduce/cifar10`` with --gpu,
``reproduce/fashion_mnist`` with --data fashion_mnist),
told apart by their job type (the preset's task_name), so one W&B report shows both claims
(``scripts/wandb_report.py --group reproduce/cpu --presets``); the analysis is written as a W&B
run in the same group (``job_type=analysis``; --no-wandb to skip it).
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
try:
    from bnres.analysis.wandb_run import add_wandb_args, log_analysis_run_from_args
    from bnres.tracking.wandb_groups import reproduce_group
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "src"))
    from bnres.analysis.wandb_run import add_wandb_args, log_analysis_run_from_args
    from bnres.tracking.wandb_groups import reproduce_group
PRESETS = ("bn_lr", "depth", "bn_placement")
# --data NAME -> the suffix of the CPU presets for that data set (conf/experiment/<preset><suffix>.yaml)
DATA_PRESET_SUFFIX = {"mnist5k": "", "fashion_mnist": "_fashion"}
# the lines of a sweep's output worth showing as progress: job starts (the CPU presets run two jobs at a
# time: "packed job N: slot ..." is when job N starts), each job's end line with k/N and the time left
# (bnres.runs.progress), the final table, errors
PROGRESS = re.compile(r"[Ll]aunching \d+ jobs|\t#\d+ : |packed job \d+: slot|^\[(\d+/\d+|\d+ done|job done)|^Sweep |^job |^---|^\d+\s+(completed|diverged|failed|running|invalid)|^error:")


def run_preset(name: str, sweep_dir: Path, extra: list[str], fresh: bool, group: str) -> int:
    own_logger = any(o.startswith("logger=") and o != "logger=wandb" for o in extra)  # logger=csv/none: no W&B group
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", f"experiment={name}", f"hydra.sweep.dir={sweep_dir}",
           "trainer.enable_progress_bar=false", *([] if own_logger else [f"logger.wandb.group={group}"]), *extra]
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
    parser.add_argument("--data", choices=DATA_PRESET_SUFFIX, default="mnist5k",
                        help="data set of the CPU presets: mnist5k (the 5,000 MNIST digits, pip-only) or fashion_mnist "
                             "(a 4,000-image subset; needs apt-get install dataset-fashion-mnist, docs/fashion_mnist.md)")
    parser.add_argument("--only", default=",".join(PRESETS), help=f"comma-separated presets among {', '.join(PRESETS)}")
    parser.add_argument("--fresh", action="store_true", help="rerun every job, even finished ones")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job, e.g. trainer.max_epochs=2")
    add_wandb_args(parser)
    args = parser.parse_args(argv)

    chosen = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PRESETS]
    if unknown:
        parser.error(f"--only {','.join(unknown)}: not a preset; choose from {', '.join(PRESETS)}")
    if args.gpu and args.data != "mnist5k":
        parser.error("--gpu runs the CIFAR-10 presets; --data chooses the data of the CPU presets, so give one or the other")
    kind = "cifar10" if args.gpu else ("cpu" if args.data == "mnist5k" else args.data)
    out = args.out.resolve() / kind
    group = args.wandb_group or reproduce_group(kind)
    failed = []
    for name in chosen:
        preset = f"{name}_cifar10" if args.gpu else f"{name}{DATA_PRESET_SUFFIX[args.data]}"
        if run_preset(preset, out / name, args.overrides, args.fresh, group) != 0:
            failed.append(name)

    from bnres.analysis import NoResultsError, analyze

    print("\n=== analysis", flush=True)
    try:
        result = analyze([out / name for name in chosen], out_dir=out / "analysis")
    except NoResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    log_analysis_run_from_args(result, args, config={"presets": chosen, "kind": kind, "data": args.data, "overrides": args.overrides})
    print(f"\nthe whole call in W&B's terminal dashboard: python scripts/dashboard.py {out}", flush=True)
    if failed:
        print(f"error: some jobs of {', '.join(failed)} did not finish (see the tables above); rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Remake ``tests/data/example_sweep/``: three tiny REAL sweeps, run by the harness itself.

Each folder is one ``scripts/train.py -m experiment=...`` sweep of the CPU presets, cut down to
run in a few minutes on a laptop CPU (real MNIST-5k digits, real training, offline):

* ``bn_lr/``: claim 1, ReLU LeNet, BN vs no BN, lr 0.01 ... 10, 2 seeds, 2 epochs;
* ``depth/``: claim 2, ``plain_cifar`` vs ``resnet_cifar`` at depths 8/14/20, 2 seeds, 80 steps;
* ``bn_placement/``: ResNet-8, BN before / after the activation, pre-activation, no BN, 2 seeds, 80 steps.

Jobs run with ``logger=none callbacks=none`` (no W&B run, no checkpoint); of each job folder only
``result.json`` is kept, written without indentation, with the machine's absolute paths in
``config.paths`` made relative to the repository. Nothing else is changed: every number is what
the run measured. The verdicts are whatever these short runs show (see ``tests/test_analysis.py``).

Run: ``python tests/data/make_example_sweep.py`` (rewrites the folder; about 5-10 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).parent / "example_sweep"
COMMON = ["logger=none", "callbacks=none", "probes=none", "trainer.enable_progress_bar=false", "seed=0,1"]
SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=80"]
SWEEPS = {
    "bn_lr": ["experiment=bn_lr", "trainer.max_epochs=2"],
    "depth": ["experiment=depth", "depth=8,14,20", *SHORT],
    "bn_placement": ["experiment=bn_placement", "depth=8", *SHORT],
}


def run_sweep(name: str, overrides: list[str], out: Path) -> None:
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "-m", *overrides, *COMMON, f"hydra.sweep.dir={out}"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.time()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{name}: sweep failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(f"{name}: {len(list(out.glob('*/result.json')))} runs in {time.time() - start:.0f} s")


def keep_records_only(sweep: Path) -> None:
    for item in sweep.iterdir():
        if not item.is_dir():
            item.unlink()  # multirun.yaml, ...
            continue
        record_file = item / "result.json"
        record = json.loads(record_file.read_text())
        paths = (record.get("config") or {}).get("paths") or {}
        for key, value in paths.items():
            if isinstance(value, str) and value.startswith(str(REPO)):
                paths[key] = os.path.relpath(value, REPO)
        shutil.rmtree(item)
        item.mkdir()
        record_file.write_text(json.dumps(record))


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    for name, overrides in SWEEPS.items():
        run_sweep(name, overrides, OUT / name)
        keep_records_only(OUT / name)
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(list(OUT.glob('*/*/result.json')))} records ({size / 1024:.0f} KiB) to {OUT}")


if __name__ == "__main__":
    main()

"""Regenerate ``tests/data/example_sweep/``: a small, SYNTHETIC sweep for the notebook and tests.

The numbers are made up (seeded noise around plausible values), shaped like short CPU runs:

* LR sweep, lenet on mnist5k, BN vs no BN, lr 0.01..3, 2 seeds: without BN the loss plateaus
  at ln 10 from lr 0.3 and diverges from lr 1; with BN every seed trains up to lr 1.
* depth sweep, plain_cifar vs resnet_cifar, depths 20/32/56, 2 seeds: plain error grows with
  depth; residual error grows a little too (not converged at this budget).
* BN placement, lenet at lr 0.1: after_activation and pre_activation, 2 seeds
  (before_activation and no BN come from the LR sweep).

Run: ``python tests/data/make_example_sweep.py`` (rewrites the folder).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from result_factory import depth_run, diverged, make_record, plateau, trained, write_sweep

OUT = Path(__file__).parent / "example_sweep"
LRS = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
SEEDS = [0, 1]


def build_records() -> list[dict]:
    rng = random.Random(0)
    records = []
    # claim 1: LR sweep (lenet, 5 epochs)
    for bn in (True, False):
        for lr in LRS:
            for seed in SEEDS:
                common = dict(model_name="lenet", bn=bn, lr=lr, seed=seed, max_epochs=5, num_params=61_706)
                if bn:
                    if lr <= 1.0:
                        records.append(trained(acc=round(0.93 + 0.02 * rng.random() - 0.01 * (lr >= 1.0), 4), **common))
                    else:
                        records.append(diverged(diverged_at_step=37 + seed, **common))
                elif lr <= 0.1:
                    records.append(trained(acc=round(0.86 + 0.05 * rng.random() + 0.1 * lr, 4), **common))
                elif lr < 1.0:
                    records.append(plateau(**common))
                else:
                    records.append(diverged(diverged_at_step=5 + seed, **common))
    # claim 2: depth sweep (CIFAR-style nets, 10 epochs)
    plain_error = {20: 0.060, 32: 0.095, 56: 0.210}
    residual_error = {20: 0.045, 32: 0.052, 56: 0.071}
    for model_name, errors in (("plain_cifar", plain_error), ("resnet_cifar", residual_error)):
        for depth, error in errors.items():
            for seed in SEEDS:
                records.append(depth_run(
                    model_name, depth, round(error + 0.008 * (rng.random() - 0.5), 4), seed=seed,
                    max_epochs=10, lr=0.1, num_params=int(15_000 * depth),
                ))
    # BN placement (lenet at lr 0.1, 5 epochs)
    for placement, acc in (("after_activation", 0.925), ("pre_activation", 0.915)):
        for seed in SEEDS:
            records.append(trained(acc=round(acc + 0.01 * rng.random(), 4), model_name="lenet", bn=True, lr=0.1,
                                   seed=seed, bn_placement=placement, max_epochs=5, num_params=61_706))
    # one job still running when the sweep was copied: it must count as missing, not crash
    records.append(make_record(status="running", model_name="lenet", bn=True, lr=0.1, seed=2, max_epochs=5,
                               train_acc=None, val_acc=None))
    for record in records:  # keep the files small: 4 significant digits are plenty
        record["wall_time_s"] = round(20 + 80 * rng.random(), 1)
    return records


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    write_sweep(OUT, build_records(), indent=None)
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(list(OUT.glob('*/result.json')))} records ({size / 1024:.0f} KiB) to {OUT}")


if __name__ == "__main__":
    main()

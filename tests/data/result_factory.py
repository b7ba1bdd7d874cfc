"""Hand-made ``result.json`` records whose verdicts are known, for the analysis tests.

A record follows the schema the training harness writes (status, overrides, resolved config,
final/best metrics, per-epoch history, ...). The three outcomes that matter for claim 1 have
their own helpers: :func:`trained`, :func:`plateau` (finite loss stuck at ln 10, chance
accuracy) and :func:`diverged` (non-finite loss, metrics null).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

CHANCE_LOSS = math.log(10)


def make_record(
    model_name: str = "lenet",
    bn: bool = True,
    lr: float = 0.1,
    seed: int = 0,
    depth: int | None = None,
    status: str = "completed",
    train_acc: float | None = 0.95,
    val_acc: float | None = 0.90,
    train_loss: float | None = None,
    val_loss: float | None = None,
    bn_placement: str = "before_activation",
    bn_impl: str = "torch",
    data: str = "mnist5k",
    max_epochs: int = 3,
    steps_per_epoch: int = 32,
    diverged_at_step: int | None = None,
    num_params: int = 44_000,
) -> dict[str, Any]:
    """One record; history curves run from chance to the final numbers over ``max_epochs``."""
    train_loss = _loss_for(train_acc) if train_loss is None and train_acc is not None else train_loss
    val_loss = _loss_for(val_acc) if val_loss is None and val_acc is not None else val_loss
    final = {
        "train/loss": train_loss, "train/acc": train_acc,
        "val/loss": val_loss, "val/acc": val_acc,
        "test/loss": val_loss, "test/acc": val_acc,
    }
    history = []
    epochs = max_epochs if status != "diverged" else max(1, max_epochs // 2)
    for epoch in range(epochs):
        frac = (epoch + 1) / max_epochs  # fraction of the way from chance to the final numbers
        entry = {"epoch": epoch, "step": (epoch + 1) * steps_per_epoch, "lr": lr}
        for split, acc in (("train", train_acc), ("val", val_acc)):
            if acc is None:  # diverged: the curve stops at chance
                entry[f"{split}/acc"], entry[f"{split}/loss"] = 0.1, CHANCE_LOSS
            else:
                a = 0.1 + (acc - 0.1) * (1 - (1 - frac) ** 2)
                entry[f"{split}/acc"], entry[f"{split}/loss"] = round(a, 4), round(_loss_for(a), 4)
        history.append(entry)
    best = {k: v for k, v in final.items()}
    overrides = [f"model={model_name}", f"bn={str(bn).lower()}", f"lr={lr}", f"seed={seed}"]
    if depth is not None:
        overrides.append(f"depth={depth}")
    return {
        "status": status,
        "overrides": overrides,
        "config": {
            "model_name": model_name, "bn": bn, "bn_placement": bn_placement, "bn_impl": bn_impl,
            "lr": lr, "depth": depth, "seed": seed,
            "data": {"_target_": f"bnres.data.{data}", "name": data},
            "trainer": {"max_epochs": max_epochs},
        },
        "final": final,
        "best": best,
        "history": history,
        "num_params": num_params,
        "wall_time_s": 12.5,
        "train_images_per_s": 4000.0,
        "diverged_at_step": diverged_at_step,
        "error": "training loss is not finite" if status == "diverged" else None,
    }


def trained(acc: float = 0.92, **kwargs: Any) -> dict[str, Any]:
    """A run that trains: finite loss, val acc ``acc``."""
    return make_record(train_acc=min(1.0, acc + 0.03), val_acc=acc, **kwargs)


def plateau(**kwargs: Any) -> dict[str, Any]:
    """A run that finishes with a finite loss stuck at ln(10) and chance accuracy (does not train)."""
    return make_record(train_acc=0.1, val_acc=0.1, train_loss=CHANCE_LOSS, val_loss=CHANCE_LOSS, **kwargs)


def diverged(**kwargs: Any) -> dict[str, Any]:
    """A run whose loss became non-finite: status diverged, metrics null."""
    kwargs.setdefault("diverged_at_step", 40)
    return make_record(status="diverged", train_acc=None, val_acc=None, train_loss=None, val_loss=None, **kwargs)


def depth_run(model_name: str, depth: int, train_error: float, seed: int = 0, **kwargs: Any) -> dict[str, Any]:
    """A plain/residual CIFAR-style run with a given final training error."""
    return make_record(model_name=model_name, depth=depth, seed=seed,
                       train_acc=1.0 - train_error, val_acc=max(0.1, 0.95 - train_error), **kwargs)


def write_sweep(sweep_dir: str | Path, records: list[dict[str, Any]], indent: int | None = 1) -> Path:
    """Write ``records`` as ``sweep_dir/<i>/result.json`` (the Hydra multirun layout)."""
    sweep_dir = Path(sweep_dir)
    for i, record in enumerate(records):
        job = sweep_dir / str(i)
        job.mkdir(parents=True, exist_ok=True)
        (job / "result.json").write_text(json.dumps(record, indent=indent))
    return sweep_dir


def _loss_for(acc: float) -> float:
    """A plausible cross-entropy for an accuracy (chance 0.1 -> ln 10, 1.0 -> ~0.01)."""
    return round(max(0.01, CHANCE_LOSS * (1.0 - acc) / 0.9), 4)

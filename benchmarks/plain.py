"""The plain PyTorch loop the harness is measured against: one job, no Lightning, no loggers.

It takes the very config a harness job gets and builds everything from the project's own pieces
(``bnres.models`` through ``cfg.model``, the data module's tensors and batch loader, the optimizer
and lr schedule of ``bnres.training.optim``, the divergence rule of ``bnres.training.callbacks``), seeds the way
``bnres.runs.runner`` does, and then runs the arithmetic of a training run and nothing else: the
training steps, a validation pass every epoch, a divergence stop, a test pass at the end.

    python benchmarks/plain.py JOBS.json OUT.json   # a whole sweep, one job after another (benchmarks.sweep)
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch


def limit_batches(limit: Any, available: int) -> int:
    """Number of batches a Lightning ``limit_*_batches`` value lets through."""
    if limit is None:
        return available
    if isinstance(limit, float) and limit <= 1.0:
        return int(available * limit)
    return min(int(limit), available)


def device_of(cfg) -> torch.device:
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return torch.device("cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(cfg, epochs: int | None = None, *, test: bool = True, stop_on_divergence: bool = True) -> dict[str, Any]:
    """Train one job of ``cfg`` (a composed ``train.yaml``) as a hand-written loop would.

    Returns per-epoch timings (``epochs``: images, seconds, val_seconds, cpu_seconds,
    val_cpu_seconds, val_acc), ``status`` (completed/diverged), ``diverged_at_step``, ``final``
    metrics and ``gpu_peak_bytes``. ``stop_on_divergence=False`` skips the per-check read-back of
    the loss (steady-state throughput on a GPU)."""
    from hydra.utils import instantiate
    from lightning_fabric.utilities.seed import seed_everything

    from bnres.training.callbacks import divergence_reason

    epochs = int(cfg.trainer.max_epochs if epochs is None else epochs)
    device = device_of(cfg)
    seed_everything(cfg.seed, workers=True, verbose=False)  # as bnres.runs.runner: same initial weights
    net = instantiate(cfg.model)
    data = instantiate(cfg.data)
    data.setup("fit")  # tensors on the CPU; moved below, as on_device does under the trainer
    for split, (x, y) in list(data.splits.items()):
        data.splits[split] = (x.to(device), y.to(device))
    net.to(device)
    channels_last = bool(cfg.get("channels_last", False))
    if channels_last:
        net.to(memory_format=torch.channels_last)
    forward = torch.compile(net) if cfg.get("compile", False) else net
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cfg.trainer.get("benchmark", False))
        torch.cuda.reset_peak_memory_stats(device)

    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision in ("bf16-mixed", "16-mixed"):
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        autocast = lambda: torch.autocast(device.type, dtype=dtype)  # noqa: E731
    elif precision in ("32-true", "32"):
        autocast = None
    else:
        raise ValueError(f"the plain loop does not implement trainer.precision={precision}")
    scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None

    epoch = 0
    train_loader = data.loader("train", epoch_fn=lambda: epoch)
    steps = limit_batches(cfg.trainer.get("limit_train_batches"), len(train_loader))
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=max(1, steps * epochs)) if cfg.get("scheduler") else None
    loss_fn = torch.nn.CrossEntropyLoss()
    check_every = int(cfg.divergence.check_every_n_steps)
    loss_factor = float(cfg.divergence.loss_factor)

    def logits_of(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if autocast is None:
            return forward(x)
        with autocast():
            return forward(x)

    def evaluate(split: str, limit: Any) -> dict[str, float]:
        net.eval()
        loader = data.loader(split)
        n_batches = limit_batches(limit, len(loader))
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        count = 0
        with torch.no_grad():
            for i, (x, y) in enumerate(loader):
                if i >= n_batches:
                    break
                logits = logits_of(x)
                total_loss += loss_fn(logits.float(), y) * len(y)
                correct += (logits.argmax(-1) == y).sum()
                count += len(y)
        count = max(count, 1)
        return {f"{split}/loss": float(total_loss) / count, f"{split}/acc": float(correct) / count}  # one read-back

    results: list[dict[str, float]] = []
    status, diverged_at, reason = "completed", None, None
    initial_loss: float | None = None
    worst: torch.Tensor | None = None
    train_loss = torch.zeros((), device=device)
    step, seen = 0, 0
    val: dict[str, float] = {}
    for epoch in range(epochs):
        sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        net.train()
        train_loss.zero_()
        seen = 0
        for i, (x, y) in enumerate(train_loader):
            if i >= steps:
                break
            optimizer.zero_grad(set_to_none=True)
            logits = logits_of(x)
            loss = loss_fn(logits.float() if autocast is not None else logits, y)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            if scheduler is not None:
                scheduler.step()
            step += 1
            seen += len(y)
            detached = loss.detach().float()
            train_loss += detached * len(y)
            if stop_on_divergence:
                worst = detached if worst is None else torch.maximum(worst, detached)
                if initial_loss is None:
                    initial_loss = float(detached)
                if step % check_every == 0:
                    reason = divergence_reason(float(worst), initial_loss, loss_factor, step)
                    worst = None
                    if reason:
                        status, diverged_at = "diverged", step
                        break
        sync(device)
        val_start, val_cpu_start = time.perf_counter(), time.process_time()
        val = evaluate("val", cfg.trainer.get("limit_val_batches"))
        sync(device)
        end, cpu_end = time.perf_counter(), time.process_time()
        results.append({
            "images": seen, "seconds": end - start, "val_seconds": end - val_start,
            "cpu_seconds": cpu_end - cpu_start, "val_cpu_seconds": cpu_end - val_cpu_start, "val_acc": val["val/acc"],
        })
        if status == "diverged":
            break
    final = {"train/loss": float(train_loss) / max(seen, 1), **val}
    if test and status == "completed":
        final.update(evaluate("test", cfg.trainer.get("limit_test_batches")))
    return {
        "epochs": results, "status": status, "diverged_at_step": diverged_at, "error": reason, "final": final,
        "gpu_peak_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
    }


def run_jobs(jobs_path: Path, out_path: Path) -> int:
    """A sweep's jobs (``[{"overrides": [...], "config": {...resolved...}}, ...]``), one after another."""
    from omegaconf import OmegaConf

    jobs = json.loads(Path(jobs_path).read_text())
    out = []
    for job in jobs:
        start = time.perf_counter()
        result = train(OmegaConf.create(job["config"]))
        out.append({"overrides": job["overrides"], "status": result["status"], "final": result["final"],
                    "diverged_at_step": result["diverged_at_step"], "seconds": time.perf_counter() - start})
        print(f"{' '.join(job['overrides'])}: {result['status']} val/acc {result['final'].get('val/acc', math.nan):.4f} "
              f"({out[-1]['seconds']:.2f} s)", flush=True)
    Path(out_path).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(run_jobs(Path(sys.argv[1]), Path(sys.argv[2])))

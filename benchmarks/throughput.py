"""Harness overhead benchmark: the same training run through ``bnres.runs.runner.run`` and through a plain loop.

Both ways train the same network (same seed, same initial weights) on the same in-memory tensors
with the same batch size, optimizer, lr schedule and precision. The harness way is a normal run:
the config is composed from ``conf/train.yaml`` with Hydra and handed to :func:`bnres.runs.runner.run`,
so it gets the data module, the ``Classifier``, the configured callbacks, the loggers (W&B offline
by default) and the checkpoints a user's run gets. The only addition is :class:`ThroughputProbe`,
a callback that reads the clock a few times per epoch. The plain way is a hand-written PyTorch
loop (:func:`benchmarks.plain.train`) that does the same arithmetic and nothing else.

Both ways run a validation pass every epoch (the harness because a normal run does, the plain loop
so that memory and epoch time compare like for like). Figures:

* ``train img/s``: training images / training seconds. An epoch's seconds run from its start to
  the next epoch's start, so everything the harness does at an epoch's end (metric reduction,
  logging, checkpointing) counts; the validation forward passes are subtracted on both sides.
* ``epoch img/s``: the same with validation left in.

Epoch 0 is warm-up and never counted. Each (case, way) runs in its own worker process (imported
once, then reused for every repeat), the parent interleaves repeats harness, raw, harness, raw...,
and reports the median and the spread (min..max) over repeats. Peak memory is the worker's
resident-set high-water mark (``getrusage``: the worker does nothing else) and, on CUDA,
``torch.cuda.max_memory_allocated`` per repeat.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks import plain


@dataclass
class Case:
    """One network/data combination to benchmark."""

    name: str
    overrides: list[str]
    epochs: int = 4  # measured epochs per repeat (after one warm-up epoch)
    warmup_epochs: int = 1


# the default cases (full sizes: the defaults of a normal run, apart from the number of epochs)
CASES = {
    "lenet-mnist5k": Case("lenet-mnist5k", ["model=lenet", "data=mnist5k"], epochs=12),
    "resnet20-synthetic": Case("resnet20-synthetic", ["model=resnet_cifar", "depth=20", "data=synthetic"], epochs=3),
}

# --quick: tiny sizes, for the test suite (the figures mean nothing, the code paths are the same)
QUICK = {
    "lenet-mnist5k": ["data.batch_size=32", "data.eval_batch_size=100", "trainer.limit_train_batches=6", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"],
    "resnet20-synthetic": [
        "data.num_samples=192", "data.val_size=32", "data.test_size=32", "data.batch_size=16", "data.eval_batch_size=32",
        "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
    ],
}


def gpu_overrides() -> list[str]:
    return ["trainer=gpu"]


def _rss_kib() -> int:
    """Current resident set size of this process (KiB)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:  # not Linux: fall back to the high-water mark
        return _peak_rss_kib()


def _peak_rss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


# --- the harness way -----------------------------------------------------------------------
try:
    import pytorch_lightning as pl

    class ThroughputProbe(pl.Callback):
        """Clock readings only: per-epoch training images, wall seconds and validation seconds.

        An epoch lasts from its ``on_train_epoch_start`` to the next one's (or ``on_train_end``),
        so the epoch-end work of every other callback and logger is inside it."""

        def __init__(self, path: str | None = None) -> None:
            self.path = path
            self.epochs: list[dict[str, float]] = []
            self._start: tuple[float, float] | None = None
            self._images = 0
            self._val = (0.0, 0.0)
            self._val_start = (0.0, 0.0)
            self._device = torch.device("cpu")

        def _now(self) -> tuple[float, float]:
            plain.sync(self._device)
            return time.perf_counter(), time.process_time()

        def _close(self, now: tuple[float, float]) -> None:
            if self._start is not None:
                self.epochs.append({
                    "images": self._images,
                    "seconds": now[0] - self._start[0], "val_seconds": self._val[0],
                    "cpu_seconds": now[1] - self._start[1], "val_cpu_seconds": self._val[1],
                })
            self._start, self._images, self._val = None, 0, (0.0, 0.0)

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._device = pl_module.device
            now = self._now()
            self._close(now)
            self._start = now

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self._images += len(batch[1]) * trainer.world_size

        def on_validation_start(self, trainer, pl_module) -> None:
            if trainer.state.fn == "fit":
                self._val_start = self._now()

        def on_validation_end(self, trainer, pl_module) -> None:
            # runs before ModelCheckpoint's on_validation_end (Lightning puts checkpoint callbacks
            # last), so saving checkpoints counts as harness time, not validation time
            if trainer.state.fn == "fit":
                now = self._now()
                self._val = (self._val[0] + now[0] - self._val_start[0], self._val[1] + now[1] - self._val_start[1])

        def on_train_end(self, trainer, pl_module) -> None:
            self._close(self._now())
            if self.path:
                Path(self.path).write_text(json.dumps(self.epochs))

except ImportError:  # pragma: no cover - Lightning is a dependency
    pass


def harness_phase(overrides: list[str], epochs: int, work_dir: Path, repeat: int = 0) -> dict[str, Any]:
    """One normal run through ``bnres.runs.runner.run`` with a probe callback; per-epoch timings back."""
    from omegaconf import open_dict

    from bnres.runs import runner

    out = Path(work_dir) / f"harness-{repeat}"
    probe_path = out / "probe.json"
    cfg = runner.compose_config([*overrides, f"trainer.max_epochs={epochs}", "fresh=true"], out)
    with open_dict(cfg):
        if not cfg.get("callbacks"):
            cfg.callbacks = {}
        cfg.callbacks["zz_throughput_probe"] = {"_target_": "benchmarks.throughput.ThroughputProbe", "path": str(probe_path)}
    device = plain.device_of(cfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    record = runner.run(cfg)
    if record["status"] != "completed":
        raise RuntimeError(f"harness run {record['status']}: {record.get('error')}")
    out.mkdir(parents=True, exist_ok=True)
    return {
        "epochs": json.loads(probe_path.read_text()),
        "gpu_peak_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "final": record.get("final", {}),
    }


# --- the plain way -------------------------------------------------------------------------
def raw_phase(overrides: list[str], epochs: int, work_dir: Path, repeat: int = 0) -> dict[str, Any]:
    """The same training written as a plain PyTorch loop (:func:`benchmarks.plain.train`): no Lightning,
    no metrics objects, no loggers; no loss read-backs for a divergence check, no test pass."""
    from bnres.runs.runner import compose_config

    cfg = compose_config(overrides, Path(work_dir) / f"raw-{repeat}")
    result = plain.train(cfg, epochs, test=False, stop_on_divergence=False)
    last = result["epochs"][-1]
    return {"epochs": result["epochs"], "gpu_peak_bytes": result["gpu_peak_bytes"],
            "final": {"train/loss": result["final"]["train/loss"], "val/acc": last["val_acc"]}}


PHASES = {"harness": harness_phase, "raw": raw_phase}


# --- worker processes ----------------------------------------------------------------------
def _worker(way: str, overrides: list[str], work_dir: str, log_path: str, conn, threads: int | None = None) -> None:
    """Runs one way of one case, repeat after repeat, on request from the parent."""
    if threads:
        torch.set_num_threads(threads)
    with open(log_path, "a") as log:  # progress bars and W&B chatter go to a log file, not the report
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    base = {"rss_after_import_kib": _rss_kib(), "threads": torch.get_num_threads(), "pid": os.getpid()}
    conn.send({"ready": True, **base})
    while True:
        msg = conn.recv()
        if msg is None:
            break
        try:
            result = PHASES[way](overrides, msg["epochs"], Path(work_dir), msg["repeat"])
            result.update(base, peak_rss_kib=_peak_rss_kib(), threads=torch.get_num_threads())
            conn.send(result)
        except BaseException as err:  # reported by the parent, with the log file
            import traceback

            traceback.print_exc()
            conn.send({"error": f"{type(err).__name__}: {err}"})
    conn.close()


@dataclass
class Measurement:
    case: str
    device: str
    way: str
    train_ips: list[float] = field(default_factory=list)  # per repeat, steady state, validation excluded
    epoch_ips: list[float] = field(default_factory=list)  # per repeat, validation included
    cpu_ips: list[float] = field(default_factory=list)  # per repeat, per CPU-second of the worker, validation excluded
    peak_rss_mib: float | None = None
    rss_after_import_mib: float | None = None
    gpu_peak_mib: float | None = None
    threads: int | None = None
    final: dict = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "case": self.case, "device": self.device, "way": self.way,
            "train_images_per_s": _stats(self.train_ips), "epoch_images_per_s": _stats(self.epoch_ips),
            "train_images_per_cpu_s": _stats(self.cpu_ips),
            "peak_rss_mib": self.peak_rss_mib, "rss_after_import_mib": self.rss_after_import_mib,
            "gpu_peak_mib": self.gpu_peak_mib, "torch_threads": self.threads, "final": self.final,
        }


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "repeats": []}
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values), "spread_pct": 100 * (max(values) - min(values)) / med if med else None, "repeats": values}


def steady_state(epochs: list[dict[str, float]], warmup: int) -> dict[str, float]:
    """Images per second over the epochs after ``warmup``: ``train`` (validation excluded), ``epoch``
    (validation included) and ``train_cpu`` (per CPU-second of this process, validation excluded)."""
    measured = epochs[warmup:] or epochs
    images = sum(e["images"] for e in measured)

    def rate(seconds: float) -> float:
        return images / seconds if seconds > 0 else math.nan

    return {
        "train": rate(sum(e["seconds"] - e["val_seconds"] for e in measured)),
        "epoch": rate(sum(e["seconds"] for e in measured)),
        "train_cpu": rate(sum(e["cpu_seconds"] - e["val_cpu_seconds"] for e in measured)),
    }


def run_case(case: Case, device: str, repeats: int, extra: list[str], work_dir: Path, echo=print, threads: int | None = None) -> dict[str, Measurement]:
    """Measure one case both ways, repeats interleaved harness/raw (order alternating per repeat)."""
    import multiprocessing as mp

    overrides = [*case.overrides, *(gpu_overrides() if device == "gpu" else []), *extra]
    epochs = case.warmup_epochs + case.epochs
    ctx = mp.get_context("spawn")
    workers = {}
    for way in PHASES:
        parent, child = ctx.Pipe()
        log_path = work_dir / f"{case.name}-{device}-{way}.log"
        proc = ctx.Process(target=_worker, args=(way, overrides, str(work_dir / f"{case.name}-{device}"), str(log_path), child, threads), daemon=True)
        proc.start()
        workers[way] = (proc, parent, log_path)
    out = {way: Measurement(case.name, device, way) for way in PHASES}
    try:
        for way, (proc, conn, log_path) in workers.items():
            hello = _receive(conn, proc, log_path)
            out[way].rss_after_import_mib = hello["rss_after_import_kib"] / 1024
        for r in range(repeats):
            order = list(PHASES) if r % 2 == 0 else list(PHASES)[::-1]  # ABBA...: neither way always goes first
            for way in order:
                proc, conn, log_path = workers[way]
                conn.send({"epochs": epochs, "repeat": r})
                res = _receive(conn, proc, log_path)
                rates = steady_state(res["epochs"], case.warmup_epochs)
                m = out[way]
                m.train_ips.append(rates["train"])
                m.epoch_ips.append(rates["epoch"])
                m.cpu_ips.append(rates["train_cpu"])
                m.peak_rss_mib = res["peak_rss_kib"] / 1024
                m.threads = res["threads"]
                m.final = res.get("final", {})
                if res.get("gpu_peak_bytes") is not None:
                    m.gpu_peak_mib = max(m.gpu_peak_mib or 0.0, res["gpu_peak_bytes"] / 2**20)
                echo(f"  {case.name} [{device}] repeat {r + 1}/{repeats} {way:7s} train {rates['train']:9.1f} img/s   epoch {rates['epoch']:9.1f} img/s   per CPU-s {rates['train_cpu']:9.1f}   (load {os.getloadavg()[0]:.2f})")
    finally:
        for proc, conn, _ in workers.values():
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    return out


def _receive(conn, proc, log_path: Path) -> dict[str, Any]:
    while not conn.poll(1.0):
        if not proc.is_alive():
            raise RuntimeError(f"benchmark worker died (exit {proc.exitcode}); see {log_path}:\n{_tail(log_path)}")
    msg = conn.recv()
    if "error" in msg:
        raise RuntimeError(f"benchmark worker failed: {msg['error']}; see {log_path}:\n{_tail(log_path)}")
    return msg


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def report(results: list[dict[str, Measurement]]) -> tuple[str, list[dict[str, Any]]]:
    lines, rows = [], []
    header = (f"{'case':19s} {'device':6s} {'way':8s} {'train img/s: median (min..max)':35s} {'epoch img/s, with val':35s} "
              f"{'img per CPU-s':>13s} {'peak RSS MiB':>12s} {'GPU peak MiB':>12s} thr")
    lines += [header, "-" * len(header)]
    for res in results:
        h, r = res["harness"], res["raw"]
        for m in (h, r):
            s = m.summary()
            gpu = f"{m.gpu_peak_mib:12.1f}" if m.gpu_peak_mib is not None else f"{'-':>12s}"
            cpu = s["train_images_per_cpu_s"]["median"]
            lines.append(f"{m.case:19s} {m.device:6s} {m.way:8s} {_fmt(s['train_images_per_s']):35s} {_fmt(s['epoch_images_per_s']):35s} "
                         f"{cpu:13.1f} {m.peak_rss_mib:12.1f} {gpu} {m.threads}")
        ratios = {"train": _ratio(h.train_ips, r.train_ips), "epoch": _ratio(h.epoch_ips, r.epoch_ips), "cpu": _ratio(h.cpu_ips, r.cpu_ips)}
        lines.append(f"{h.case:19s} {h.device:6s} ratio harness/raw: {ratios['train']:.3f} training   {ratios['epoch']:.3f} with validation   "
                     f"{ratios['cpu']:.3f} per CPU-second")
        rows.append({"case": h.case, "device": h.device, "harness": h.summary(), "raw": r.summary(),
                     "ratio": ratios["train"], "ratio_with_val": ratios["epoch"], "ratio_cpu": ratios["cpu"]})
    return "\n".join(lines), rows


def _fmt(stats: dict[str, Any]) -> str:
    if stats["median"] is None:
        return "n/a"
    return f"{stats['median']:8.1f} ({stats['min']:.1f}..{stats['max']:.1f})"


def _ratio(a: list[float], b: list[float]) -> float:
    if not a or not b:
        return math.nan
    return statistics.median(a) / statistics.median(b)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Training throughput of the harness (bnres.runs.runner.run) vs a plain PyTorch loop.")
    p.add_argument("--quick", action="store_true", help="tiny sizes and 2 repeats (for tests: the figures mean nothing)")
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES), help="which cases (default: all)")
    p.add_argument("--devices", nargs="+", choices=("cpu", "gpu"), default=None, help="default: cpu, and gpu when CUDA is available")
    p.add_argument("--repeats", type=int, default=None, help="repeats per way (default 5; 2 with --quick)")
    p.add_argument("--epochs", type=int, default=None, help="measured epochs per repeat (default: per case; 2 with --quick)")
    p.add_argument("--override", "-o", action="append", default=[], metavar="KEY=VALUE", help="Hydra override applied to both ways, e.g. -o trainer.precision=bf16-mixed -o channels_last=true")
    p.add_argument("--threads", type=int, default=None, help="torch threads in both ways (default: torch's default; 1 is steadier on a loaded machine)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--work-dir", type=Path, default=None, help="run folders and worker logs (default: a temporary folder)")
    args = p.parse_args(argv)

    devices = args.devices or (["cpu", "gpu"] if torch.cuda.is_available() else ["cpu"])
    if "gpu" in devices and not torch.cuda.is_available():
        p.error("--devices gpu: no CUDA device is visible")
    repeats = args.repeats or (2 if args.quick else 5)
    tmp = tempfile.TemporaryDirectory(prefix="bnres-bench-") if args.work_dir is None else None
    work_dir = Path(tmp.name) if tmp else args.work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    print(f"bnres benchmark: torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {args.threads or torch.get_num_threads()}, "
          f"CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}, "
          f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", flush=True)
    results = []
    started = time.perf_counter()
    try:
        for device in devices:
            for name in args.cases:
                case = CASES[name]
                extra = list(args.override)
                if args.quick:
                    case = Case(case.name, case.overrides, epochs=2, warmup_epochs=1)
                    extra = [*QUICK[name], *extra]
                if args.epochs:
                    case = Case(case.name, case.overrides, epochs=args.epochs, warmup_epochs=case.warmup_epochs)
                print(f"{name} [{device}]: {case.warmup_epochs} warm-up + {case.epochs} measured epochs x {repeats} repeats per way; "
                      f"overrides: {' '.join([*case.overrides, *extra]) or '-'}", flush=True)
                results.append(run_case(case, device, repeats, extra, work_dir, echo=lambda s: print(s, flush=True), threads=args.threads))
    finally:
        if tmp:
            tmp.cleanup()
    load_after = os.getloadavg()
    text, rows = report(results)
    print()
    print(text)
    print(f"\nwall {time.perf_counter() - started:.0f} s; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"(other processes on the machine slow both ways, 2-thread torch especially)")
    if args.json:
        args.json.write_text(json.dumps({"load_before": load_before, "load_after": load_after, "threads": torch.get_num_threads(), "results": rows}, indent=2))
    return 0



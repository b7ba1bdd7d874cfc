"""Sweep throughput: a whole sweep through ``scripts/train.py -m`` vs the same jobs as one plain PyTorch script.

    python scripts/benchmark.py --sweep                               # experiment=bn_lr seed=0 (14 jobs), 3 repeats
    python scripts/benchmark.py --sweep --ways harness plain harness-2x1 plain-2x1   # also two 1-thread jobs at a time
    python scripts/benchmark.py --sweep -- experiment=depth seed=0    # any sweep (Hydra overrides after --)

A sweep is paid for as a whole: the researcher waits for its last job. So each way is timed as
whole processes, from start to exit, imports included:

* ``harness``: ``python scripts/train.py -m <overrides> hydra/launcher=basic``, a real multirun (default
  callbacks, checkpoints, offline W&B, records, the sweep summary), one job after another.
* ``plain``: ``python benchmarks/plain.py``, one process running the same jobs one after another as a
  hand-written loop (:func:`benchmarks.plain.train`: same configs, data tensors, networks,
  optimizer, lr schedule, epochs, a validation pass per epoch, a divergence stop, a test at the end).
* ``harness-2x1``: the multirun with ``hydra/launcher=packed packing.jobs_per_gpu=2``: two jobs at a
  time, each with half the cores as torch threads (the launcher sets them: one each on 2 cores).
* ``plain-2x1``: two plain processes side by side, each with every other job, one thread each.

The job list is Hydra's own expansion of the preset's grid and the overrides (the basic sweeper's
``split_arguments``), each job's config is composed as ``scripts/train.py`` composes it. Repeats
alternate the ways (ABBA...), and the report gives the median and min..max per way, the ratio of
the plain serial loop's time to each way's (1.0: as fast as the plain loop; above 1: faster), and
whether both ways reached the same outcome per job (status, final val accuracy).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
PLAIN_SCRIPT = ROOT / "benchmarks" / "plain.py"

DEFAULT_SWEEP = ["experiment=bn_lr", "seed=0"]
# --quick: two tiny jobs (the figures mean nothing; the code paths are the real ones)
QUICK_SWEEP = [
    "experiment=bn_lr", "seed=0", "lr=0.1", "trainer.max_epochs=2", "data.eval_batch_size=100",
    "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
]


@dataclass(frozen=True)
class Way:
    kind: str  # "harness" or "plain"
    jobs_at_once: int = 1  # >1: that many jobs side by side, one torch thread each


WAYS = {
    "harness": Way("harness"),
    "plain": Way("plain"),
    "harness-2x1": Way("harness", 2),
    "plain-2x1": Way("plain", 2),
}
# the launcher is named on every harness command line: the CPU presets pick packed_cpu themselves
SERIAL = ["hydra/launcher=basic"]
PACKED = ["hydra/launcher=packed"]  # + packing.jobs_per_gpu=N (each job's torch threads: packing.threads_per_job, auto)


def sweep_jobs(overrides: list[str], work_dir: Path) -> list[list[str]]:
    """The override list of every job ``scripts/train.py -m <overrides>`` runs, in order: the preset's
    ``hydra.sweeper.params`` then the command line, expanded by Hydra's basic sweeper."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from bnres.runs.runner import compose_config

    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(list(overrides)) if not o.is_sweep_override()]
    cfg = compose_config(fixed, work_dir)
    params = cfg.hydra.sweeper.get("params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    return [job for batch in BasicSweeper.split_arguments(parser.parse_overrides(args), None) for job in batch]


def job_configs(jobs: list[list[str]], work_dir: Path) -> list[dict[str, Any]]:
    """Each job's resolved config, composed as ``scripts/train.py`` composes it."""
    from bnres.runs.runner import compose_config, resolved_config

    return [{"overrides": job, "config": resolved_config(compose_config(job, work_dir / f"compose-{i}"))} for i, job in enumerate(jobs)]


def _env(threads: int | None) -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    env.pop("WANDB_API_KEY", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    else:
        env.pop("OMP_NUM_THREADS", None)  # torch's default: one thread per core
    return env


def run_harness(overrides: list[str], sweep_dir: Path, log_path: Path, threads: int | None = None, jobs_at_once: int = 1) -> dict[str, Any]:
    """``scripts/train.py -m`` as a user runs it; wall seconds and each job's status and final val/acc."""
    from bnres.runs.sweep_summary import sweep_statuses

    launcher = [*PACKED, f"packing.jobs_per_gpu={jobs_at_once}"] if jobs_at_once > 1 else SERIAL
    cmd = [sys.executable, str(TRAIN_SCRIPT), "-m", *overrides, *launcher, f"hydra.sweep.dir={sweep_dir}"]
    with open(log_path, "w") as log:
        start = time.perf_counter()
        # packed: the launcher sets each job's threads (cores // jobs at once), as a user's sweep gets them
        code = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=_env(None if jobs_at_once > 1 else threads))
        wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} exited {code}; see {log_path}")
    rows = sweep_statuses(sweep_dir)
    launcher_keys = tuple(o.split("=")[0] + "=" for o in launcher)  # the way's own overrides, not the job's
    jobs = [[o for o in r["overrides"].split() if not o.startswith(launcher_keys)] for r in rows]
    return {"wall_s": wall, "jobs": [{"overrides": job, "status": r["status"], "val/acc": r["val/acc"]} for job, r in zip(jobs, rows)]}


def run_plain(configs: list[dict[str, Any]], work_dir: Path, log_path: Path, threads: int | None = None, jobs_at_once: int = 1) -> dict[str, Any]:
    """The same jobs through :mod:`benchmarks.plain`, in ``jobs_at_once`` processes side by side (every
    n-th job each, one thread each); wall seconds from the first start to the last exit."""
    work_dir.mkdir(parents=True, exist_ok=True)
    env = _env(1 if jobs_at_once > 1 else threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    procs = []
    with open(log_path, "w") as log:
        start = time.perf_counter()
        for k in range(jobs_at_once):
            share = work_dir / f"jobs{k}.json"
            share.write_text(json.dumps(configs[k::jobs_at_once]))
            procs.append((subprocess.Popen([sys.executable, str(PLAIN_SCRIPT), str(share), str(work_dir / f"out{k}.json")],
                                           cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env), work_dir / f"out{k}.json"))
        codes = [proc.wait() for proc, _ in procs]
        wall = time.perf_counter() - start
    if any(codes):
        raise RuntimeError(f"plain sweep exited {codes}; see {log_path}")
    jobs = [j for _, out in procs for j in json.loads(out.read_text())]
    return {"wall_s": wall, "jobs": [{"overrides": j["overrides"], "status": j["status"], "val/acc": j["final"].get("val/acc")} for j in jobs]}


@dataclass
class WayResult:
    name: str
    walls: list[float] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)  # the last repeat's per-job outcomes

    def stats(self) -> dict[str, Any]:
        med = statistics.median(self.walls)
        return {"median_s": med, "min_s": min(self.walls), "max_s": max(self.walls),
                "spread_pct": 100 * (max(self.walls) - min(self.walls)) / med, "repeats_s": self.walls}


def run_sweep_benchmark(overrides: list[str], ways: list[str], repeats: int, work_dir: Path, threads: int | None = None, echo=print) -> dict[str, Any]:
    """Time every way ``repeats`` times, alternating; return per-way results, ratios and outcome agreement."""
    work_dir.mkdir(parents=True, exist_ok=True)
    jobs = sweep_jobs(overrides, work_dir / "compose")
    configs = job_configs(jobs, work_dir / "compose")
    echo(f"sweep: {' '.join(overrides)}: {len(jobs)} jobs; ways {', '.join(ways)}; {repeats} repeats, alternating")
    results = {name: WayResult(name) for name in ways}
    for r in range(repeats):
        for name in (ways if r % 2 == 0 else ways[::-1]):
            way = WAYS[name]
            folder = work_dir / f"{name}-{r}"
            log = work_dir / f"{name}-{r}.log"
            if way.kind == "harness":
                res = run_harness(overrides, folder, log, threads, way.jobs_at_once)
            else:
                res = run_plain(configs, folder, log, threads, way.jobs_at_once)
            results[name].walls.append(res["wall_s"])
            results[name].jobs = res["jobs"]
            counts = _counts(res["jobs"])
            echo(f"  repeat {r + 1}/{repeats} {name:12s} {res['wall_s']:7.1f} s   ({counts})   load {os.getloadavg()[0]:.2f}")
    return summarize(results, len(jobs), threads)


def _counts(jobs: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j["status"]] = counts.get(j["status"], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def _agreement(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Per job (matched by overrides): same status? largest |difference| in final val/acc."""
    index = {tuple(sorted(j["overrides"])): j for j in b}
    same, deltas, matched = 0, [], 0
    for j in a:
        other = index.get(tuple(sorted(j["overrides"])))
        if other is None:
            continue
        matched += 1
        same += j["status"] == other["status"]
        if j["status"] == other["status"] == "completed" and j["val/acc"] is not None and other["val/acc"] is not None:
            deltas.append(abs(j["val/acc"] - other["val/acc"]))
    return {"matched": matched, "same_status": same, "max_val_acc_diff": max(deltas) if deltas else None}


def summarize(results: dict[str, WayResult], n_jobs: int, threads: int | None) -> dict[str, Any]:
    baseline = results.get("plain")
    out: dict[str, Any] = {"jobs": n_jobs, "threads": threads, "ways": {}}
    for name, res in results.items():
        row = {**res.stats(), "jobs_at_once": WAYS[name].jobs_at_once, "threads_per_job": 1 if WAYS[name].jobs_at_once > 1 else threads}
        row["per_job_s"] = row["median_s"] / max(n_jobs, 1)
        if baseline is not None:
            row["plain_over_this"] = statistics.median(baseline.walls) / row["median_s"]
            if name != "plain":
                row["agreement_with_plain"] = _agreement(res.jobs, baseline.jobs)
        out["ways"][name] = row
    return out


def format_report(summary: dict[str, Any]) -> str:
    threads = summary["threads"] or "torch default"
    lines = [f"{'way':12s} {'wall s: median (min..max)':28s} {'spread':>7s} {'s/job':>6s} {'jobs x threads':>15s} {'plain/this':>10s}  same outcome as plain",
             "-" * 110]
    for name, row in summary["ways"].items():
        shape = f"{row['jobs_at_once']} x {row['threads_per_job'] or threads}"
        ratio = f"{row['plain_over_this']:10.2f}" if "plain_over_this" in row else f"{'-':>10s}"
        agree = row.get("agreement_with_plain")
        agree_text = (f"{agree['same_status']}/{agree['matched']} statuses, max |d val/acc| "
                      f"{agree['max_val_acc_diff']:.4f}" if agree and agree["max_val_acc_diff"] is not None
                      else (f"{agree['same_status']}/{agree['matched']} statuses" if agree else ""))
        lines.append(f"{name:12s} {row['median_s']:8.1f} ({row['min_s']:.1f}..{row['max_s']:.1f}){'':9s} {row['spread_pct']:6.0f}% "
                     f"{row['per_job_s']:6.2f} {shape:>15s} {ratio}  {agree_text}")
    if "harness" in summary["ways"] and "plain" in summary["ways"]:
        h = summary["ways"]["harness"]
        lines.append(f"ratio plain/harness: {h['plain_over_this']:.3f} (the harness sweep takes {1 / h['plain_over_this']:.2f}x the plain loop's time)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="scripts/benchmark.py --sweep", description="Whole-sweep wall time: scripts/train.py -m vs a plain PyTorch loop.")
    p.add_argument("--quick", action="store_true", help="two tiny jobs and 2 repeats (for tests: the figures mean nothing)")
    p.add_argument("--ways", nargs="+", choices=list(WAYS), default=["harness", "plain"], help="default: harness plain")
    p.add_argument("--repeats", type=int, default=None, help="repeats per way (default 3; 2 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the one-job-at-a-time ways (default: torch's default)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--work-dir", type=Path, default=None, help="sweep folders and logs (default: a temporary folder)")
    p.add_argument("overrides", nargs="*", help=f"the sweep, as scripts/train.py -m overrides (default: {' '.join(DEFAULT_SWEEP)})")
    args = p.parse_args(argv)

    import torch

    overrides = args.overrides or (QUICK_SWEEP if args.quick else DEFAULT_SWEEP)
    repeats = args.repeats or (2 if args.quick else 3)
    tmp = tempfile.TemporaryDirectory(prefix="bnres-sweep-bench-") if args.work_dir is None else None
    work_dir = Path(tmp.name) if tmp else args.work_dir
    load_before = os.getloadavg()
    print(f"bnres sweep benchmark: torch {torch.__version__}, {os.cpu_count()} CPUs, threads {args.threads or 'torch default'}, "
          f"CUDA {'yes' if torch.cuda.is_available() else 'no'}, load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", flush=True)
    started = time.perf_counter()
    try:
        summary = run_sweep_benchmark(list(overrides), args.ways, repeats, work_dir, args.threads, echo=lambda s: print(s, flush=True))
    finally:
        if tmp:
            tmp.cleanup()
    load_after = os.getloadavg()
    summary.update(overrides=list(overrides), load_before=load_before, load_after=load_after)
    print()
    print(format_report(summary))
    print(f"\nwall {time.perf_counter() - started:.0f} s; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"(other processes on the machine slow every way)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0

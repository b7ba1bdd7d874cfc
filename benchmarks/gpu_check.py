"""GPU acceptance in one command: every GPU path of the harness, run for real and measured.

    python scripts/gpu_check.py                        # on a GPU machine: about 7.5 minutes on one H200
    python scripts/gpu_check.py --out DIR              # where the results go (default results/gpu_check/<time>)
    python scripts/gpu_check.py --only fast_path,ddp   # some parts only (names below)
    python scripts/gpu_check.py --dry                  # CPU stand-ins at tiny sizes: checks this script itself

Parts, in the order they run, and what each is budgeted on one H200 (the runs are a few hundred
steps; compile and process start-up are most of the time; 7.7 minutes in all). The budgets are
estimates until the check has run on a GPU; the JSON and the table give each part's real time.
Any one run (or benchmark case) is killed after 240 s.

| part | what runs | checks / measures | budget |
|---|---|---|---|
| fast_path | ``scripts/train.py trainer=gpu trainer.precision=bf16-mixed channels_last=true compile=true trainer.benchmark=true``, ResNet-20, CIFAR-shaped synthetic data on the device with augmentation on the device, 3 epochs x 100 steps | record ``completed``, loss falling, the switches in the record | 90 s |
| ddp | ``trainer=ddp trainer.devices=<every GPU> sync_batchnorm=true`` (one GPU: devices=1 through the DDP path), 3 x 100 steps per GPU | the same, and a log per rank | 40 s |
| host_syncs | the fast path without compile, 2 x 50 steps, logging less often than the run is long, with ``bnres.training.host_sync.HostSyncCounter`` in the run's callbacks | host reads and synchronizing CUDA calls inside training steps: must be 0 | 30 s |
| packed | ``-m hydra/launcher=packed`` on one GPU: 1, 4 and 8 ResNet-20 jobs at once (bf16, channels_last), 4 epochs x 40 steps each | every record ``completed`` with loss falling, N slots in use at once; images/s of N jobs together vs one | 110 s |
| he_epoch | the He et al. recipe (``experiment=_he2016_cifar10``, ResNet-20; CIFAR-10 when it is in ``paths.data_dir``, else synthetic data of its size), warm-up epoch + 1 timed epoch, harness and plain loop | one epoch (validation in), x 164 = the full recipe | 40 s |
| harness_vs_raw | ResNet-20 and ResNet-18 (small stem), CIFAR shape, batch 128, fp32 and bf16+channels_last+compile, harness vs plain loop side by side (the speed benchmark's machinery), 2 repeats | training images/s, ratio harness/plain, GPU peak memory | 150 s |

A part not begun within ``--max-minutes`` (default 8) is reported ``skipped``. Each part runs in its own
``try``: one that fails is reported ``failed`` with its error and the others still run; every run has
a time limit (a hung run is killed with its process group). The exit status is 1 if any part failed.

Results: ``<out>/gpu_check.json`` (everything), ``<out>/gpu_check.md`` (the tables: card, driver, torch,
checks, figures), both rewritten after every part; ``<out>/runs/`` holds every run's folder and log.
The Markdown is also printed at the end.

``--dry`` runs on CPU with tiny sizes, so that the test suite keeps this script working: each part runs
its CPU stand-in (trainer=cpu, gloo DDP with 2 processes, packed CPU jobs) and what needs CUDA (compile,
the cuDNN autotuner, CUDA sync counting, the bf16+compile measurements) is reported ``skipped`` with the
reason. Dry figures mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:  # check the bnres of this checkout, whichever one is installed
    sys.path.insert(0, str(SRC))
TRAIN = ROOT / "scripts" / "train.py"
HE_EPOCHS = 164  # the recipe's trainer.max_epochs (conf/experiment/_he2016_cifar10.yaml)

from bnres.runs.record import read_record  # noqa: E402


def harness_benchmark():
    """The speed benchmark's harness-vs-plain-loop machinery (``Case``, ``run_case``, ``report``).

    The one place this script names the benchmark's module (``benchmarks/throughput.py``, beside ``scripts/``)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import throughput

    return throughput


# --- sizes ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Sizes:
    batch: int = 128
    image: int = 32
    eval_images: int = 512  # validation and test images, a multiple of batch: no odd-sized batch to recompile for
    depth: int = 20  # ResNet depth of the check runs
    augment: bool = True  # dry: off (at 16x16 and a few steps, pad-4 crops hide whether the loss falls)
    check_batches: int = 100  # per epoch: fast_path, ddp
    check_epochs: int = 3
    sync_batches: int = 50
    sync_epochs: int = 2
    packed_jobs: tuple[int, ...] = (1, 4, 8)
    packed_batches: int = 40
    packed_epochs: int = 4
    bench_batches: int = 80
    bench_epochs: int = 2  # measured, after one warm-up epoch
    bench_repeats: int = 2
    bench_full: bool = True  # both networks and both precisions (dry: ResNet-20 fp32 only)
    he_samples: int = 50_000  # CIFAR-10's training set, of which he_val are split off for validation
    he_val: int = 5_000
    he_test: int = 10_000
    he_batch: int = 128  # the recipe's
    he_eval_batch: int = 1_000  # conf/data/cifar10.yaml's
    logger: str = "wandb"  # the runs' logger (W&B offline, as a user's run); dry: csv, quicker to start
    run_timeout_s: float = 240.0  # one run, sweep or benchmark case (compile included): a hung one is killed
    max_minutes: float = 8.0


REAL = Sizes()
DRY = Sizes(
    batch=16, image=16, eval_images=32, depth=8, augment=False, check_batches=6, check_epochs=3, sync_batches=6, sync_epochs=2,
    packed_jobs=(1, 2), packed_batches=4, packed_epochs=2, bench_batches=4, bench_epochs=1, bench_repeats=1,
    bench_full=False, logger="csv", he_samples=160, he_val=32, he_test=32, he_batch=16, he_eval_batch=32, max_minutes=30.0,
)

PART_TITLES = {
    "fast_path": "trainer=gpu, bf16-mixed, channels_last, compile, cuDNN benchmark, data + augmentation on the device",
    "ddp": "trainer=ddp on every GPU, sync_batchnorm=true",
    "host_syncs": "host syncs inside training steps",
    "packed": "hydra/launcher=packed: 1, 4, 8 jobs on one GPU",
    "he_epoch": "one epoch of the He et al. ResNet-20 recipe, x164",
    "harness_vs_raw": "harness vs plain loop: ResNet-20 / ResNet-18, fp32 / bf16+channels_last+compile",
}


def _q(value: Any) -> str:
    """A Hydra override value taken literally (paths may hold '=', ',' or spaces)."""
    text = str(value)
    return f"'{text}'" if "'" not in text else '"' + text.replace('"', '\\"') + '"'


def net_args(s: Sizes) -> list[str]:
    return ["model=resnet_cifar", f"depth={s.depth}"]


def synthetic_args(s: Sizes, batches: int) -> list[str]:
    """CIFAR-shaped synthetic data (dry: smaller images) with exactly ``batches`` training batches per epoch,
    held on the training device and augmented there (pad-4 crop and flip; not in the dry run)."""
    return [
        "data=synthetic", f"data.num_samples={batches * s.batch + s.eval_images}", f"data.val_size={s.eval_images}",
        f"data.test_size={s.eval_images}", f"data.batch_size={s.batch}", f"data.eval_batch_size={s.batch}",
        f"data.image_size={s.image}", "data.on_device=true", f"data.augment={str(s.augment).lower()}",
    ]


# --- the check's context: folders, clock, runs --------------------------------------------------------
class Context:
    def __init__(self, out: Path, dry: bool, gpus: int) -> None:
        self.out = out
        self.runs = out / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)
        self.dry = dry
        self.gpu = not dry
        self.gpus = gpus
        self.sizes = DRY if dry else REAL
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def say(self, message: str) -> None:
        print(f"[gpu_check {self.elapsed():6.0f} s] {message}", flush=True)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        env.update({"WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1", **(extra or {})})
        return env

    def train(self, name: str, args: list[str], multirun: bool = False, env: dict[str, str] | None = None) -> tuple[Path, int, Path]:
        """One real ``scripts/train.py`` run (or sweep) in ``runs/<name>``; its log is ``runs/<name>.log``."""
        folder = self.runs / name
        if folder.exists():  # a rerun into the same --out trains again rather than finding finished records
            shutil.rmtree(folder)
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        cmd = [sys.executable, str(TRAIN), *(["-m"] if multirun else []), *args, f"logger={self.sizes.logger}", f"{key}={_q(folder)}"]
        log = self.runs / f"{name}.log"
        self.say(f"{name}: python scripts/train.py {' '.join(cmd[2:-2])}")
        code = run_command(cmd, log, self.sizes.run_timeout_s, self.env(env))
        return folder, code, log

    def bench_case(self, case: Any, repeats: int) -> dict:
        """One case of the speed benchmark (harness and plain loop in worker processes), with a time limit."""
        bench = harness_benchmark()
        timeout = self.sizes.run_timeout_s
        work = self.runs / "bench"  # the workers' logs and run folders
        work.mkdir(parents=True, exist_ok=True)
        timed_out = threading.Event()

        def kill_workers() -> None:
            timed_out.set()
            for child in multiprocessing.active_children():
                child.kill()

        timer = threading.Timer(timeout, kill_workers)
        timer.daemon = True
        timer.start()
        self.say(f"{case.name}: harness vs plain loop, {case.warmup_epochs} warm-up + {case.epochs} measured epochs x {repeats} "
                 f"repeats; {' '.join(case.overrides)}")
        try:
            return bench.run_case(case, "gpu" if self.gpu else "cpu", repeats, [], work, echo=self.say,
                                  threads=None if self.gpu else 1)
        except Exception as err:
            if timed_out.is_set():
                raise TimeoutError(f"{case.name} ran past {timeout:.0f} s (workers killed); logs in {work}") from err
            raise
        finally:
            timer.cancel()


def run_command(cmd: list[str], log: Path, timeout: float, env: dict[str, str]) -> int:
    """Run ``cmd`` with its output in ``log``; past ``timeout`` its whole process group is killed."""
    with open(log, "w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except BaseException as err:  # past the limit, or Ctrl+C: no run (or DDP rank, or sweep worker) left behind
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended meanwhile
                pass
            proc.wait()
            if isinstance(err, subprocess.TimeoutExpired):
                raise TimeoutError(f"ran past {timeout:.0f} s and was killed; see {log}") from None
            raise


def log_tail(log: Path, lines: int = 8) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in text if line.startswith("error:") or "Error" in line]
    return " | ".join((errors or text)[-lines:])[-1500:]


# --- reading runs back --------------------------------------------------------------------------------
def check_run(folder: Path, expect: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's record, read back: ``completed``, its training loss falling from the first epoch to the
    last, and the config values in ``expect`` (dotted keys) as given. ``problem`` says what is wrong."""
    record = read_record(folder)
    row: dict[str, Any] = {"run": folder.name if folder.parent.name == "runs" else f"{folder.parent.name}/{folder.name}"}
    if record is None:
        return {**row, "status": "missing", "problem": f"no readable result.json in {folder}"}
    losses = [h.get("train/loss") for h in record.get("history") or []]
    row.update(
        status=record.get("status"), epochs=len(losses), first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None, train_images_per_s=record.get("train_images_per_s"),
        wall_time_s=record.get("wall_time_s"),
    )
    problems = []
    if record.get("status") != "completed":
        problems.append(f"status {record.get('status')}: {record.get('error')}")
    elif len(losses) < 2 or losses[0] is None or losses[-1] is None:
        problems.append(f"{len(losses)} epoch(s) of training loss: cannot tell whether it falls")
    elif not losses[-1] < losses[0]:
        problems.append(f"training loss did not fall ({losses[0]:.4g} -> {losses[-1]:.4g})")
    for key, wanted in (expect or {}).items():
        value: Any = record.get("config") or {}
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value != wanted:
            problems.append(f"config {key}={value!r}, expected {wanted!r}")
    row["problem"] = "; ".join(problems) or None
    return row


def _loss_text(row: dict[str, Any]) -> str:
    if row.get("first_loss") is None or row.get("last_loss") is None:
        return f"{row['status']}"
    rate = row.get("train_images_per_s")
    speed = f", {rate:,.0f} img/s" if rate else ""
    return f"{row['status']}, train loss {row['first_loss']:.3f} -> {row['last_loss']:.3f} over {row['epochs']} epochs{speed}"


def _problems(rows: list[dict[str, Any]], code: int, log: Path) -> list[str]:
    problems = [f"{r['run']}: {r['problem']}" for r in rows if r.get("problem")]
    if code != 0:
        problems.append(f"exit status {code}: {log_tail(log)}")
    return problems


# --- the parts ------------------------------------------------------------------------------------------
def part_fast_path(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    args = [*net_args(s), *synthetic_args(s, s.check_batches), f"trainer.max_epochs={s.check_epochs}",
            "trainer.precision=bf16-mixed", "channels_last=true"]
    expect = {"trainer.precision": "bf16-mixed", "channels_last": True, "data.on_device": True, "data.augment": s.augment}
    skipped = []
    if ctx.gpu:
        args += ["trainer=gpu", "compile=true", "trainer.benchmark=true"]
        expect.update({"trainer.accelerator": "gpu", "compile": True, "trainer.benchmark": True})
    else:
        args += ["trainer=cpu"]
        skipped.append("trainer=gpu, compile=true, trainer.benchmark=true: need CUDA (the dry run trains on CPU; "
                       "compiling on CPU takes minutes)")
    if not s.augment:
        skipped.append("augmentation: off in the dry run (at its tiny sizes the crops hide whether the loss falls)")
    folder, code, log = ctx.train("fast_path", args)
    row = check_run(folder, expect)
    return {"detail": _loss_text(row), "runs": [row], "problems": _problems([row], code, log), "skipped": skipped}


def part_ddp(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    devices = ctx.gpus if ctx.gpu else 2  # no GPU: 2 CPU processes (gloo)
    args = ["trainer=ddp", f"trainer.devices={devices}", "sync_batchnorm=true", *net_args(s),
            *synthetic_args(s, s.check_batches * devices), f"trainer.max_epochs={s.check_epochs}"]  # check_batches steps per rank
    if not ctx.gpu:
        args.append("trainer.accelerator=cpu")  # the dry run stays on CPU even where GPUs are
    folder, code, log = ctx.train("ddp", args, env=None if ctx.gpu else {"OMP_NUM_THREADS": "1"})
    row = check_run(folder, {"sync_batchnorm": True, "trainer.strategy": "ddp", "trainer.devices": devices})
    problems = _problems([row], code, log)
    for rank in range(1, devices):
        if not (folder / f"train_rank{rank}.log").is_file():
            problems.append(f"no log of rank {rank} (train_rank{rank}.log)")
    facts = ddp_facts(log.read_text(errors="replace") if log.is_file() else "")
    expected = ("nccl", True) if ctx.gpu else ("gloo", False)
    if (facts["backend"], facts["gpu_used"]) != expected:
        problems.append(f"process group {facts['backend'] or 'not found in the log'}, GPU used {facts['gpu_used']}; "
                        f"expected {expected[0]} with GPU used {expected[1]}")
    notes = [f"{devices} rank(s), {facts['backend'] or 'backend unknown'}{'' if ctx.gpu else ' (CPU stand-in)'}"]
    if ctx.gpu and devices == 1:
        notes.append("one GPU: devices=1 through the DDP path (a process group of one: SyncBatchNorm has nothing to sync)")
    return {"detail": f"{_loss_text(row)}; {'; '.join(notes)}", "runs": [row], "problems": problems, "figures": {"devices": devices}}


def part_host_syncs(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    counts = ctx.runs / "host_syncs.json"
    counts.unlink(missing_ok=True)
    # what tests/test_fast_path.py::test_training_steps_read_nothing_back_between_logging_steps runs on CPU:
    # logging, progress-bar refresh and the divergence check less frequent than the run is long
    args = [
        *net_args(s), *synthetic_args(s, s.sync_batches), f"trainer.max_epochs={s.sync_epochs}",
        "trainer.precision=bf16-mixed", "channels_last=true", "callbacks=default", "trainer.enable_progress_bar=true",
        "trainer.log_every_n_steps=1000", "callbacks.progress_bar.refresh_rate=1000", "divergence.check_every_n_steps=1000",
        "+callbacks.host_sync._target_=bnres.training.host_sync.HostSyncCounter", f"+callbacks.host_sync.path={_q(counts)}",
    ]
    skipped = []
    args += ["trainer=gpu", "trainer.benchmark=true"] if ctx.gpu else ["trainer=cpu"]
    if not ctx.gpu:
        skipped.append("synchronizing CUDA calls: need CUDA (the dry run counts host reads on CPU)")
    folder, code, log = ctx.train("host_syncs", args)
    row = check_run(folder)
    problems = _problems([row], code, log)
    if not counts.is_file():
        problems.append(f"the counter wrote no {counts.name}")
        return {"detail": _loss_text(row), "runs": [row], "problems": problems, "skipped": skipped}
    found = json.loads(counts.read_text())
    expected_steps = s.sync_epochs * (s.sync_batches - 1)
    if found["steps_watched"] != expected_steps:
        problems.append(f"watched {found['steps_watched']} steps, expected {expected_steps}")
    if found["python_reads"]:
        problems.append(f"{found['python_reads']} host reads in training steps, first: {found['first_python_reads'][0]}")
    if found["cuda_syncs"]:
        problems.append(f"{found['cuda_syncs']} synchronizing CUDA calls in training steps, first: {found['first_cuda_syncs'][0]}")
    cuda = "not counted (CPU)" if found["cuda_syncs"] is None else str(found["cuda_syncs"])
    detail = f"{found['steps_watched']} steps watched: {found['python_reads']} host reads, {cuda} synchronizing CUDA calls"
    figures = {k: found[k] for k in ("steps_watched", "python_reads", "cuda_syncs", "device")}
    figures["first"] = (found["first_python_reads"] + found["first_cuda_syncs"])[:3]
    return {"detail": detail, "runs": [row], "problems": problems, "skipped": skipped, "figures": figures}


# bnres.distributed.packing logs "packed job <num>: slot <k> of <n>, devices <devices>, <t> torch thread(s)"
_SLOT_LINE = re.compile(r"packed job \S+: slot (\d+) of (\d+), devices (.+?)(?:, \d+ torch threads?(?:\(s\))?)?\s*$", re.M)


def packed_slot(log_text: str) -> tuple[int, str] | None:
    """The slot and the devices a packed job's log says it held, or None where it names none."""
    match = _SLOT_LINE.search(log_text)
    return (int(match.group(1)), match.group(3).strip()) if match else None


# Lightning logs "distributed_backend=<name>" when a process group starts, and
# "GPU available: <bool> (cuda), used: <bool>" when the Trainer is built
_BACKEND_LINE = re.compile(r"distributed_backend=(\w+)")
_GPU_USED_LINE = re.compile(r"GPU available: \w+(?: \(\w+\))?, used: (\w+)")


def ddp_facts(log_text: str) -> dict[str, Any]:
    """What a DDP run's log says of its process group: the backend and whether the GPU was used."""
    backend = _BACKEND_LINE.search(log_text)
    used = _GPU_USED_LINE.search(log_text)
    return {"backend": backend.group(1).lower() if backend else None, "gpu_used": (used.group(1) == "True") if used else None}


def _first_gpu() -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return visible.split(",")[0].strip() if visible else "0"


def part_packed(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    env = {"CUDA_VISIBLE_DEVICES": _first_gpu()} if ctx.gpu else {}
    rows, problems, figures = [], [], []
    for n in s.packed_jobs:
        args = [
            "hydra/launcher=packed", f"packing.jobs_per_gpu={n}", f"seed={','.join(str(i) for i in range(n))}",
            *net_args(s), *synthetic_args(s, s.packed_batches), f"trainer.max_epochs={s.packed_epochs}",
            "trainer.precision=bf16-mixed", "channels_last=true",
            *(["trainer=gpu", "trainer.benchmark=true"] if ctx.gpu else ["trainer=cpu"]),
        ]
        threads = str(max(1, (os.cpu_count() or 1) // n)) if ctx.gpu else "1"  # the jobs share the CPU cores
        start = time.perf_counter()
        try:
            folder, code, log = ctx.train(f"packed{n}", args, multirun=True, env={**env, "OMP_NUM_THREADS": threads})
        except Exception as err:  # noqa: BLE001 - the other sweeps still run
            problems.append(f"{n} jobs: {type(err).__name__}: {err}")
            continue
        wall = time.perf_counter() - start
        jobs = [check_run(folder / str(i)) for i in range(n)]
        rows += jobs
        problems += _problems(jobs, code, log)
        slots, devices = set(), set()
        for i in range(n):
            job_log = folder / str(i) / "train.log"
            held = packed_slot(job_log.read_text(errors="replace")) if job_log.is_file() else None
            if held:
                slots.add(held[0])
                devices.add(held[1])
        # a job takes the lowest free slot, so n jobs running at once hold slots 0..n-1. The dry mode's jobs
        # last about a second: one may end before the next starts and hand on its slot, so there the check
        # is only that every job got a slot of this sweep
        if (slots != set(range(n))) if not ctx.dry else (not slots or not slots <= set(range(n))):
            problems.append(f"{n} jobs used slots {sorted(slots)}, not all {n} at once")
        if ctx.gpu and devices != {"[0]"}:
            problems.append(f"{n} jobs were pinned to {sorted(devices)}, expected the one GPU [0]")
        rates = [j["train_images_per_s"] for j in jobs if j.get("train_images_per_s")]
        images = n * s.packed_epochs * s.packed_batches * s.batch
        figures.append({
            "jobs": n, "per_job_images_per_s": statistics.median(rates) if rates else None,
            "together_images_per_s": sum(rates) if len(rates) == n else None, "sweep_wall_s": wall,
            "images_per_sweep_wall_s": images / wall,
        })
    one = next((f["together_images_per_s"] for f in figures if f["jobs"] == 1), None)
    for f in figures:
        f["vs_one_job"] = f["together_images_per_s"] / one if one and f["together_images_per_s"] else None
    detail = "; ".join(
        f"{f['jobs']} job(s): {f['together_images_per_s'] or 0:,.0f} img/s together"
        + (f" ({f['vs_one_job']:.2f}x one)" if f["vs_one_job"] and f["jobs"] > 1 else "")
        for f in figures
    )
    return {"detail": detail or "no sweep finished", "runs": rows, "problems": problems, "figures": {"sweeps": figures}}


def _he_data(ctx: Context) -> tuple[list[str], str]:
    """CIFAR-10 when its files are in paths.data_dir, else synthetic data of its size and shape."""
    s = ctx.sizes
    synthetic = [
        "data=synthetic", f"data.num_samples={s.he_samples}", f"data.val_size={s.he_val}", f"data.test_size={s.he_test}",
        f"data.batch_size={s.he_batch}", f"data.eval_batch_size={s.he_eval_batch}",
    ]
    if ctx.dry:
        return synthetic, "synthetic (dry)"
    from hydra.utils import instantiate

    from bnres.runs.runner import compose_config

    cfg = compose_config(["experiment=_he2016_cifar10"], ctx.runs / "he_data_probe")
    try:
        instantiate(cfg.data).verify()
    except Exception as err:  # noqa: BLE001 - not there (or damaged): time it on data of the same size
        return synthetic, f"synthetic, CIFAR-10 size (CIFAR-10 not found: {str(err).splitlines()[0][:120]})"
    return [], "CIFAR-10"


def _ways(row: dict[str, Any], key: str = "train_images_per_s") -> tuple[float | None, float | None]:
    return row["harness"][key]["median"], row["raw"][key]["median"]


def part_he_epoch(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    bench = harness_benchmark()
    data, data_name = _he_data(ctx)
    overrides = ["experiment=_he2016_cifar10", "model=resnet_cifar", "depth=20", *data, *([] if ctx.gpu else ["trainer=cpu"])]
    case = bench.Case("he2016-resnet20", overrides, epochs=1, warmup_epochs=1)
    _, rows = bench.report([ctx.bench_case(case, repeats=1)])
    row = rows[0]
    train_images = (s.he_samples - s.he_val) // s.he_batch * s.he_batch  # per epoch (drop_last)
    harness_ips, raw_ips = _ways(row, "epoch_images_per_s")  # validation included: the recipe validates every epoch
    epoch_s = train_images / harness_ips if harness_ips else None
    raw_epoch_s = train_images / raw_ips if raw_ips else None
    figures = {
        "data": data_name, "train_images_per_epoch": train_images, "epoch_s": epoch_s, "raw_epoch_s": raw_epoch_s,
        "recipe_epochs": HE_EPOCHS, "recipe_estimate_s": epoch_s * HE_EPOCHS if epoch_s else None,
        "raw_recipe_estimate_s": raw_epoch_s * HE_EPOCHS if raw_epoch_s else None,
        "train_images_per_s": row["harness"]["train_images_per_s"]["median"], "ratio": row["ratio"],
        "gpu_peak_mib": row["harness"]["gpu_peak_mib"], "benchmark_row": row,
    }
    problems = []
    final = row["harness"].get("final") or {}
    if epoch_s is None:
        problems.append("no epoch time measured")
    detail = (f"{data_name}: one epoch {_num(epoch_s, 1)} s (plain loop {_num(raw_epoch_s, 1)} s), "
              f"{HE_EPOCHS} epochs ~ {_duration(figures['recipe_estimate_s'])}; val acc after 2 epochs {_num(final.get('val/acc'), 3)}")
    return {"detail": detail, "problems": problems, "figures": figures}


def part_harness_vs_raw(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    bench = harness_benchmark()
    nets = {"ResNet-20": ["model=resnet_cifar", "depth=20"], "ResNet-18": ["model=resnet18", "model.stem=small"]}
    precisions = {
        "fp32": ["trainer.precision=32-true"],
        "bf16+channels_last+compile": ["trainer.precision=bf16-mixed", "channels_last=true", "compile=true"],
    }
    rows, problems, skipped = [], [], []
    for net, net_overrides in nets.items():
        for precision, precision_overrides in precisions.items():
            label = f"{net} {precision}"
            if not s.bench_full and (net != "ResNet-20" or precision != "fp32"):
                skipped.append(f"{label}: " + ("needs CUDA (compiling on CPU takes minutes)" if "compile" in precision
                                               else "dry run: one case checks the path"))
                continue
            overrides = [*net_overrides, *synthetic_args(s, s.bench_batches), *precision_overrides,
                         *(["trainer.benchmark=true"] if ctx.gpu else [])]
            case = bench.Case(re.sub(r"[^a-z0-9]+", "-", label.lower()), overrides, epochs=s.bench_epochs, warmup_epochs=1)
            try:
                _, found = bench.report([ctx.bench_case(case, s.bench_repeats)])
            except Exception as err:  # noqa: BLE001 - the other cases still run
                problems.append(f"{label}: {type(err).__name__}: {str(err)[:1500]}")
                continue
            row = found[0]
            harness, raw = _ways(row)
            rows.append({
                "network": net, "precision": precision, "harness_images_per_s": harness, "raw_images_per_s": raw,
                "ratio": row["ratio"], "harness_spread_pct": row["harness"]["train_images_per_s"]["spread_pct"],
                "raw_spread_pct": row["raw"]["train_images_per_s"]["spread_pct"],
                "harness_gpu_peak_mib": row["harness"]["gpu_peak_mib"], "raw_gpu_peak_mib": row["raw"]["gpu_peak_mib"],
                "repeats": s.bench_repeats, "benchmark_row": row,
            })
            ctx.say(f"{label}: harness {_num(harness, 0)} img/s, plain loop {_num(raw, 0)} img/s, ratio {_num(row['ratio'], 3)}")
    detail = "; ".join(f"{r['network']} {r['precision']}: {_num(r['ratio'], 2)}" for r in rows)
    return {"detail": f"harness/plain: {detail}" if rows else "no case measured", "problems": problems, "skipped": skipped,
            "figures": {"cases": rows}}


PARTS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "fast_path": part_fast_path,
    "ddp": part_ddp,
    "host_syncs": part_host_syncs,
    "packed": part_packed,
    "he_epoch": part_he_epoch,
    "harness_vs_raw": part_harness_vs_raw,
}


def run_part(ctx: Context, name: str, budget_s: float) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "title": PART_TITLES[name], "status": None, "detail": "", "problems": [],
                              "skipped": [], "runs": [], "figures": {}, "error": None}
    if ctx.elapsed() > budget_s:
        result.update(status="skipped", detail=f"not begun: the time budget (--max-minutes {budget_s / 60:g}) was spent")
        return result
    ctx.say(f"--- {name}: {PART_TITLES[name]}")
    start = time.perf_counter()
    try:
        result.update(PARTS[name](ctx))
        result["status"] = "failed" if result["problems"] else "passed"
    except Exception as err:  # noqa: BLE001 - reported; the other parts still run
        result.update(status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc()[-4000:])
    result["seconds"] = time.perf_counter() - start
    ctx.say(f"{name}: {result['status'].upper()} in {result['seconds']:.0f} s: {result['detail'] or result['error']}")
    for problem in result["problems"]:
        ctx.say(f"  problem: {problem[:2000]}")
    return result


# --- the machine ---------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """Versions, and the GPUs as the runs see them (torch: MIG slices, CUDA_VISIBLE_DEVICES) and as
    ``nvidia-smi`` lists them (the physical cards, the driver)."""
    import pytorch_lightning
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "cuda_runtime": torch.version.cuda, "lightning": pytorch_lightning.__version__,
        "cudnn": None, "driver": None, "gpus": [], "nvidia_smi": [],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30,
        )
        for line in smi.stdout.strip().splitlines():
            fields = [part.strip() for part in line.split(",")]
            if len(fields) == 4:
                index, name, memory, driver = fields
                info["nvidia_smi"].append({"index": index, "name": name, "memory_mib": _int_or_none(memory)})
                info["driver"] = driver
    except (OSError, subprocess.SubprocessError):
        pass
    if torch.cuda.is_available():
        info["cudnn"] = torch.backends.cudnn.version()
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["gpus"].append({"index": i, "name": props.name, "memory_mib": props.total_memory // 2**20,
                                 "capability": f"{props.major}.{props.minor}"})
        if info["driver"] is None:
            try:
                info["driver"] = Path("/proc/driver/nvidia/version").read_text().splitlines()[0]
            except OSError:
                pass
    return info


def _int_or_none(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:  # "[N/A]" (MIG)
        return None


# --- writing the results ------------------------------------------------------------------------------
def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:,.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    gpus = m.get("gpus") or []
    names: dict[str, int] = {}
    for g in gpus:
        key = f"{g['name']} ({g['memory_mib']:,} MiB)" if g.get("memory_mib") else g["name"]
        names[key] = names.get(key, 0) + 1
    cards = ", ".join(f"{count} x {name}" for name, count in names.items()) or "none (CPU)"
    lines = [
        f"# GPU check, {report['started_at']}{' (dry: CPU stand-ins, tiny sizes; the figures mean nothing)' if report['dry'] else ''}",
        "",
        "| | |", "|---|---|",
        f"| card | {cards} |",
        f"| driver | {m.get('driver') or '-'} |",
        *([f"| nvidia-smi | {', '.join(g['name'] for g in m['nvidia_smi'])} |"] if m.get("nvidia_smi") else []),
        f"| torch | {m['torch']} (CUDA {m.get('cuda_runtime') or '-'}, cuDNN {m.get('cudnn') or '-'}) |",
        f"| Lightning, Python | {m['lightning']}, {m['python']} |",
        f"| CPUs | {m['cpus']} |",
        f"| wall time | {_duration(report.get('wall_s'))} |",
        f"| result | {report['summary']} |",
        "",
        "## Checks", "",
        "| part | status | result | time |", "|---|---|---|---|",
    ]
    for part in report["parts"]:
        text = part["detail"] or ""
        if part.get("error"):
            text = f"{text}; error: {part['error']}" if text else f"error: {part['error']}"
        for problem in part.get("problems") or []:
            text += f"; problem: {problem[:300]}"
        for skip in part.get("skipped") or []:
            text += f"; skipped: {skip}"
        lines.append(f"| {part['name']} | {part['status']} | {_cell(text)} | {_duration(part.get('seconds'))} |")
    by_name = {p["name"]: p for p in report["parts"]}

    cases = (by_name.get("harness_vs_raw") or {}).get("figures", {}).get("cases") or []
    if cases:
        lines += ["", "## Harness vs plain loop (training images/s, batch 128, CIFAR shape; median of repeats)", "",
                  "| network | precision | harness | plain loop | harness/plain | GPU peak MiB harness / plain |", "|---|---|---|---|---|---|"]
        for c in cases:
            lines.append(f"| {c['network']} | {c['precision']} | {_num(c['harness_images_per_s'])} | {_num(c['raw_images_per_s'])} | "
                         f"{_num(c['ratio'], 3)} | {_num(c['harness_gpu_peak_mib'])} / {_num(c['raw_gpu_peak_mib'])} |")
    sweeps = (by_name.get("packed") or {}).get("figures", {}).get("sweeps") or []
    if sweeps:
        lines += ["", "## Packed ResNet-20 jobs on one GPU (bf16, channels_last; training images/s)", "",
                  "| jobs at once | per job | together | together / one job | sweep wall time |", "|---|---|---|---|---|"]
        for f in sweeps:
            lines.append(f"| {f['jobs']} | {_num(f['per_job_images_per_s'])} | {_num(f['together_images_per_s'])} | "
                         f"{_num(f['vs_one_job'], 2)} | {_duration(f['sweep_wall_s'])} |")
    he = (by_name.get("he_epoch") or {}).get("figures") or {}
    if he.get("epoch_s"):
        lines += ["", "## He et al. ResNet-20 recipe (experiment=_he2016_cifar10: bf16-mixed, cuDNN benchmark, batch 128)", "",
                  "| data | one epoch (with validation) | 164 epochs, estimated | plain loop: one epoch / 164 | harness/plain (training) |",
                  "|---|---|---|---|---|",
                  f"| {_cell(he['data'])} | {_num(he['epoch_s'], 1)} s | {_duration(he['recipe_estimate_s'])} | "
                  f"{_num(he['raw_epoch_s'], 1)} s / {_duration(he['raw_recipe_estimate_s'])} | {_num(he['ratio'], 3)} |"]
    syncs = (by_name.get("host_syncs") or {}).get("figures") or {}
    if "steps_watched" in syncs:
        cuda = "not counted (CPU)" if syncs["cuda_syncs"] is None else syncs["cuda_syncs"]
        lines += ["", "## Host syncs inside training steps", "",
                  "| steps watched | host reads (tensor to Python) | synchronizing CUDA calls |", "|---|---|---|",
                  f"| {syncs['steps_watched']} | {syncs['python_reads']} | {cuda} |"]
    lines += ["", f"Runs and logs: `{report['out']}/runs/`. Command: `{report['command']}`.", ""]
    return "\n".join(lines)


def summarize(parts: list[dict[str, Any]]) -> str:
    counts = {status: sum(p["status"] == status for p in parts) for status in ("passed", "failed", "skipped")}
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "nothing run"


def write_report(report: dict[str, Any], out: Path) -> None:
    from bnres.runs.record import clean, write_atomic

    report["summary"] = summarize(report["parts"])
    write_atomic(out / "gpu_check.json", json.dumps(clean(report), indent=2))
    write_atomic(out / "gpu_check.md", markdown(report))


# --- main ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Exercise and measure every GPU path of the harness in a few minutes (see the module docstring).")
    p.add_argument("--out", type=Path, default=None, help="results folder (default results/gpu_check/<date>_<time>)")
    p.add_argument("--dry", action="store_true", help="CPU stand-ins at tiny sizes (checks the script; figures mean nothing)")
    p.add_argument("--only", default=None, help=f"comma-separated parts to run, of: {', '.join(PARTS)}")
    p.add_argument("--max-minutes", type=float, default=None, help="parts not begun by then are skipped (default 8; dry 30)")
    args = p.parse_args(argv)

    names = list(PARTS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in PARTS]
        if bad or not names:
            print(f"error: --only={args.only!r}: {', '.join(bad) or 'no part'} is not one of: {', '.join(PARTS)}", file=sys.stderr)
            return 2
    import torch

    if not args.dry and not torch.cuda.is_available():
        print("error: no CUDA device is visible (torch.cuda.is_available() is False); --dry runs the CPU stand-ins", file=sys.stderr)
        return 2
    started_at = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out = (args.out or Path("results") / "gpu_check" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    os.environ.setdefault("WANDB_MODE", "offline")  # the runs' W&B, and the benchmark's workers: nothing goes online
    os.environ["WANDB_SILENT"] = "true"
    gpus = torch.cuda.device_count() if not args.dry else 0
    ctx = Context(out, args.dry, gpus)
    budget_s = 60 * (args.max_minutes if args.max_minutes is not None else ctx.sizes.max_minutes)
    report: dict[str, Any] = {
        "started_at": started_at, "dry": args.dry, "out": str(out), "command": " ".join(["python", "scripts/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(), "sizes": dataclasses.asdict(ctx.sizes), "parts": [],
    }
    gpu_names = ", ".join(g["name"] for g in report["machine"]["gpus"]) or "none"
    ctx.say(f"{'dry run on CPU' if args.dry else f'{gpus} GPU(s): {gpu_names}'}; torch {torch.__version__}; "
            f"parts: {', '.join(names)}; results in {out}")

    def stop(signum, frame):  # a time limit's SIGTERM: stop like Ctrl+C, so the runs (own sessions) are killed too
        raise KeyboardInterrupt(f"signal {signum}")

    previous_handler = signal.signal(signal.SIGTERM, stop)
    try:
        for name in names:
            report["parts"].append(run_part(ctx, name, budget_s))
            report["wall_s"] = ctx.elapsed()
            write_report(report, out)
    except KeyboardInterrupt:
        report["interrupted"] = True
        report["wall_s"] = ctx.elapsed()
        write_report(report, out)
        print(f"\ninterrupted: what finished is in {out}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    write_report(report, out)
    print()
    print((out / "gpu_check.md").read_text())
    failed = [p["name"] for p in report["parts"] if p["status"] == "failed"]
    ctx.say(f"{report['summary']}{': failed ' + ', '.join(failed) if failed else ''}; wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""What a user sees: known third-party noise filtered at its source, one end line per job (k/N and time
left in a sweep), Lightning's messages in every job's train.log, nothing left behind by a sweep."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl

from bnres import _lightning
from bnres.runs import progress
from bnres.tracking import quiet
from conftest import TINY, TRAIN_SCRIPT

# what every run used to print (issue 17); none of it may come back
NOISE = ("LeafSpec", "litlogger", "anonymous setting", "Run history", "Run summary", "git root", "You can sync this run")
END_LINE = re.compile(r"^completed · val/acc \d\.\d{3} · test/acc \d\.\d{3} · [\d.]+ s · (?P<path>\S*result\.json)$")


@pytest.fixture(autouse=True)
def _wandb_quiet_restored(monkeypatch):
    """quiet.install() sets a default WANDB_QUIET; whatever this process had comes back after each test."""
    monkeypatch.setenv("WANDB_QUIET", "")  # records the original value (or its absence) for the undo
    monkeypatch.delenv("WANDB_QUIET")


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """scripts/train.py as a user runs it: W&B offline but not silenced, no WANDB_QUIET of ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_SILENT", "WANDB_QUIET", "WANDB_API_KEY")}
    env.update(WANDB_MODE="offline", HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, str(TRAIN_SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


# --- each filter hides exactly its message, from its source ---------------------------------------
def test_leafspec_deprecation_is_filtered_only_where_lightning_raises_it():
    from pytorch_lightning.utilities._pytree import _tree_flatten
    from torch.utils._pytree import LeafSpec

    def leafspec_warnings(call) -> list[warnings.WarningMessage]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            if call is not None:
                quiet.install()
            (call or (lambda: _tree_flatten(1)))()
        return [w for w in seen if "LeafSpec" in str(w.message)]

    # the warning is real and comes from Lightning's module (else the filter is obsolete: remove it)
    unfiltered = leafspec_warnings(None)
    assert unfiltered and unfiltered[0].category is FutureWarning
    assert Path(unfiltered[0].filename).as_posix().endswith("pytorch_lightning/utilities/_pytree.py")
    assert leafspec_warnings(lambda: _tree_flatten(1)) == []
    assert leafspec_warnings(lambda: LeafSpec())  # raised from anywhere else, it still shows


def test_litlogger_tip_is_dropped_and_lightnings_other_messages_kept():
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    lightning_info = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    handler = Keep()
    lightning_info.addHandler(handler)
    try:
        lightning_info.removeFilter(quiet._TIP_FILTER)
        pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
        assert any("litlogger" in r for r in records)  # Lightning still prints it (else drop the filter)
        records.clear()
        quiet.install()
        pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
        assert not any("litlogger" in r for r in records)
        assert any("GPU available" in r for r in records)
    finally:
        lightning_info.removeHandler(handler)


def test_wandb_logger_leaves_out_the_anonymous_argument(make_cfg):
    from bnres.tracking.loggers import build_loggers

    cfg = make_cfg("logger=wandb")
    (logger,) = build_loggers(cfg.logger, group="g", name="n")
    assert "anonymous" not in _lightning.wandb_init_kwargs(logger)
    # Lightning passes it (None unless asked for): left out when None, kept when asked for
    from pytorch_lightning.loggers import WandbLogger

    default, asked = WandbLogger(mode="offline", save_dir=str(cfg.paths.output_dir)), WandbLogger(mode="offline", anonymous=True)
    assert _lightning.wandb_init_kwargs(default)["anonymous"] is None
    quiet.drop_wandb_anonymous([default, asked])
    assert "anonymous" not in _lightning.wandb_init_kwargs(default)
    assert _lightning.wandb_init_kwargs(asked)["anonymous"] == "allow"


# --- the end line --------------------------------------------------------------------------------
def test_end_line_formats():
    record = {"status": "diverged", "diverged_at_step": 40, "final": {"val/acc": 0.0981, "test/acc": None}}
    assert progress.end_line(record, Path("/x/result.json"), 6.24) == "diverged at step 40 · val/acc 0.098 · 6.2 s · /x/result.json"
    failed = {"status": "failed", "error": "RuntimeError: out of memory\ntraceback ...", "final": {}}
    assert progress.end_line(failed, Path("/x/result.json"), 125).startswith("failed: RuntimeError: out of memory · 2 min 05 s · ")
    done = {"status": "completed", "final": {"val/acc": 0.9, "test/acc": 0.8}}
    assert progress.end_line(done, Path("/x/result.json"), 0.1, skipped=True).startswith("already completed, skipped (fresh=true reruns it) · val/acc 0.900")
    assert progress.end_line(None, Path("/x/result.json"), 1).startswith("invalid: nothing run, no record")
    assert progress.duration(3725) == "1 h 02 min"


def test_single_run_is_quiet_ends_with_one_line_and_logs_to_train_log(tmp_path):
    run_dir = tmp_path / "run"
    done = _run([*TINY, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert not [n for n in NOISE if n in output], output
    assert "Run data is saved locally in" in output  # W&B still says where its run is
    last = done.stdout.strip().splitlines()[-1]
    match = END_LINE.match(last)
    assert match, last
    assert (tmp_path / match["path"]).resolve() == (run_dir / "result.json").resolve()
    log = (run_dir / "train.log").read_text()
    # Lightning's own messages, with the time, logger and level Hydra's file handler adds
    assert re.search(r"\]\[lightning_fabric\.utilities\.seed\]\[INFO\] - Seed set to 0", log), log
    assert "`Trainer.fit` stopped" in log


def test_sweep_prints_each_job_with_k_of_n_and_leaves_no_lock(tmp_path):
    sweep_dir = tmp_path / "sweep"
    done = _run(["-m", *TINY, "logger=none", "lr=0.05,0.1", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if re.match(r"^\[\d+/\d+", line)]
    assert re.match(r"^\[1/2 · ~[\d.]+ s left\] completed · val/acc ", lines[0]), lines
    assert re.match(r"^\[2/2\] completed · val/acc .* · sweep/1/result\.json · .* lr=0\.1$", lines[1]), lines
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["0", "1", "multirun.yaml"]  # no .sweep.lock, no .sweep.progress
    for job in ("0", "1"):
        assert "Seed set to 0" in (sweep_dir / job / "train.log").read_text()


@pytest.mark.slow
def test_packed_sweep_prints_k_of_n_from_its_worker_processes(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *TINY, "logger=none", "hydra/launcher=packed", "packing.jobs_per_gpu=2", "lr=0.05,0.1,0.2", f"hydra.sweep.dir={sweep_dir}"]
    done = _run(args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = sorted(re.match(r"^\[(\d)/3", line)[1] for line in done.stdout.splitlines() if re.match(r"^\[\d/3", line))
    assert counts == ["1", "2", "3"], done.stdout
    assert not (sweep_dir / ".sweep.lock").exists() and not (sweep_dir / ".sweep.progress").exists()
    for job in ("0", "1", "2"):
        assert "Seed set to 0" in (sweep_dir / job / "train.log").read_text()


def test_cli_fit_is_quiet_and_ends_with_one_line(tmp_path, monkeypatch, capfd):
    from bnres.cli.main import main

    monkeypatch.setattr(sys, "argv", ["bnres"])
    monkeypatch.setenv("WANDB_SILENT", "false")
    run_dir = tmp_path / "cli" / "run"  # does not exist yet: W&B warned "git root ... does not exist"
    args = ["fit", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(run_dir)]
    assert main(args) == 0
    out, err = capfd.readouterr()
    assert not [n for n in NOISE if n in out + err], out + err
    match = END_LINE.match(out.strip().splitlines()[-1])
    assert match and Path(match["path"]).resolve() == (run_dir / "result.json").resolve(), out

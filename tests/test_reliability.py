"""Reliability: resume after a kill, sweeps that survive failures, honest records, verified data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bnres.runs import runner
from bnres.config.checks import ConfigError
from conftest import ROOT, TRAIN_SCRIPT, run_script

SMALL = ["trainer.enable_progress_bar=false", "logger=csv", "data.batch_size=256"]


def _records(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))}


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


HELPERS = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "helpers"), os.environ.get("PYTHONPATH", "")])}
# 15 training steps and 5 validation batches per epoch
DETERMINISTIC = [*SMALL, "deterministic=true", "trainer.max_epochs=4", "data.eval_batch_size=100"]


def _signal_at(step: int, signum: str) -> list[str]:
    """Overrides that make the run send itself ``signum`` after optimizer step ``step`` (first run only)."""
    return ["+callbacks.test_signal._target_=signal_at_step.SignalAtStep", f"+callbacks.test_signal.step={step}", f"+callbacks.test_signal.signum={signum}"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run that interrupted-and-resumed runs must reproduce exactly."""
    run_dir = tmp_path_factory.mktemp("reference")
    result = run_script([*DETERMINISTIC, f"hydra.run.dir={run_dir}"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((run_dir / "result.json").read_text())


def _assert_same_run(record: dict, reference: dict) -> None:
    assert record["status"] == "completed"
    assert [row["epoch"] for row in record["history"]] == [row["epoch"] for row in reference["history"]]
    assert record["history"] == reference["history"]
    assert record["final"] == reference["final"]


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint_with_identical_results(tmp_path, reference):
    run_dir = tmp_path / "killed"
    args = [*DETERMINISTIC, *_signal_at(37, "SIGKILL"), f"hydra.run.dir={run_dir}"]  # mid epoch 2
    killed = run_script(args, cwd=ROOT, env=HELPERS)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "running"  # a killed job never claims to have finished
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 30  # end of epoch 1

    resumed = run_script(args, cwd=ROOT, env=HELPERS)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = json.loads((run_dir / "result.json").read_text())
    assert record["resumed_from"].endswith("last.ckpt")  # continued, not restarted
    _assert_same_run(record, reference)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("during", "step", "saved_at_step", "position"),
    [
        ("train", 37, 37, {"epoch": 2, "batches_done": 7}),  # saved at the signal, part-way through epoch 2
        ("validation", 30, 15, {"epoch": 0, "batches_done": 15}),  # mid-validation: the epoch-end checkpoint before it
    ],
)
def test_sigterm_saves_a_checkpoint_and_the_rerun_continues_from_it(tmp_path, reference, during, step, saved_at_step, position):
    run_dir = tmp_path / "stopped"
    args = [*DETERMINISTIC, *_signal_at(step, "SIGTERM"), f"+callbacks.test_signal.during={during}", f"hydra.run.dir={run_dir}"]
    stopped = run_script(args, cwd=ROOT, env=HELPERS)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "preempted"
    assert f"SIGTERM at step {step}" in record["error"]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == saved_at_step
    positions = [v["train_position"] for v in checkpoint.values() if isinstance(v, dict) and "train_position" in v]
    assert positions == [position]  # the data module's place in the epoch

    resumed = run_script(args, cwd=ROOT, env=HELPERS)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "not resumable" not in resumed.stderr  # Lightning's warning for loaders that restart the epoch
    _assert_same_run(json.loads((run_dir / "result.json").read_text()), reference)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]  # no last-v1.ckpt


@pytest.mark.slow
def test_submitit_time_limit_signal_checkpoints_requeues_and_resumes(tmp_path, reference):
    """submitit's pre-emption signal (USR2) mid-epoch: checkpoint at that step, submitit requeues, the job resumes."""
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", *DETERMINISTIC, *_signal_at(37, "SIGUSR2"), f"hydra.sweep.dir={sweep}"]
    result = run_script(args, cwd=ROOT, env=HELPERS)
    assert result.returncode == 0, result.stderr[-2000:]
    log_text = (sweep / "0" / "train.log").read_text()
    assert "checkpoints/last.ckpt at step 37" in log_text  # saved at the signal ...
    assert "Requeued job" in log_text  # ... then submitit requeued the job ...
    record = json.loads((sweep / "0" / "result.json").read_text())
    assert record["resumed_from"].endswith("last.ckpt")  # ... which continued from that checkpoint
    _assert_same_run(record, reference)


@pytest.mark.slow
def test_ddp_run_stops_at_one_step_on_every_rank_when_only_rank_0_is_signalled(tmp_path):
    """A `kill` of rank 0 alone: the ranks agree on the step, save there, exit; the rerun ends as an uninterrupted run."""
    common = [*SMALL, "trainer=ddp", "trainer.devices=2", "deterministic=true", "trainer.max_epochs=3", "data.batch_size=128"]
    env = {**HELPERS, "OMP_NUM_THREADS": "1"}
    reference = run_script([*common, f"hydra.run.dir={tmp_path / 'reference'}"], cwd=ROOT, env=env)
    assert reference.returncode == 0, reference.stderr[-2000:]
    run_dir = tmp_path / "stopped"
    args = [*common, *_signal_at(20, "SIGTERM"), "+callbacks.test_signal.rank=0", f"hydra.run.dir={run_dir}"]
    stopped = run_script(args, cwd=ROOT, env=env, timeout=240)  # before: rank 0 stopped alone and the job hung
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert json.loads((run_dir / "result.json").read_text())["status"] == "preempted"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 20
    assert "saved" in (run_dir / "train_rank1.log").read_text()  # rank 1 stopped at the same step

    resumed = run_script(args, cwd=ROOT, env=env, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = json.loads((run_dir / "result.json").read_text())
    expected = json.loads((tmp_path / "reference" / "result.json").read_text())
    assert record["status"] == "completed" and record["final"] == expected["final"]
    for row, row_expected in zip(record["history"], expected["history"], strict=True):
        # the interrupted epoch's training mean adds the ranks' partial sums in another order
        assert row == pytest.approx(row_expected, rel=1e-6)


@pytest.mark.slow
def test_interrupted_sweep_skips_finished_jobs_and_completes_the_rest(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "lr=0.05,0.1,0.2", "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "data.batch_size=256", f"hydra.sweep.dir={sweep}"]
    proc = _start(args)
    finished = lambda: any(r.get("status") == "completed" for r in _records(sweep).values())
    _wait_for(lambda: finished() or proc.poll() is not None, 180, "a finished job")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _records(sweep)
    done = {job for job, r in before.items() if r["status"] == "completed"}
    assert done and len(done) < 3, before.keys()
    stamps = {job: (sweep / job / "result.json").stat().st_mtime_ns for job in done}
    wandb_runs = {job: sorted(p.name for p in (sweep / job / "wandb").glob("offline-run-*")) for job in done}

    rerun = run_script(args, cwd=ROOT)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = _records(sweep)
    assert sorted(after) == ["0", "1", "2"]
    assert all(r["status"] == "completed" for r in after.values())
    for job in done:  # untouched: same record, same single W&B run
        assert (sweep / job / "result.json").stat().st_mtime_ns == stamps[job]
        assert sorted(p.name for p in (sweep / job / "wandb").glob("offline-run-*")) == wandb_runs[job]
    assert "3 completed" in rerun.stdout + rerun.stderr


def test_fresh_reruns_finished_jobs(make_cfg, tmp_path):
    first = runner.run(make_cfg(output_dir=tmp_path / "job"))
    again = runner.run(make_cfg(output_dir=tmp_path / "job"))
    assert again["started_at"] == first["started_at"]  # skipped
    forced = runner.run(make_cfg("fresh=true", output_dir=tmp_path / "job"))
    assert forced["status"] == "completed" and forced["wall_time_s"] != first["wall_time_s"]


def test_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    # a callback raises inside fit at step 1 of job 1 only: a real runtime failure (bad values are refused before any job)
    fail = ["+callbacks.fail._target_=fail_at_step.FailAtStep", "+callbacks.fail.step=-1,1,-1"]
    result = run_script(["-m", *fail, *SMALL, "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=HELPERS)
    assert result.returncode != 0
    records = _records(sweep)
    assert [records[j]["status"] for j in ("0", "1", "2")] == ["completed", "failed", "completed"]
    assert "planted failure at step 1" in records["1"]["error"]
    output = result.stdout + result.stderr
    assert "2 completed, 1 failed" in output
    assert "did not finish: 1 (failed)" in output


def test_unknown_config_key_is_a_clear_error_and_no_record(tmp_path):
    result = run_script(["trainer.max_epoch=3", f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT)
    assert result.returncode != 0
    assert "trainer.max_epoch" in result.stderr
    assert not (tmp_path / "run" / "result.json").exists()


def test_bad_input_from_the_command_line_is_one_line_exit_2(tmp_path):
    result = run_script(["lr=-0.1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: lr=-0.1 is not a finite number > 0"]
    assert not (tmp_path / "run" / "result.json").exists()


@pytest.mark.slow  # an end-to-end subprocess run: the slow suite (CI runs it too)
def test_two_sweeps_cannot_share_a_sweep_folder(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0,1", "trainer.max_epochs=500", *SMALL, f"hydra.sweep.dir={sweep}"]
    first = _start(args)  # long enough to still be running when the second one asks
    try:
        _wait_for(lambda: (sweep / "0").exists() or first.poll() is not None, 120, "the first sweep to start")
        second = run_script(args, cwd=ROOT, timeout=120)
        assert first.poll() is None, "the first sweep ended before the second started"
        assert second.returncode != 0
        assert "is in use by a running sweep" in second.stderr
        assert len(second.stderr.strip().splitlines()) <= 3, second.stderr
        assert not (sweep / "1").exists()  # the second sweep started no job
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def _raw(root: Path, folder: str = "MNIST") -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    return raw


def test_corrupt_data_file_names_the_file_and_the_fix(make_cfg, tmp_path):
    raw = _raw(tmp_path / "data")
    (raw / "train-images-idx3-ubyte").write_bytes((2051).to_bytes(4, "big") + b"\0" * 100)  # truncated
    cfg = make_cfg("data=mnist", f"paths.data_dir={tmp_path / 'data'}", output_dir=tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        runner.run(cfg)
    message = str(err.value)
    assert "train-images-idx3-ubyte is corrupt or truncated" in message
    assert "delete" in message and "data.download=true" in message
    assert not (tmp_path / "run" / "result.json").exists()


def test_corrupt_archive_fails_its_checksum(make_cfg, tmp_path):
    raw = _raw(tmp_path / "data")
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not really gzip")
    cfg = make_cfg("data=mnist", f"paths.data_dir={tmp_path / 'data'}")
    with pytest.raises(ConfigError, match="train-images-idx3-ubyte.gz does not match its known MD5"):
        runner.run(cfg)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])  # fashion_mnist: tests/test_fashion_mnist.py
def test_missing_dataset_offline_says_how_to_get_it(make_cfg, tmp_path, name):
    cfg = make_cfg(f"data={name}", f"paths.data_dir={tmp_path / 'empty'}", output_dir=tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        runner.run(cfg)
    assert f"{name} is not in" in str(err.value) and "data.download=true" in str(err.value)
    assert not (tmp_path / "run" / "result.json").exists()


def test_unwritable_download_folder_is_refused_before_any_work(make_cfg, tmp_path):
    read_only = Path("/proc/1/bnres-data")
    if os.access(read_only.parent, os.W_OK):
        pytest.skip("no unwritable folder available")
    cfg = make_cfg("data=mnist", "data.download=true", f"paths.data_dir={read_only}", output_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="is not writable"):
        runner.run(cfg)
    assert not (tmp_path / "run" / "result.json").exists()


def test_loader_resumed_part_way_through_an_epoch_continues_with_the_next_batch():
    from bnres.data.loader import TensorBatchLoader

    images, labels = torch.randn(100, 3, 8, 8), torch.arange(100)
    epoch = [3]

    def loader() -> TensorBatchLoader:
        return TensorBatchLoader(images, labels, batch_size=16, shuffle=True, drop_last=True, seed=7,
                                 epoch_fn=lambda: epoch[0], crop_padding=2, flip=True, progress_fn=lambda: 4)

    full = list(loader())
    assert loader().state_dict() == {"epoch": 3, "batches_done": 0}  # no pass yet
    first = loader()
    next(iter(first))
    assert first.state_dict() == {"epoch": 3, "batches_done": 4}  # the trainer's count of trained batches

    resumed = loader()
    resumed.load_state_dict({"epoch": 3, "batches_done": 4})
    rest = list(resumed)
    assert len(rest) == len(full) - 4
    for (x, y), (x_full, y_full) in zip(rest, full[4:]):  # same samples, same crops and flips
        assert torch.equal(y, y_full) and torch.equal(x, x_full)
    assert len(list(resumed)) == len(full)  # only the first pass after the restore is shortened

    other_epoch = loader()
    other_epoch.load_state_dict({"epoch": 2, "batches_done": 4})  # that epoch had ended: start epoch 3 in full
    assert len(list(other_epoch)) == len(full)

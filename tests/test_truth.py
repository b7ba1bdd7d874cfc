"""Every record tells the truth: one definition of each setting, checked before any work, and each folder,
checkpoint and W&B run bound to the config it was trained with (bnres.config.checks, bnres.runs.preflight, bnres.runs.binding)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bnres.runs import preflight
from bnres.runs import runner
from bnres.runs.binding import FolderLock, differences, fingerprint, trained_settings
from bnres.training.callbacks import ConfigFingerprint
from bnres.cli.main import BnresCLI
from bnres.errors import ConfigError, FolderConflict
from bnres.runs.record import read_record
from conftest import ROOT, TINY, run_script

CONF = str(ROOT / "conf")


def _refused(capsys, *argv: str) -> str:
    """Run the entry point's start-up check on ``argv``; it must exit 2 with one ``error:`` line."""
    with pytest.raises(SystemExit) as exit_:
        preflight.check_command_line(list(argv), CONF)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# --- checked before any work --------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, says",
    [
        ("lr=nan", "lr=nan is not a finite number > 0"),
        ("lr=inf", "lr=inf is not a finite number > 0"),
        ("data.val_size=0", "data.val_size=0 is not an integer >= 1"),
        ("scheduler.warmup_fraction=1.5", "scheduler.warmup_fraction=1.5 is not a finite number in [0, 1)"),
        ("optimizer.weight_decay=-0.1", "optimizer.weight_decay=-0.1 is not a finite number >= 0"),
        ("optimizer.momentum=-0.5", "optimizer.momentum=-0.5 is not a finite number in [0, 1)"),
        ("optimizer.momentum=5", "optimizer.momentum=5 is not a finite number in [0, 1)"),
        ("trainer.max_epochs=1.5", "trainer.max_epochs=1.5 is not an integer >= 1"),
        ("data.batch_size=1.5", "data.batch_size=1.5 is not an integer >= 1"),
        ("seed=4294967296", "seed=4294967296 is not an integer in [0, 4294967295]"),
        ("depth=-4", "depth=-4 does not apply to lenet"),
        ("shortcut=false", "shortcut=false does not apply to lenet"),
        ("bn=maybe", "bn='maybe' is not one of: true, false"),
        ("model.bn=false", "model.bn=false disagrees with bn=true"),
        ("optimizer.lr=0.5", "optimizer.lr=0.5 disagrees with lr=0.1"),
        ("data.shuffle_seed=3", "data.shuffle_seed=3 disagrees with seed=0"),
        ("experiment=nope", "experiment='nope' is not one of: bn_lr, bn_lr_cifar10, bn_lr_fashion, bn_placement"),
        ("model=resnet99", "model='resnet99' is not one of: lenet, mlp"),
        ("trainer.max_epoch=3", "trainer.max_epoch is not a setting of this config (did you mean trainer.max_epochs?)"),
        ("data.batch_size=5000", "data.batch_size=5000 is larger than the 4000 training images of mnist5k: the run would train nothing"),
        ("trainer.limit_train_batches=0", "trainer.limit_train_batches=0 is not an integer >= 1 (or null) or a fraction in (0, 1]"),
        ("trainer.limit_train_batches=0.0", "trainer.limit_train_batches=0.0 is not"),
        ("model=plain18 shortcut=true", "shortcut=true contradicts model=plain18"),
        ("model=resnet18 depth=34", "depth=34 does not apply to resnet18, whose depth is 18"),
        ("model=resnet_cifar depth=21", "resnet_cifar depth=21 is not 6n+2"),
        ("lr=0.1,0.3", "lr=0.1,0.3 lists several values: add -m"),
        ("optimzer.lr=0.05", "optimzer.lr is not a setting of this config (did you mean optimizer?) (top-level keys: bn,"),
        ("-m model=resnet18,plain18 model.bnn=false", "(did you mean model.bn?) (keys of model: _target_, in_channels, num_classes, image_size, bn, bn_placement, bn_impl, bn_momentum, bn_eps, shortcut, stem)"),
    ],
)
def test_bad_input_is_refused_at_the_entry_point_in_one_line(capsys, tmp_path, override, says):
    err = _refused(capsys, *override.split(), f"hydra.run.dir={tmp_path / 'run'}")
    assert says in err
    assert not (tmp_path / "run").exists()


def test_a_sweep_with_one_bad_job_runs_no_job(capsys, tmp_path):
    err = _refused(capsys, "-m", "lr=0.1,nan", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert "lr=nan is not a finite number > 0 (sweep job 1; no job was run)" in err
    err = _refused(capsys, "-m", "model=lenet,resnet99", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert "model='resnet99' is not one of" in err
    err = _refused(capsys, "-m", "experiment=bn_lr", "data.batch_size=8000")  # the preset's own grid is expanded
    assert "data.batch_size=8000 is larger than" in err and "sweep job 0" in err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("args", [["model=resnet99"], pytest.param(["-m", "lr=0.1,nan"], marks=pytest.mark.slow),
                                  pytest.param(["model.bn=false"], marks=pytest.mark.slow)])
def test_bad_input_through_the_real_script_exits_2_before_any_work(tmp_path, args):
    """End to end: the one line, exit 2, no traceback and no folder, for Hydra's refusals and ours."""
    result = run_script([*args, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "HYDRA_FULL_ERROR" not in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    "args, says",
    [
        (["--model.optimizer.momentum", "5"], "--model.optimizer.momentum=5.0 is not a finite number in [0, 1)"),
        (["--data.batch_size", "5000"], "data.batch_size=5000 is larger than the 4000 training images"),
        (["--trainer.max_epochs", "1.5"], "--trainer.max_epochs=1.5 is not an int"),
        (["--data.val_size", "0"], "--data.val_size=0 is not an integer >= 1"),
        (["--model.net.depth", "-4"], "--model.net.depth=-4 does not apply to lenet"),
        (["--seed_everything", "4294967296"], "--seed_everything=4294967296 is not an integer in [0, 4294967295]"),
        (["--trainer.limit_train_batches", "0"], "--trainer.limit_train_batches=0 is not"),
        (["--model.net.name", "plain18", "--model.net.shortcut", "true"], "contradicts"),
        (["--trainer.max_epoch", "3"], "unrecognized arguments: --trainer.max_epoch"),
    ],
)
def test_bad_cli_arguments_exit_2_in_one_line(capsys, tmp_path, monkeypatch, args, says):
    monkeypatch.setattr(sys, "argv", ["bnres"])
    with pytest.raises(SystemExit) as exit_:
        BnresCLI(args=["fit", "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "bad"), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and says in error_lines[0], err
    assert not (tmp_path / "bad" / "result.json").exists()


# --- one home for each sweep knob, and the shortcut knob ------------------------------------------
def test_shortcut_false_is_the_plain_twin(make_cfg):
    plain = make_cfg("model=plain18")
    switched = make_cfg("model=resnet18", "shortcut=false")
    assert plain.model_name == switched.model_name == "plain18" and plain.shortcut is switched.shortcut is False
    assert fingerprint(plain) == fingerprint(switched)
    assert make_cfg("model=resnet18").model_name == "resnet18"
    assert make_cfg("model=resnet_cifar", "shortcut=false").model_name == "plain_cifar"
    assert make_cfg().shortcut is None  # lenet: no residual blocks


def test_record_config_network_and_history_agree(make_cfg, tmp_path):
    """What the record says is what was built and trained: model name, shortcut, BN, and the lr in the history."""
    cfg = make_cfg("model=resnet_cifar", "depth=8", "shortcut=false", "bn=false", "lr=0.05", "data.image_size=32",
                   "scheduler=constant", output_dir=tmp_path / "run")
    record = runner.run(cfg)
    assert record["status"] == "completed"
    assert record["config"]["model_name"] == "plain_cifar" and record["config"]["shortcut"] is False
    assert record["config"]["bn"] is False and record["config"]["model"]["bn"] is False
    assert record["config"]["optimizer"]["lr"] == record["config"]["lr"] == 0.05
    assert record["history"][0]["lr"] == pytest.approx(0.05)
    assert record["num_params"] == sum(p.numel() for p in __import__("bnres").models.plain_cifar(
        in_channels=1, num_classes=10, image_size=32, depth=8, bn=False).parameters())


# --- fingerprints ------------------------------------------------------------------------------------
def test_fingerprint_covers_what_is_trained_and_nothing_else(make_cfg, tmp_path):
    base = make_cfg()
    assert fingerprint(base) == fingerprint(runner.resolved_config(base))  # a record's config gives the same
    same = [
        make_cfg(output_dir=tmp_path / "elsewhere"), make_cfg("logger=csv"), make_cfg("trainer.enable_progress_bar=true"),
        make_cfg("tags=[x]"), make_cfg("callbacks=default"), make_cfg("fresh=true"), make_cfg("lr=0.1"),
    ]
    assert {fingerprint(c) for c in same} == {fingerprint(base)}
    other = [make_cfg("lr=0.2"), make_cfg("seed=1"), make_cfg("bn=false"), make_cfg("trainer.max_epochs=2"),
             make_cfg("optimizer.momentum=0.8"), make_cfg("data.augment=true")]
    assert len({fingerprint(c) for c in other} | {fingerprint(base)}) == len(other) + 1
    assert differences(runner.resolved_config(base), make_cfg("lr=0.2")) == "lr: 0.1 -> 0.2, optimizer.lr: 0.1 -> 0.2"
    assert "paths.output_dir" not in trained_settings(base)


def test_record_checkpoints_and_logger_carry_the_fingerprint(make_cfg, tmp_path):
    cfg = make_cfg("callbacks=default", "logger=csv", "trainer.enable_progress_bar=false", output_dir=tmp_path / "run")
    record = runner.run(cfg)
    assert record["fingerprint"] == fingerprint(cfg)
    for name in ("best.ckpt", "last.ckpt"):
        checkpoint = torch.load(tmp_path / "run" / "checkpoints" / name, map_location="cpu", weights_only=False)
        assert checkpoint[ConfigFingerprint.KEY] == record["fingerprint"]
    hparams = yaml.safe_load(next((tmp_path / "run" / "csv").glob("**/hparams.yaml")).read_text())
    assert hparams["fingerprint"] == record["fingerprint"]


# --- folders bound to their configs ----------------------------------------------------------------
def _sweep(sweep: Path, *values: str) -> "subprocess.CompletedProcess":  # noqa: F821
    return run_script(["-m", f"lr={','.join(values)}", *TINY, "logger=none", f"hydra.sweep.dir={sweep}"], cwd=ROOT, timeout=300)


def test_a_rerun_with_other_values_never_relabels_finished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    first = _sweep(sweep, "1000", "0.1")
    assert first.returncode == 0, first.stderr
    before = {p: p.read_text() for p in sweep.glob("*/result.json")} | {p: p.read_text() for p in sweep.glob("*/.hydra/overrides.yaml")}
    second = _sweep(sweep, "0.3", "0.01")
    assert second.returncode == 2
    assert "error: hydra.sweep.dir=" in second.stderr and "(job 0) holds a run of another config (lr: 1000 -> 0.3" in second.stderr
    assert "fresh=true" in second.stderr
    after = {p: p.read_text() for p in before}
    assert after == before  # records and Hydra's overrides.yaml untouched
    third = _sweep(sweep, "1000", "0.1")  # the same sweep again: finished jobs are kept
    assert third.returncode == 0 and "already" in third.stderr + third.stdout


def test_resume_refuses_a_changed_config_and_a_foreign_checkpoint(make_cfg, tmp_path):
    run_dir = tmp_path / "run"
    args = ["callbacks=default", "trainer.enable_progress_bar=false", "scheduler=constant", "trainer.max_epochs=2"]
    record = runner.run(make_cfg(*args, output_dir=run_dir))
    # as if killed after the first epoch's checkpoint: the record is left running
    record["status"] = "running"
    (run_dir / "result.json").write_text(json.dumps(record))
    with pytest.raises(FolderConflict, match=r"holds a run of another config \(lr: 0.1 -> 0.5"):
        runner.run(make_cfg(*args, "lr=0.5", output_dir=run_dir))
    # a checkpoint of another config, even at an explicit ckpt_path, is never resumed
    with pytest.raises(FolderConflict, match="was written by a run with config fingerprint"):
        runner.run(make_cfg(*args, "lr=0.5", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", output_dir=tmp_path / "other"))
    # the same config resumes, and trains at its own lr
    resumed = runner.run(make_cfg(*args, output_dir=run_dir))
    assert resumed["status"] == "completed" and resumed["resumed_from"]
    assert all(row["lr"] == pytest.approx(0.1) for row in resumed["history"])


def test_fresh_moves_the_old_run_aside_and_nothing_of_it_can_be_resumed(make_cfg, tmp_path):
    run_dir = tmp_path / "run"
    args = ["callbacks=default", "trainer.enable_progress_bar=false"]
    old = runner.run(make_cfg(*args, output_dir=run_dir))
    new = runner.run(make_cfg(*args, "lr=0.05", "fresh=true", output_dir=run_dir))
    assert new["fingerprint"] != old["fingerprint"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]  # no -v1 files
    kept = list((run_dir / ".replaced").glob("*/result.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["fingerprint"] == old["fingerprint"]
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=False)
        assert ckpt[ConfigFingerprint.KEY] == new["fingerprint"]
    # the fresh run "killed": a plain rerun resumes the fresh run, never the old one
    new["status"] = "running"
    (run_dir / "result.json").write_text(json.dumps(new))
    again = runner.run(make_cfg(*args, "lr=0.05", output_dir=run_dir))
    assert again["status"] == "completed" and again["fingerprint"] == new["fingerprint"]


def test_starting_over_sets_the_killed_attempt_aside_so_best_belongs_to_the_record(make_cfg, tmp_path):
    run_dir = tmp_path / "run"
    args = ["callbacks=default", "trainer.enable_progress_bar=false"]
    killed = runner.run(make_cfg(*args, output_dir=run_dir))
    killed["status"] = "running"
    (run_dir / "result.json").write_text(json.dumps(killed))
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"cut short")  # a kill while it was written
    record = runner.run(make_cfg(*args, output_dir=run_dir))
    assert record["status"] == "completed" and record["resumed_from"] is None
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert list((run_dir / ".replaced").glob("*/checkpoints/last.ckpt.corrupt"))


def test_a_single_run_folder_is_locked_while_it_runs(tmp_path):
    run_dir = tmp_path / "run"
    lock = FolderLock(run_dir, "hydra.run.dir")  # as a running job holds it
    try:
        result = run_script([*TINY, "logger=none", f"hydra.run.dir={run_dir}"], cwd=ROOT, timeout=120)
    finally:
        lock.release()
    assert result.returncode == 2 and f"error: hydra.run.dir={run_dir} is in use by a running job (pid" in result.stderr
    assert not (run_dir / "result.json").exists() and not (run_dir / ".run.lock").exists()
    done = run_script([*TINY, "logger=none", f"hydra.run.dir={run_dir}"], cwd=ROOT, timeout=120)
    assert done.returncode == 0 and read_record(run_dir)["status"] == "completed"
    assert not (run_dir / ".run.lock").exists()


def test_cli_folder_is_bound_to_its_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bnres"])
    base = ["fit", "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
            "--trainer.enable_progress_bar", "false"]
    cli = BnresCLI(args=base)
    assert cli.record["fingerprint"] and cli.record["config"]["shortcut"] is None
    with pytest.raises(SystemExit) as exit_:
        BnresCLI(args=[*base, "--model.optimizer.lr", "0.5"])
    assert exit_.value.code == 2
    assert "holds a run of another config (lr: 0.1 -> 0.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        BnresCLI(args=[*base[:4], str(tmp_path / "other"), *base[5:], "--model.optimizer.lr", "0.5",
                       "--ckpt_path", str(tmp_path / "run" / "checkpoints" / "last.ckpt")])
    assert "was written by a run with config fingerprint" in capsys.readouterr().err


@pytest.mark.slow
def test_the_users_sweeps_work_with_the_shortcut_knob(tmp_path):
    """`-m model=resnet18,plain18 bn=true,false` and `-m model=resnet18 shortcut=true,false bn=true,false`:
    the same four networks, the same records."""
    small = [*TINY, "logger=none"]
    first = run_script(["-m", "model=resnet18,plain18", "bn=true,false", *small, f"hydra.sweep.dir={tmp_path / 'a'}"], cwd=ROOT)
    second = run_script(["-m", "model=resnet18", "shortcut=true,false", "bn=true,false", *small, f"hydra.sweep.dir={tmp_path / 'b'}"], cwd=ROOT)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr

    def summary(sweep):
        return sorted((r["config"]["model_name"], r["config"]["shortcut"], r["config"]["bn"], r["fingerprint"], r["num_params"])
                      for r in (json.loads(p.read_text()) for p in sweep.glob("*/result.json")))

    assert summary(tmp_path / "a") == summary(tmp_path / "b")
    assert {s[0] for s in summary(tmp_path / "a")} == {"resnet18", "plain18"}

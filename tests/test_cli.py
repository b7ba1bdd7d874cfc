"""The Lightning CLI (``bnres fit|validate|test|predict``): same module, data and record as the Hydra path."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
import yaml

from bnres import optim
from bnres.cli import SCHEDULES, BnresCLI
from bnres.models import MODEL_NAMES
from bnres.models.zoo import ModelName
from bnres.record import read_record

ROOT = Path(__file__).resolve().parents[1]
CLI_CONF = ROOT / "conf" / "cli"

# a few steps, no logger, no progress bar
@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bnres"])  # the CLI is given its arguments; keep pytest's out of sight


FAST = [
    "--trainer.max_epochs", "1",
    "--trainer.limit_train_batches", "2",
    "--trainer.limit_val_batches", "1",
    "--trainer.limit_test_batches", "1",
    "--trainer.enable_progress_bar", "false",
]


def test_fit_in_process_writes_the_hydra_record(tmp_path):
    run_dir = tmp_path / "run"
    args = ["fit", *FAST, "--trainer.max_epochs", "2", "--trainer.logger", "false", "--trainer.default_root_dir", str(run_dir),
            "--model.scheduler", "bnres.cli.CosineSchedule", "--model.optimizer.lr", "0.05", "--seed_everything", "1"]
    cli = BnresCLI(args=args)
    record = cli.record
    assert record["status"] == "completed", record["error"]
    assert read_record(run_dir) == json.loads((run_dir / "result.json").read_text())
    assert read_record(run_dir)["status"] == "completed"
    # "1" is one batch, not 100% (Lightning's Union[float, int] would read it as 1.0)
    assert cli.trainer.limit_val_batches == 1 and isinstance(cli.trainer.limit_val_batches, int)
    assert [row["step"] for row in record["history"]] == [2, 4]
    # the Classifier told the schedule the run's length (4 steps): cosine is at half after 2 of them
    assert record["history"][0]["lr"] == pytest.approx(0.05 * 0.5)
    assert set(record["final"]) >= {"train/loss", "train/acc", "val/loss", "val/acc", "test/acc"}
    # what analysis reads: the same top-level knobs as a Hydra record
    config = record["config"]
    assert (config["model_name"], config["bn"], config["bn_placement"], config["lr"], config["seed"]) == ("lenet", True, "before_activation", 0.05, 1)
    assert cli.datamodule.shuffle_seed == 1  # as Hydra's data.shuffle_seed=${seed}
    assert config["data"]["name"] == "mnist5k" and config["data"]["in_channels"] == 1
    assert config["trainer"]["max_epochs"] == 2
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())  # as given: `bnres fit --config` reruns it
    assert saved["model"]["scheduler"]["class_path"] == "bnres.cli.CosineSchedule" and saved["trainer"]["logger"] is False
    assert not (run_dir / "wandb").exists()
    # the network got its shapes from the data module, and is the zoo's own class (checkpoints match Hydra's)
    assert type(cli.model.net).__name__ == "LeNet" and cli.model.net.input_shape == (1, 28, 28)
    from bnres.analysis.records import _record_to_row

    row = _record_to_row(record)
    assert (row["model_name"], row["bn"], row["lr"], row["data"]) == ("lenet", True, 0.05, "mnist5k")


def _print_config(capsys, args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        BnresCLI(args=[*args, "--print_config"])
    assert exit_.value.code in (0, None)
    return capsys.readouterr().out


def test_print_config_round_trips(tmp_path, capsys):
    args = ["fit", "--config", str(CLI_CONF / "plain18.yaml"), "--model.net.bn", "false", "--model.net.bn_impl", "scratch",
            "--model.optimizer.lr", "0.3", "--data", "SyntheticDataModule", "--data.image_size", "32", "--seed_everything", "3"]
    printed = _print_config(capsys, args)
    saved = tmp_path / "run.yaml"
    saved.write_text(printed)
    assert _print_config(capsys, ["fit", "--config", str(saved)]) == printed
    config = yaml.safe_load(printed)
    net = config["model"]["net"]["init_args"]
    assert (net["name"], net["bn"], net["bn_impl"], net["stem"]) == ("plain18", False, "scratch", "imagenet")
    assert config["model"]["optimizer"]["init_args"]["lr"] == 0.3
    assert config["data"]["class_path"].endswith("SyntheticDataModule") and config["seed_everything"] == 3
    # linked, not repeated: the shapes come from the data module, the data order's seed from seed_everything
    assert "in_channels" not in net and "shuffle_seed" not in config["data"]["init_args"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model.net.name", "resnet99"], "resnet99"),
        (["--model.net.bn_placement", "sideways"], "sideways"),
        (["--model.net.bn", "maybe"], "maybe"),
        (["--model.net.name", "plain_cifar", "--model.net.depth", "21"], "plain_cifar depth=21 is not 6n+2"),
        (["--model.net.bn_placement", "pre_activation"], "'pre_activation' is not valid for lenet"),
        (["--model.net.depth", "3"], "lenet takes no depth"),
        (["--model.optimizer.lr", "0"], "lr=0.0 must be a positive number"),
    ],
)
def test_bad_arguments_are_a_clear_error(capsys, tmp_path, args, message):
    with pytest.raises(SystemExit) as exit_:
        BnresCLI(args=["fit", "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "bad"), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert len(err.splitlines()) < 12  # a short usage line and the error, not the whole option list
    assert not (tmp_path / "bad" / "result.json").exists()


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("bnres")
    found = str(script) if script.exists() else shutil.which("bnres")
    return [found] if found else [sys.executable, "-m", "bnres"]


def test_console_script_fit_with_wandb_offline(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_MODE", None)  # offline is the default
    env.pop("WANDB_API_KEY", None)
    args = ["fit", "--config", str(CLI_CONF / "resnet18.yaml"), "--model.net.bn", "false", *FAST,
            "--data.batch_size", "16", "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir", str(run_dir)]
    proc = subprocess.run([*_console_script(), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = read_record(run_dir)
    assert record["status"] == "completed", record["error"]
    assert (record["config"]["model_name"], record["config"]["depth"], record["config"]["bn"]) == ("resnet18", 18, False)
    assert "model.net.bn=false" in record["overrides"]
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb")), sorted(p.name for p in (run_dir / "wandb").iterdir())


def test_typed_choices_and_schedules_match_the_library():
    assert get_args(ModelName) == MODEL_NAMES
    for name, cls in SCHEDULES.items():
        fn = getattr(optim, name)
        wanted = {k: p.default for k, p in inspect.signature(fn).parameters.items() if k not in ("optimizer", "total_steps")}
        given = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
        assert given == wanted, name


def test_cli_last_checkpoint_is_rewritten_when_val_acc_does_not_improve(tmp_path):
    """last.ckpt follows every epoch end, not only the epochs that improve val/acc (what save_last on
    the monitored checkpoint would do): a resumed CLI run continues from where it stopped."""
    run_dir = tmp_path / "run"
    # no BN (running statistics would move) and lr ~ 0: val/acc stays the same, so best.ckpt is not rewritten
    args = ["fit", *FAST, "--trainer.max_epochs", "3", "--trainer.logger", "false", "--trainer.default_root_dir", str(run_dir),
            "--model.optimizer.lr", "1e-30", "--model.scheduler", "bnres.cli.ConstantSchedule", "--model.net.bn", "false"]
    record = BnresCLI(args=args).record
    assert record["status"] == "completed", record["error"]
    import torch

    checkpoints = run_dir / "checkpoints"
    assert torch.load(checkpoints / "best.ckpt", weights_only=False)["global_step"] == 2
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["global_step"] == 6
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_cli_defaults_match_the_hydra_defaults(make_cfg):
    """Two front doors, one house: the CLI's defaults must not drift from conf/train.yaml."""
    from bnres.cli import DEFAULTS

    cfg = make_cfg(fast=False)
    opt = DEFAULTS["model.optimizer"]["init_args"]
    assert opt["lr"] == cfg.lr and opt["momentum"] == cfg.optimizer.momentum and opt["weight_decay"] == cfg.optimizer.weight_decay
    assert DEFAULTS["model.scheduler"]["class_path"].lower().endswith(cfg.scheduler._target_.rsplit(".", 1)[1] + "schedule")
    assert DEFAULTS["trainer.max_epochs"] == cfg.trainer.max_epochs
    assert DEFAULTS["model.net"]["init_args"]["name"] == cfg.model_name
    assert DEFAULTS["data"]["class_path"] == cfg.data._target_
    # the same callbacks with the same arguments (the CLI fills in dirpath per run)
    hydra_callbacks = sorted(
        (json.dumps({k: v for k, v in c.items() if k != "dirpath"}, sort_keys=True) for c in cfg.callbacks.values()),
    )
    cli_callbacks = sorted(json.dumps({"_target_": c["class_path"], **c["init_args"]}, sort_keys=True) for c in DEFAULTS["trainer.callbacks"])
    assert cli_callbacks == hydra_callbacks


def test_sigterm_stops_a_cli_run_with_a_checkpoint_and_ckpt_path_continues_it(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "helpers"), os.environ.get("PYTHONPATH", "")])}
    common = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "1",
              "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
              "--data.batch_size", "32", "--trainer.default_root_dir", str(run_dir)]
    signal_at = ["--trainer.callbacks+=signal_at_step.SignalAtStep", "--trainer.callbacks.step", "8", "--trainer.callbacks.signum", "SIGTERM"]
    stopped = subprocess.run([*_console_script(), "fit", *common, *signal_at], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    record = read_record(run_dir)
    assert record["status"] == "preempted" and "SIGTERM at step 8" in record["error"]
    last = run_dir / "checkpoints" / "last.ckpt"
    import torch

    assert torch.load(last, weights_only=False)["global_step"] == 8  # part-way through epoch 1

    resumed = subprocess.run([*_console_script(), "fit", *common, "--ckpt_path", str(last)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["resumed_from"] == str(last)
    assert [row["step"] for row in record["history"]] == [6, 12]

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

from bnres.training import optim
from bnres.cli.main import SCHEDULES, BnresCLI
from bnres.models import MODEL_NAMES
from bnres.models.zoo import ModelName
from bnres.runs.record import read_record

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
            "--model.scheduler", "bnres.cli.main.CosineSchedule", "--model.optimizer.lr", "0.05", "--seed_everything", "1"]
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
    assert saved["model"]["scheduler"]["class_path"] == "bnres.cli.main.CosineSchedule" and saved["trainer"]["logger"] is False
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
        (["--model.net.depth", "3"], "--model.net.depth=3 does not apply to lenet"),
        (["--model.optimizer.lr", "0"], "--model.optimizer.lr=0.0 is not a finite number > 0"),
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


@pytest.mark.slow  # an end-to-end subprocess run: the slow suite (CI runs it too)
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
            "--model.optimizer.lr", "1e-30", "--model.scheduler", "bnres.cli.main.ConstantSchedule", "--model.net.bn", "false"]
    record = BnresCLI(args=args).record
    assert record["status"] == "completed", record["error"]
    import torch

    checkpoints = run_dir / "checkpoints"
    assert torch.load(checkpoints / "best.ckpt", weights_only=False)["global_step"] == 2
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["global_step"] == 6
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]


def _printed_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_:
        BnresCLI(args=["fit", *args, "--print_config"])
    assert exit_.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_every_cli_default_is_the_hydra_default(make_cfg, capsys):
    """One definition, two front doors: every setting `bnres fit --print_config` shows that Hydra also has
    holds Hydra's composed default (the CLI reads them from conf/, it keeps no copy)."""
    printed = _printed_config(capsys)
    cfg = make_cfg(fast=False)
    net = printed["model"]["net"]["init_args"]
    assert net["name"] == cfg.model_name
    for knob in ("bn", "bn_placement", "bn_impl", "bn_momentum", "bn_eps"):
        assert net[knob] == cfg[knob], knob
    assert printed["model"]["optimizer"]["class_path"] == cfg.optimizer._target_
    for key, value in cfg.optimizer.items():
        if key not in ("_target_", "_partial_"):
            assert printed["model"]["optimizer"]["init_args"][key] == value, key
    assert printed["model"]["scheduler"]["class_path"] == f"bnres.cli.main.{cfg.scheduler._target_.rsplit('.', 1)[1].capitalize()}Schedule"
    for key, value in cfg.scheduler.items():
        if key not in ("_target_", "_partial_"):
            assert printed["model"]["scheduler"]["init_args"][key] == value, key
    assert printed["data"]["class_path"] == cfg.data._target_
    for key, value in cfg.data.items():
        if key not in ("_target_", "name", "in_channels", "num_classes", "shuffle_seed"):
            assert printed["data"]["init_args"][key] == value, key  # flip: false for digits, as conf/data/mnist5k.yaml says
    for key, value in cfg.trainer.items():
        if key not in ("_target_", "default_root_dir"):
            assert printed["trainer"][key] == value, key
    hydra_callbacks = [dict(c) for c in cfg.callbacks.values()]
    assert [c["class_path"] for c in printed["trainer"]["callbacks"]] == [c["_target_"] for c in hydra_callbacks]
    for cli_cb, hydra_cb in zip(printed["trainer"]["callbacks"], hydra_callbacks):
        for key, value in hydra_cb.items():
            if key not in ("_target_", "dirpath"):
                assert cli_cb["init_args"][key] == value, (hydra_cb["_target_"], key)
    assert printed["divergence"] == dict(cfg.divergence)
    assert printed["test_after_fit"] == cfg.test_after_fit and printed["seed_everything"] == cfg.seed
    assert printed["model"]["compile"] == cfg.compile and printed["model"]["channels_last"] == cfg.channels_last


def test_cli_defaults_follow_an_edited_conf_tree(tmp_path):
    """By construction: change a default in conf/ and the CLI's default changes with it."""
    from bnres.cli.main import hydra_defaults

    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    sgd = conf / "optimizer" / "sgd.yaml"
    sgd.write_text(sgd.read_text().replace("momentum: 0.9", "momentum: 0.5"))
    mnist = conf / "data" / "mnist5k.yaml"
    mnist.write_text(mnist.read_text().replace("flip: false", "flip: true"))
    defaults = hydra_defaults(conf)
    assert defaults["model.optimizer"]["init_args"]["momentum"] == 0.5
    assert defaults["data"]["init_args"]["flip"] is True
    assert hydra_defaults()["model.optimizer"]["init_args"]["momentum"] == 0.9


@pytest.mark.slow  # an end-to-end subprocess run: the slow suite (CI runs it too)
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


def test_fit_help_is_short_and_names_the_networks_and_derived_arguments(capsys):
    with pytest.raises(SystemExit) as exit_:
        BnresCLI(args=["fit", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert len(text.splitlines()) < 300  # was 1,234 lines, 670 of them every torch.nn.Module subclass
    assert "known subclasses" not in text and "torch.nn.Identity" not in text
    assert f"--model.net.name      one of: {', '.join(MODEL_NAMES)}" in text
    assert "derived, never given: model.net in_channels, num_classes, image_size" in text
    for option in ("--trainer.max_epochs", "--model.optimizer", "--data.help", "--divergence.loss_factor", "--test_after_fit"):
        assert option in text
    assert "(type: int, default: 1)" in text  # each Trainer option keeps its type and default

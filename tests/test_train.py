"""The training harness: compose → run → record, on real data, a few steps at a time."""

from __future__ import annotations

import json

import pytest
import torch

from bnres.runs import runner
from bnres.config.checks import ConfigError
from bnres.runs.record import read_record

CIFAR_SHAPED = ("resnet_cifar", "plain_cifar", "resnet18", "plain18", "resnet34", "plain34")


@pytest.mark.parametrize("model", ["lenet", "mlp", "resnet18", "plain18", "resnet34", "plain34", "resnet_cifar", "plain_cifar"])
@pytest.mark.parametrize("data", ["mnist5k", "synthetic"])
def test_every_model_on_every_offline_dataset_runs(make_cfg, model, data):
    overrides = [f"model={model}", f"data={data}", "trainer.limit_train_batches=2", "data.batch_size=16"]
    if model == "lenet" and data == "synthetic":
        overrides.append("data.image_size=28")
    if model in ("resnet34", "plain34"):
        overrides.append("test_after_fit=false")
    record = runner.run(make_cfg(*overrides))
    assert record["status"] == "completed", record["error"]
    assert record["num_params"] > 0
    assert record["history"] and record["history"][0]["step"] == 2
    assert record["config"]["model_name"] == model
    assert record["config"]["data"]["name"] == data


def test_short_real_training_beats_chance_by_a_wide_margin(make_cfg):
    cfg = make_cfg("trainer.limit_train_batches=null", "trainer.max_epochs=2", "trainer.limit_val_batches=null", "trainer.limit_test_batches=null")
    record = runner.run(cfg)
    assert record["status"] == "completed"
    assert record["final"]["val/acc"] > 0.6, record["final"]  # chance is 0.1
    assert record["final"]["test/acc"] > 0.6
    assert [row["epoch"] for row in record["history"]] == [0, 1]
    on_disk = read_record(cfg.paths.output_dir)
    assert on_disk["final"] == pytest.approx(record["final"])
    assert on_disk["train_images_per_s"] > 0


def test_record_fields(make_cfg):
    cfg = make_cfg("seed=0", "lr=0.05")
    runner.run(cfg)
    record = json.loads((cfg.paths.output_dir and __import__("pathlib").Path(cfg.paths.output_dir) / "result.json").read_text())
    for key in ("status", "overrides", "config", "final", "best", "history", "num_params", "wall_time_s", "train_images_per_s", "diverged_at_step", "error"):
        assert key in record
    assert record["config"]["lr"] == 0.05
    assert record["config"]["optimizer"]["lr"] == 0.05  # interpolations are stored resolved
    assert record["config"]["seed"] == 0
    assert set(record["final"]) >= {"train/loss", "train/acc", "val/loss", "val/acc", "test/acc"}


def test_knobs_flow_into_model_and_optimizer(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg("model=plain_cifar", "depth=32", "bn=false", "lr=0.3", "bn_impl=scratch", "data.image_size=32")
    assert cfg.model.depth == 32 and cfg.model.bn is False and cfg.model.bn_impl == "scratch"
    assert cfg.optimizer.lr == 0.3
    net = instantiate(cfg.model)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d,)) for m in net.modules())
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_seed_zero_is_honoured_and_deterministic_runs_repeat(make_cfg, tmp_path):
    a = runner.run(make_cfg("seed=0", "deterministic=true", output_dir=tmp_path / "a"))
    b = runner.run(make_cfg("seed=0", "deterministic=true", output_dir=tmp_path / "b"))
    c = runner.run(make_cfg("seed=1", "deterministic=true", output_dir=tmp_path / "c"))
    assert a["history"] == b["history"]
    assert a["final"] == b["final"]
    assert a["history"][0]["train/loss"] != c["history"][0]["train/loss"]


def test_diverging_run_is_a_result(make_cfg):
    record = runner.run(make_cfg("model=lenet", "model.activation=relu", "bn=false", "lr=50", "trainer.limit_train_batches=20"))
    assert record["status"] == "diverged"
    assert record["diverged_at_step"] is not None and record["diverged_at_step"] <= 20
    assert "loss" in record["error"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("bn_placement=sideways", "bn_placement='sideways' is not one of"),
        ("bn_impl=numpy", "bn_impl='numpy' is not one of"),
        ("lr=0", "lr=0 is not a finite number > 0"),
        ("lr=-1", "lr=-1 is not a finite number > 0"),
        ("data.batch_size=0", "data.batch_size=0 is not an integer >= 1"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0"),
        ("seed=-3", "seed=-3 is not an integer in [0, 4294967295]"),
        ("trainer.precision=8-bit", "trainer.precision='8-bit' is not one of"),
        ("trainer.devices=4096", "trainer.devices=4096 but this machine has"),
    ],
)
def test_bad_input_is_one_clear_line_and_no_record(make_cfg, override, message, tmp_path):
    cfg = make_cfg(override, output_dir=tmp_path / "bad")
    with pytest.raises(ConfigError) as err:
        runner.run(cfg)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "bad" / "result.json").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=resnet_cifar", "depth=21"], "depth=21"),
        (["model=lenet", "bn_placement=pre_activation"], "pre_activation"),
    ],
)
def test_bad_model_arguments_are_config_errors(make_cfg, overrides, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        runner.run(make_cfg(*overrides, output_dir=tmp_path / "bad"))
    assert message in str(err.value)
    assert not (tmp_path / "bad" / "result.json").exists()


def test_failure_is_recorded_not_raised(make_cfg, monkeypatch):
    from bnres.training.module import Classifier

    def boom(self, batch, batch_idx):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(Classifier, "training_step", boom)
    cfg = make_cfg()
    record = runner.run(cfg)
    assert record["status"] == "failed"
    assert "injected failure" in record["error"]
    assert read_record(cfg.paths.output_dir)["status"] == "failed"


def test_schedules_change_the_lr(make_cfg, tmp_path):
    for schedule, expect_decay in (("constant", False), ("multistep", True), ("cosine", True)):
        cfg = make_cfg(f"scheduler={schedule}", "trainer.limit_train_batches=8", "scheduler.warmup_fraction=0.25", output_dir=tmp_path / schedule)
        record = runner.run(cfg)
        lr = record["history"][-1]["lr"]
        assert (lr < 0.1 * 0.99) == expect_decay, (schedule, lr)


@pytest.mark.parametrize("logger", ["none", "csv"])
def test_default_callbacks_work_with_any_logger_and_no_progress_bar(make_cfg, logger):
    cfg = make_cfg(f"logger={logger}", "callbacks=default", "trainer.enable_progress_bar=false")
    record = runner.run(cfg)
    assert record["status"] == "completed", record["error"]

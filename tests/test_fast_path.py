"""The GPU fast-path switches build and train on CPU where they apply; the step reads nothing back.

On CPU: channels_last, compile, bf16-mixed, and a check that a training step (module, data loader,
augmentation, callbacks, logger connector, progress bar) never turns a tensor into a Python number
outside the logging steps: on a GPU each such read is a host sync. The GPU-only switches (cuDNN
benchmark, bf16 on CUDA, the whole fast path with data and augmentation on the device) are skipped
without CUDA.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from bnres.runs import runner
from bnres.training.callbacks import DivergenceMonitor, ProgressBar
from bnres.training.host_sync import HostSyncCounter
from bnres.training.module import Classifier, EpochMean

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SMALL_CONV = ["model=resnet_cifar", "depth=8", "data=synthetic", "data.num_samples=256", "data.val_size=32", "data.test_size=32", "data.batch_size=16"]


def _completed(record):
    assert record["status"] == "completed", record["error"]
    assert record["history"] and record["final"]["train/loss"] > 0
    return record


def test_channels_last_trains_on_cpu(make_cfg):
    record = _completed(runner.run(make_cfg(*SMALL_CONV, "channels_last=true")))
    assert record["config"]["channels_last"] is True


def test_channels_last_converts_weights_and_inputs():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    net(torch.zeros(1, 3, 8, 8))
    module = Classifier(net, channels_last=True)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    seen = {}
    net[0].register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    module(torch.randn(2, 3, 8, 8))
    assert seen["x"].is_contiguous(memory_format=torch.channels_last)


def test_bf16_mixed_trains_on_cpu(make_cfg):
    _completed(runner.run(make_cfg(*SMALL_CONV, "trainer.precision=bf16-mixed")))


@pytest.mark.slow  # inductor compiles C++ kernels with gcc: about a minute or more on 2 cores
def test_compile_trains_on_cpu(make_cfg):
    record = _completed(runner.run(make_cfg("model=lenet", "compile=true", "trainer.limit_train_batches=3")))
    assert record["config"]["compile"] is True


def test_compile_keeps_plain_parameter_names():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    module = Classifier(net, compile=True)
    module.configure_model()
    assert module._forward is not module.net  # compiled lazily: nothing is traced until the first call
    assert set(module.state_dict()) == {"net.1.weight", "net.1.bias"}


# --- no host reads in the training step -----------------------------------------------------------
@pytest.mark.parametrize("probes", ["none", "all"])
def test_training_steps_read_nothing_back_between_logging_steps(make_cfg, monkeypatch, probes):
    """Default callbacks and logger, augmentation on: with logging, progress-bar refresh and the
    divergence check all less frequent than the run is long, a step reads no tensor value at all.
    With the probes on (every 4th step), the steps between probe steps read nothing either."""
    counter = HostSyncCounter()
    cfg = make_cfg(
        *SMALL_CONV, f"probes={probes}", *(["probes.every_n_steps=4"] if probes != "none" else []), "data.augment=true", "logger=csv", "callbacks=default", "trainer.enable_progress_bar=true",
        "trainer.limit_train_batches=6", "trainer.max_epochs=2", "trainer.log_every_n_steps=1000",
        "callbacks.progress_bar.refresh_rate=1000", "divergence.check_every_n_steps=1000",
    )
    original_init = pl.Trainer.__init__

    def init_with_counter(self, *args, callbacks=None, **kwargs):
        original_init(self, *args, callbacks=[*(callbacks or []), counter], **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", init_with_counter)
    try:
        record = runner.run(cfg)
    finally:
        counter.unpatch()
    assert record["status"] == "completed", record["error"]
    if probes == "none":
        assert counter.steps_watched == 2 * 5  # steps 2..6 of both epochs
    else:
        assert 0 < counter.steps_watched < 2 * 5
        assert record["probes"]["layers"]["step"] == [0, 4, 8, 11] and record["probes"]["landscape"]["step"] == [0, 4, 8]
    assert not counter.reads, f"{len(counter.reads)} host reads during training steps, first:\n{counter.reads[0]}"


def test_counter_counts_cuda_sync_warnings_inside_steps_only(monkeypatch):
    """On CUDA the counter also records what torch.cuda.set_sync_debug_mode("warn") flags, inside the
    window only, and puts the warning machinery back as it was (the CUDA calls are stubbed here)."""
    import warnings

    modes = []
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    counter = HostSyncCounter()
    counter.on_cuda = True
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        shown = []
        warnings.showwarning = lambda message, *args: shown.append(str(message))
        filters, show = warnings.filters[:], warnings.showwarning
        counter._patch()
        counter._set_active(True)
        for _ in range(2):  # the same line twice: both counted, not once per location
            warnings.warn("called a synchronizing CUDA operation", UserWarning)
        warnings.warn("unrelated", UserWarning)  # other warnings are shown as before
        counter._set_active(False)
        warnings.warn("called a synchronizing CUDA operation", UserWarning)  # outside a step: shown, not counted
        counter.unpatch()
        assert warnings.filters == filters and warnings.showwarning is show
    assert len(counter.cuda_syncs) == 2 and modes == ["warn", 0]
    assert shown == ["unrelated", "called a synchronizing CUDA operation"]
    assert counter.summary()["cuda_syncs"] == 2 and counter.summary()["python_reads"] == 0


def test_logged_values_are_epoch_means_over_all_samples(make_cfg):
    """train/loss and train/acc are means over every sample of the epoch (not of batch means)."""
    metric = EpochMean()
    metric.update(torch.tensor(6.0), 3)  # 3 samples, loss sum 6
    metric.update(torch.tensor(1.0), 1)
    assert metric.compute().item() == pytest.approx(7.0 / 4)
    record = _completed(runner.run(make_cfg("trainer.limit_train_batches=4")))
    assert 0.0 <= record["final"]["train/acc"] <= 1.0


def test_progress_bar_shows_the_step_loss_without_prog_bar_logging():
    class FakeTrainer:
        callback_metrics = {"train/loss_step": torch.tensor(0.25)}
        progress_bar_metrics = {"val/acc": 0.5}
        loggers = []

    items = ProgressBar(step_metrics=["train/loss_step"]).get_metrics(FakeTrainer(), None)
    assert items["train/loss_step"] == pytest.approx(0.25) and items["val/acc"] == 0.5


def test_progress_bar_redraws_at_most_every_min_interval(monkeypatch):
    """Every refresh_rate batches, but not twice within min_interval_s; a loop's last batch always."""
    clock = [100.0]
    monkeypatch.setattr("bnres.training.callbacks.time.monotonic", lambda: clock[0])
    bar = ProgressBar(refresh_rate=2, min_interval_s=0.5)
    drawn = []
    for batch in range(1, 12):
        clock[0] += 0.2  # 0.2 s per batch
        if bar._should_update(batch, 11):
            drawn.append(batch)
    # batch 2 (first due), then the next even batch >= 0.5 s later, ..., and the last (11)
    assert drawn == [2, 6, 10, 11]
    fast = ProgressBar(refresh_rate=1, min_interval_s=0)
    assert all(fast._should_update(batch, 5) for batch in range(1, 6))
    with pytest.raises(ValueError, match="min_interval_s=-1"):
        ProgressBar(min_interval_s=-1)


# --- GPU only ---------------------------------------------------------------------------------------
@cuda
def test_cudnn_benchmark_on_gpu(make_cfg):
    _completed(runner.run(make_cfg(*SMALL_CONV, "trainer=gpu", "trainer.benchmark=true")))
    assert torch.backends.cudnn.benchmark


@cuda
@pytest.mark.gpu
def test_whole_fast_path_on_gpu(make_cfg):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cfg = make_cfg(
        *SMALL_CONV, "trainer=gpu", "trainer.precision=bf16-mixed", "trainer.benchmark=true", "channels_last=true",
        "data.on_device=true", "data.augment=true", "trainer.limit_train_batches=8",
    )
    _completed(runner.run(cfg))


@cuda
def test_divergence_check_on_gpu_is_asynchronous_and_still_stops():
    monitor = DivergenceMonitor(loss_factor=10.0, check_every_n_steps=1)

    class Strategy:
        @staticmethod
        def reduce_boolean_decision(decision, all=True):
            return decision

    class Trainer:
        world_size, global_step, should_stop, strategy = 1, 0, False, Strategy()

    trainer = Trainer()
    for step, value in enumerate([1.0, 2.0, float("nan"), 1.0, 1.0]):
        trainer.global_step = step
        monitor.on_train_batch_end(trainer, None, torch.tensor(value, device="cuda"), None, step)
    monitor.on_train_end(trainer, None)
    assert monitor.diverged_at_step == 2 and trainer.should_stop
    assert "nan" in monitor.reason

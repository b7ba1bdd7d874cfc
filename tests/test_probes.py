"""Mechanism probes (bnres.training.probes): the statistics are what a hand-written forward computes, BN and no-BN nets
are measured at the same positions, and the landscape probe leaves training exactly as it was."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from bnres.runs import runner
from bnres.models import BNPosition, LeNet, plain_cifar, resnet_cifar
from bnres.training.module import Classifier
from bnres.training.probes import LandscapeProbe, LayerProbe, bn_positions, landscape_along_gradient, layer_statistics, weight_layers


def _batch(seed: int = 0, n: int = 16, size: int = 28):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def _percentiles(x: torch.Tensor) -> list[float]:
    flat = x.detach().flatten().sort().values
    return [float(flat[round(q / 100 * (flat.numel() - 1))]) for q in (15, 50, 85)]


def _hand_written(net: nn.Sequential, x: torch.Tensor):
    """LeNet's forward, layer by layer, keeping the outputs at bn1..bn4 and the input of act4."""
    sites, act_input = {}, None
    for name, layer in net.named_children():
        if name == "act4":
            act_input = x.clone()
        x = layer(x)
        if name.startswith("bn"):
            sites[name] = x
    return sites, act_input, x


@pytest.mark.parametrize("bn", [True, False])
def test_layer_statistics_equal_a_hand_written_forward(bn):
    torch.manual_seed(0)
    net = LeNet(bn=bn, activation="relu")
    net.train()
    x, _ = _batch()
    expected_sites, act_input, _ = _hand_written(net, x)
    stats = layer_statistics(net, x)
    assert list(stats["site_mean"]) == ["bn1", "bn2", "bn3", "bn4"]  # BN layers, or BNPosition without BN
    for name, out in expected_sites.items():
        assert stats["site_mean"][name] == pytest.approx(out.mean().item(), abs=1e-6)
        assert stats["site_std"][name] == pytest.approx(out.std(correction=0).item(), rel=1e-5)
    assert stats["activation_percentiles"] == pytest.approx(_percentiles(act_input), rel=1e-6)


class _FakeTrainer:
    """The few trainer attributes the layer probe reads, to drive it step by step."""

    global_step, current_epoch, is_global_zero, loggers, estimated_stepping_batches = 0, 0, True, [], 10


def test_layer_probe_callback_measures_the_step_it_runs_in():
    """The callback's numbers at a probe step (forward hooks + gradients after backward) equal the same
    quantities computed by hand for that step's batch; non-probe steps record nothing."""
    torch.manual_seed(0)
    net = LeNet(bn=True, activation="relu")
    module = Classifier(net)
    probe = LayerProbe(every_n_steps=2, activation="act3", histograms_every_n_steps=None)
    trainer = _FakeTrainer()
    probe.on_train_start(trainer, module)
    for step in range(3):
        trainer.global_step = step
        x, y = _batch(step)
        probe.on_train_batch_start(trainer, module, (x, y), step)
        net.zero_grad()
        module.loss_fn(net(x), y).backward()
        probe.on_after_backward(trainer, module)
        probe.on_train_batch_end(trainer, module, None, (x, y), step)
        if step == 2:  # redo step 2 by hand on a copy of the weights as they were
            expected = {n: m.weight.grad.norm().item() for n, m in weight_layers(net)}
            stats = layer_statistics(net, x, "act3")
    results = probe.results()
    assert results["step"] == [0, 2]
    assert results["layers"] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert results["grad_norm"][-1] == pytest.approx([expected[n] for n in results["layers"]], rel=1e-6)
    assert results["site_std"][-1] == pytest.approx([stats["site_std"][s] for s in results["sites"]], rel=1e-5)
    assert results["activation_percentiles"][-1] == pytest.approx(stats["activation_percentiles"], rel=1e-6)
    assert not net.bn1._forward_hooks  # hooks gone after the probe step


@pytest.mark.parametrize("builder", [plain_cifar, resnet_cifar])
def test_bn_and_no_bn_nets_have_the_same_positions(builder):
    with_bn, without = builder(depth=8, in_channels=1, num_classes=10, image_size=32), builder(depth=8, in_channels=1, num_classes=10, image_size=32, bn=False)
    assert [n for n, _ in bn_positions(with_bn)] == [n for n, _ in bn_positions(without)]
    assert all(isinstance(m, BNPosition) for _, m in bn_positions(without))
    assert len(bn_positions(without)) == 7  # stem + 2 per block, 3 blocks
    # markers carry no state: same state_dict keys as before they existed (no bn* keys without BN)
    assert not any(k.split(".")[-2].startswith("bn") for k in without.state_dict() if "." in k)


def test_landscape_matches_a_direct_step_along_the_gradient():
    torch.manual_seed(0)
    module = Classifier(LeNet(bn=True, activation="relu"))
    x, y = _batch()
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    row = landscape_along_gradient(module, x, y, [0.1, 0.5])
    after = module.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics put back
    # by hand: g at theta, loss at theta - 0.5 g
    twin = LeNet(bn=True, activation="relu")
    twin.load_state_dict(before)
    loss = nn.functional.cross_entropy(twin(x), y)
    grads = torch.autograd.grad(loss, list(twin.parameters()))
    with torch.no_grad():
        for p, g in zip(twin.parameters(), grads):
            p.sub_(0.5 * g)
    loss_half = nn.functional.cross_entropy(twin(x), y)
    grads_half = torch.autograd.grad(loss_half, list(twin.parameters()))
    change = math.sqrt(sum(((a - b) ** 2).sum().item() for a, b in zip(grads, grads_half)))
    g_norm = math.sqrt(sum((g**2).sum().item() for g in grads))
    assert row["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert row["loss_along"][1] == pytest.approx(loss_half.item(), rel=1e-5)
    assert row["grad_change"][1] == pytest.approx(change, rel=1e-4)
    assert row["beta"] >= change / (0.5 * g_norm) * (1 - 1e-4)


class _FinalWeights(pl.Callback):
    def on_train_end(self, trainer, pl_module) -> None:
        self.state = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}


def _final_weights(make_cfg, monkeypatch, *overrides):
    capture = _FinalWeights()
    original_init = pl.Trainer.__init__

    def init_with_capture(self, *args, callbacks=None, **kwargs):
        original_init(self, *args, callbacks=[*(callbacks or []), capture], **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", init_with_capture)
    record = runner.run(make_cfg(*overrides))
    monkeypatch.undo()
    assert record["status"] == "completed", record["error"]
    return capture.state, record


def test_landscape_probe_leaves_training_unchanged(make_cfg, tmp_path, monkeypatch):
    """Same seed, deterministic: the run with the probe ends with exactly the weights and BN running
    statistics of the run without it (SGD with momentum, two epochs, augmentation drawing random numbers)."""
    common = ["deterministic=true", "model.activation=relu", "data.augment=true", "data.batch_size=32",
              "trainer.limit_train_batches=5", "trainer.max_epochs=2", "test_after_fit=false"]
    plain, _ = _final_weights(make_cfg, monkeypatch, *common, f"paths.output_dir={tmp_path / 'a'}")
    probed, record = _final_weights(make_cfg, monkeypatch, *common, "probes=landscape", "probes.every_n_steps=2",
                                    f"paths.output_dir={tmp_path / 'b'}")
    assert record["probes"]["landscape"]["step"] == [0, 2, 4, 6, 8]
    assert set(plain) == set(probed)
    differing = [k for k in plain if not torch.equal(plain[k], probed[k])]
    assert not differing, f"the landscape probe changed {differing}"


def test_probes_in_the_record_of_a_real_run(make_cfg, tmp_path):
    record = runner.run(make_cfg("probes=all", "probes.every_n_steps=2", "trainer.limit_train_batches=5"))
    assert record["status"] == "completed", record["error"]
    layers, landscape = record["probes"]["layers"], record["probes"]["landscape"]
    assert layers["step"] == [0, 2, 4] and layers["activation"] == "act4"  # every 2nd step and the last
    assert len(layers["site_std"][0]) == len(layers["sites"]) == 4
    assert len(layers["grad_norm"][0]) == len(layers["layers"]) == 5
    assert landscape["etas"] == pytest.approx([0.1 * f for f in (0.25, 0.5, 1, 2, 4)])
    assert all(b > 0 for b in landscape["beta"])
    assert runner.run(make_cfg(output_dir=tmp_path / "off"))["probes"] is None  # off by default


def test_bad_probe_settings_are_one_line_errors(make_cfg):
    from bnres.config.checks import ConfigError

    with pytest.raises(ConfigError, match="probes.every_n_steps=0"):
        runner.run(make_cfg("probes=layers", "probes.every_n_steps=0"))
    with pytest.raises(ConfigError, match="eta_factors"):
        runner.run(make_cfg("probes=landscape", "probes.landscape.eta_factors=[-1]"))


def test_probes_reach_wandb_as_scalars_and_histograms(make_cfg, tmp_path):
    import json
    import shutil
    import subprocess

    if shutil.which("wandb") is None:
        pytest.skip("no wandb command")
    record = runner.run(make_cfg("logger=wandb", "probes=layers", "probes.every_n_steps=2",
                                 "probes.layers.histograms_every_n_steps=2", "trainer.limit_train_batches=3"))
    assert record["status"] == "completed", record["error"]
    run_dir = next((tmp_path / "run" / "wandb").glob("offline-run-*"))
    out = subprocess.run(["wandb", "leet", "inspect", "--summary", "--json", str(run_dir)], capture_output=True, text=True, timeout=120)
    summary = json.loads(out.stdout)
    summary = summary.get("summary", summary)
    assert summary["probes/site_std/bn1"] == pytest.approx(record["probes"]["layers"]["site_std"][-1][0])
    assert summary["probes/hist/act4_input"]["_type"] == "histogram"
    assert summary["probes/hist/grad/conv1"]["_type"] == "histogram"


@pytest.mark.slow
def test_probes_survive_a_preemption_and_resume(tmp_path):
    """A probed run stopped by SIGTERM part-way through an epoch and rerun ends with the probes of an
    uninterrupted run: the rows so far travel in the checkpoint, the rest are measured after the resume."""
    import json
    import os
    import signal

    from conftest import ROOT, run_script

    common = ["trainer.enable_progress_bar=false", "logger=csv", "data.batch_size=256", "deterministic=true",
              "trainer.max_epochs=3", "probes=all", "probes.every_n_steps=10"]
    helpers = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "helpers"), os.environ.get("PYTHONPATH", "")])}
    reference = run_script([*common, f"hydra.run.dir={tmp_path / 'ref'}"], cwd=ROOT)
    assert reference.returncode == 0, reference.stderr[-2000:]
    signal_at = ["+callbacks.test_signal._target_=signal_at_step.SignalAtStep", "+callbacks.test_signal.step=22",
                 "+callbacks.test_signal.signum=SIGTERM", f"hydra.run.dir={tmp_path / 'stopped'}"]
    stopped = run_script([*common, *signal_at], cwd=ROOT, env=helpers)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    resumed = run_script([*common, *signal_at], cwd=ROOT, env=helpers)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = json.loads((tmp_path / "ref" / "result.json").read_text())["probes"]
    record = json.loads((tmp_path / "stopped" / "result.json").read_text())
    assert record["resumed_from"] and record["probes"]["layers"]["step"] == expected["layers"]["step"]
    assert record["probes"] == expected


@pytest.mark.slow
def test_landscape_probe_leaves_ddp_training_unchanged(tmp_path):
    """2 CPU ranks (gloo): the probe's own backward passes (torch.autograd.grad on the unwrapped network)
    trigger no gradient all-reduce, and the run ends with the metrics of the run without it."""
    import json

    from conftest import ROOT, run_script

    common = ["trainer=ddp", "trainer.devices=2", "deterministic=true", "data.batch_size=32", "trainer.max_epochs=1",
              "trainer.limit_train_batches=8", "trainer.limit_val_batches=2", "trainer.limit_test_batches=1",
              "logger=csv", "callbacks=none", "trainer.enable_progress_bar=false", "probes.every_n_steps=3"]
    finals = {}
    for probes in ("none", "landscape"):
        result = run_script([*common, f"probes={probes}", f"hydra.run.dir={tmp_path / probes}"], cwd=ROOT)
        assert result.returncode == 0, result.stderr[-2000:]
        record = json.loads((tmp_path / probes / "result.json").read_text())
        finals[probes] = record["final"]
    assert record["probes"]["landscape"]["step"] == [0, 3, 6]
    assert finals["landscape"] == finals["none"]

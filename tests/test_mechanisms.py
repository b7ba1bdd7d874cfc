"""The mechanism analysis (bnres.analysis.mechanisms) on tiny real runs with probes: every figure is drawn
and its numbers are in claims.md."""

from __future__ import annotations

import json

import pytest
from hydra.core.global_hydra import GlobalHydra

from bnres.runs import runner
from bnres.analysis import analyze, mechanisms
from bnres.runs.runner import compose_config

from conftest import FAST


@pytest.fixture(scope="module")
def probed_sweeps(tmp_path_factory):
    """LeNet with and without BN (2 seeds, probes=all) and plain/residual CIFAR nets at depths 8 and 14
    (probes=layers): 8 real runs of a few steps on the MNIST digits."""
    root = tmp_path_factory.mktemp("probed")
    jobs = {"bn_lr": [], "depth": []}
    for bn in ("true", "false"):
        for seed in (0, 1):
            jobs["bn_lr"].append(["model.activation=relu", f"bn={bn}", f"seed={seed}", "lr=0.1", "probes=all",
                                  "probes.every_n_steps=2", "trainer.limit_train_batches=6"])
    for model in ("plain_cifar", "resnet_cifar"):
        for depth in (8, 14):
            jobs["depth"].append([f"model={model}", f"depth={depth}", "data.image_size=32", "data.batch_size=16", "lr=0.05",
                                  "probes=layers", "probes.every_n_steps=2", "trainer.limit_train_batches=3"])
    for sweep, overrides in jobs.items():
        for i, job in enumerate(overrides):
            record = runner.run(compose_config([*FAST, *job], root / sweep / str(i)))
            assert record["status"] == "completed", record["error"]
    GlobalHydra.instance().clear()
    return root


def test_every_mechanism_figure_is_drawn_and_its_numbers_are_in_claims_md(probed_sweeps, tmp_path):
    result = analyze([probed_sweeps / "bn_lr", probed_sweeps / "depth"], out_dir=tmp_path, verbose=False)
    for name in mechanisms.MECHANISM_FIGURES:
        assert result.files[name].stat().st_size > 10_000, name
    claims = result.files["claims_md"].read_text()
    assert "## Mechanisms" in claims
    numbers = mechanisms.mechanism_numbers([json.loads(p.read_text()) | {"_sweep": p.parts[-3], "_job": p.parts[-2]}
                                            for p in probed_sweeps.glob("*/*/result.json")])
    # the landscape numbers of each setting, as written, with the seed spread
    rows = numbers["landscape"]["rows"]
    assert {(r["lr"], r["bn"]) for r in rows} == {(0.1, True), (0.1, False)}
    for row in rows:
        assert len(row["beta"]) == 2  # two seeds
        assert mechanisms._spread(row["beta"]) in claims
        assert mechanisms._spread(row["loss_range"]) in claims
    for row in numbers["activation"]["rows"]:
        assert mechanisms._spread(row["median_shift"]) in claims
    depth_rows = {(r["family"], r["depth"]): r for r in numbers["depth"]["rows"]}
    assert set(depth_rows) == {("plain", 8), ("plain", 14), ("residual", 8), ("residual", 14)}
    for row in depth_rows.values():
        assert mechanisms._spread(row["first_layer_grad_init"]) in claims
        assert mechanisms._spread(row["mean_response_std"]) in claims


def test_records_without_probes_give_no_mechanism_figures(tmp_path):
    from pathlib import Path

    example = Path(__file__).parent / "data" / "example_sweep"
    result = analyze(example, out_dir=tmp_path, verbose=False)
    assert not any(name in result.files for name in mechanisms.MECHANISM_FIGURES)
    assert "No run of these sweeps recorded probes" in result.files["claims_md"].read_text()

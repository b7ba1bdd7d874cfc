"""Shared fixtures: configs are composed through Hydra exactly as the entry point composes them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from bnres.runs.runner import compose_config

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"

# a few steps on real data, no W&B unless a test asks for it
FAST = [
    "logger=none",
    "callbacks=none",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
]

# the same, as command-line overrides for scripts/train.py (subprocess tests)
TINY = [
    "data.batch_size=32",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.max_epochs=1",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture
def make_cfg(tmp_path):
    def _make(*overrides: str, fast: bool = True, output_dir: Path | None = None) -> DictConfig:
        return compose_config([*(FAST if fast else []), *overrides], output_dir or tmp_path / "run")

    yield _make
    GlobalHydra.instance().clear()


def run_script(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None, script: Path = TRAIN_SCRIPT) -> subprocess.CompletedProcess:
    """Run an entry-point script as a user would, offline."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0", **(env or {})}
    full_env.pop("WANDB_API_KEY", None)
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)

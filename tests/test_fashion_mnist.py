"""data=fashion_mnist: found offline (Debian package folder, paths.data_dir / BNRES_DATA_DIR), checked by
SHA-256, a one-line error naming apt-get when missing, and real training steps through scripts/train.py."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from bnres.data import fashion_mnist
from bnres.data.fashion_mnist import DEBIAN_DIR, FashionMNISTDataModule, find_folder
from bnres.data.verify import FASHION_MNIST_SHA256
from bnres.errors import ConfigError
from bnres.runs import runner
from conftest import ROOT, TINY, run_script

HAVE_DEBIAN_FILES = all((DEBIAN_DIR / name).is_file() for name in FASHION_MNIST_SHA256)
needs_debian_files = pytest.mark.skipif(
    not HAVE_DEBIAN_FILES, reason=f"Fashion-MNIST is not in {DEBIAN_DIR} (apt-get install dataset-fashion-mnist; .ci/run does)"
)


@pytest.fixture
def no_debian_files(monkeypatch, tmp_path):
    """Look for the Debian package's files in an empty folder, as on a machine without the package."""
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian-package")


@needs_debian_files
def test_found_in_the_debian_package_folder_without_download(tmp_path):
    data = FashionMNISTDataModule(data_dir=str(tmp_path / "empty"), val_size=1000, train_subset=500)
    assert find_folder(data.data_dir) == DEBIAN_DIR
    data.verify()
    data.setup()
    assert data.describe() == {"train": 500, "val": 1000, "test": 10000}
    x, y = data.splits["train"]
    assert x.shape == (500, 1, 28, 28) and int(y.min()) == 0 and int(y.max()) == 9


@needs_debian_files
def test_found_in_the_folder_bnres_data_dir_names(make_cfg, tmp_path, monkeypatch, no_debian_files):
    copies = tmp_path / "copies"
    copies.mkdir()
    for name in FASHION_MNIST_SHA256:
        shutil.copy(DEBIAN_DIR / name, copies / name)
    monkeypatch.setenv("BNRES_DATA_DIR", str(copies))
    cfg = make_cfg("data=fashion_mnist")
    assert cfg.data.data_dir == str(copies)
    assert find_folder(cfg.data.data_dir) == copies


def _fake_files(folder, content: bytes = b"not fashion-mnist") -> None:
    folder.mkdir(parents=True)
    for name in FASHION_MNIST_SHA256:
        with gzip.open(folder / name, "wb") as f:
            f.write(content)


def test_sha256_mismatch_is_refused_in_one_line(make_cfg, tmp_path, no_debian_files):
    _fake_files(tmp_path / "data")
    cfg = make_cfg("data=fashion_mnist", f"paths.data_dir={tmp_path / 'data'}", output_dir=tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        runner.run(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert "does not match its known SHA-256" in message and "dataset-fashion-mnist" in message
    assert not (tmp_path / "run" / "result.json").exists()


def test_missing_files_say_apt_get_in_one_line(make_cfg, tmp_path, no_debian_files):
    cfg = make_cfg("data=fashion_mnist", f"paths.data_dir={tmp_path / 'empty'}", output_dir=tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        runner.run(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert "fashion_mnist is not in" in message
    assert "apt-get install dataset-fashion-mnist" in message and "data.download=true" in message
    assert not (tmp_path / "run" / "result.json").exists()


def test_train_subset_larger_than_the_training_split_is_refused():
    with pytest.raises(ValueError, match="data.train_subset=60000"):
        FashionMNISTDataModule(val_size=5000, train_subset=60000)


@needs_debian_files
def test_a_few_real_training_steps_through_scripts_train(tmp_path):
    run_dir = tmp_path / "run"
    result = run_script(
        ["data=fashion_mnist", "data.train_subset=256", "logger=none", *TINY, f"paths.data_dir={tmp_path / 'empty'}", f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "completed"
    assert record["config"]["data"]["name"] == "fashion_mnist"

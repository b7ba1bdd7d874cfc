"""Train one network, or sweep many: `python scripts/train.py [-m] key=value ...` (see README)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bnres import runner

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> str:
    return runner.hydra_job(cfg)


if __name__ == "__main__":
    main()
    sys.exit(runner.exit_code())

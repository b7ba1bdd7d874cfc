"""Train one network, or sweep many: `python scripts/train.py [-m] key=value ...` (see README)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bnres import distributed, runner

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> str:
    # one job (all of its DDP ranks in its folder), leaving no DDP state behind for the next job
    return distributed.train_task(cfg)


if __name__ == "__main__":
    main()
    sys.exit(runner.exit_code())

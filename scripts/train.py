"""Train one network, or sweep many: `python scripts/train.py [-m] key=value ...` (see README)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bnres.runs import preflight
from bnres.runs import task

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> str:
    return task.train_task(cfg)


if __name__ == "__main__":
    preflight.check_command_line(sys.argv[1:], CONFIG_DIR)  # bad input: one line, exit 2, before any work
    main()
    sys.exit(task.exit_code())

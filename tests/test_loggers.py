"""W&B runs of a sweep's process: each keeps its full requirements.txt, listed once per process."""

from __future__ import annotations

import wandb.util

from bnres.runs import runner


def test_every_wandb_run_of_a_process_gets_the_same_requirements(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(wandb.util, "working_set", wandb.util.working_set)  # undone after the test
    files = []
    for job in ("0", "1"):
        record = runner.run(make_cfg("logger=wandb", output_dir=tmp_path / job))
        assert record["status"] == "completed", record["error"]
        (run_dir,) = (tmp_path / job / "wandb").glob("offline-run-*")
        files.append((run_dir / "files" / "requirements.txt").read_text())
    assert files[0] == files[1]
    names = {line.split("==")[0].lower() for line in files[0].splitlines()}
    assert {"torch", "wandb", "bnres"} <= names
    assert getattr(wandb.util.working_set, "listed_once", False)  # the second run did not read metadata again

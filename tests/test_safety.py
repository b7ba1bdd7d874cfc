"""The harness touches only what it wrote, unpickles only what it checked, and refuses bad input in one line
(docs/safety.md). Through the real entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from bnres.runs.record import read_record
from conftest import ROOT, TINY, run_script


def _error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


# --- 1. a run folder holds the harness's files only ------------------------------------------------
def test_a_folder_with_other_files_is_refused_untouched(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "my_notes.txt").write_text("mine")
    (folder / ".git").mkdir()
    for fresh in ([], ["fresh=true"]):
        result = run_script([*TINY, "logger=none", f"hydra.run.dir={folder}", *fresh], cwd=ROOT, timeout=120)
        assert result.returncode == 2
        line = _error_line(result)
        assert f"hydra.run.dir={folder} is not empty and not a bnres run or sweep folder" in line and "'.git'" in line
        assert sorted(p.name for p in folder.iterdir()) == [".git", "my_notes.txt"]  # nothing written, nothing moved


def test_a_sweep_into_a_foreign_folder_is_refused(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "main.py").write_text("print()")
    result = run_script(["-m", *TINY, "logger=none", f"hydra.sweep.dir={folder}", "seed=0,1"], cwd=ROOT, timeout=120)
    assert result.returncode == 2 and f"hydra.sweep.dir={folder} is not empty" in _error_line(result)
    assert sorted(p.name for p in folder.iterdir()) == ["main.py"]


def test_fresh_sets_aside_only_what_the_harness_wrote(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, "logger=csv", "callbacks=default", f"hydra.run.dir={run_dir}"]
    assert run_script(args, cwd=ROOT, timeout=180).returncode == 0
    (run_dir / "notes.md").write_text("what I saw")  # a user's file in a run folder of the harness
    again = run_script([*args, "lr=0.05", "fresh=true"], cwd=ROOT, timeout=180)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (run_dir / "notes.md").read_text() == "what I saw"
    (kept,) = list((run_dir / ".replaced").iterdir())
    assert {"result.json", "checkpoints", "csv", ".hydra", "train.log"} <= {p.name for p in kept.iterdir()}
    assert "notes.md" not in {p.name for p in kept.iterdir()}
    assert read_record(run_dir)["status"] == "completed"


# --- 2. checkpoints load weights-only ---------------------------------------------------------------
_PLANT = """
import os, sys, torch
class Payload:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
torch.save({"state_dict": {}, "bnres_config_fingerprint": "0", "payload": Payload()}, sys.argv[1])
"""


def test_a_checkpoint_that_needs_code_is_refused_and_none_of_it_runs(tmp_path):
    planted, marker = tmp_path / "planted.ckpt", tmp_path / "marker"
    subprocess.run([sys.executable, "-c", _PLANT, str(planted), str(marker)], check=True)
    assert not marker.exists()
    run_dir = tmp_path / "run"
    result = run_script([*TINY, "logger=none", f"hydra.run.dir={run_dir}", f"ckpt_path={planted}"], cwd=ROOT, timeout=120)
    assert result.returncode == 2
    line = _error_line(result)
    assert f"ckpt_path={planted} is not a bnres checkpoint" in line and "refused unread" in line
    assert not marker.exists() and read_record(run_dir) is None

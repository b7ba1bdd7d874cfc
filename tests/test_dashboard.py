"""A whole sweep in W&B's terminal dashboard (scripts/dashboard.py on `wandb leet`), checked with W&B's own reader.

The fast test lays out a hand-made sweep with two analysis runs; the slow one the user's 2x2 sweep
(4 real offline runs) with its analysis run, and reads the dashboard the way leet itself does:
`wandb leet inspect` on every entry and the `wandb leet` terminal UI in a pseudo-terminal.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bnres.analysis import analyze
from bnres.analysis.wandb_run import log_analysis_run
from bnres.tracking.dashboard import layout, safe_name
from bnres.tracking.wandb_groups import ANALYSIS_JOB_TYPE, sweep_group
from conftest import ROOT, TINY, run_script

sys.path.insert(0, str(Path(__file__).parent / "data"))
from result_factory import trained, write_sweep  # noqa: E402

WANDB = shutil.which("wandb")
DASHBOARD = ROOT / "scripts" / "dashboard.py"
ANALYZE = ROOT / "scripts" / "analyze.py"
pytestmark = pytest.mark.skipif(WANDB is None, reason="the wandb command is not on PATH")


def snapshot(folder: Path, skip: Path) -> dict[str, tuple]:
    """Every path below ``folder`` (``skip`` left out) with its kind, size, mtime and content hash."""
    state = {}
    for path in sorted(folder.rglob("*")):
        if path == skip or skip in path.parents:
            continue
        if path.is_symlink():
            state[str(path)] = ("link", os.readlink(path))
        elif path.is_file():
            stat = path.stat()
            state[str(path)] = ("file", stat.st_size, stat.st_mtime_ns, hashlib.sha1(path.read_bytes()).hexdigest())
        else:
            state[str(path)] = ("dir",)
    return state


def leet_summary(path: Path) -> dict:
    done = subprocess.run([WANDB, "leet", "inspect", "--summary", "--json", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def leet_screen(wandb_dir: Path, seconds: float = 8.0, columns: int = 400) -> str:
    """What `wandb leet WANDB_DIR` draws in a terminal ``columns`` wide, as plain text."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
    proc = subprocess.Popen([WANDB, "leet", str(wandb_dir)], stdin=slave, stdout=slave, stderr=slave,
                            env={**os.environ, "TERM": "xterm-256color"}, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.time() + seconds
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    out += os.read(master, 1 << 16)
                except OSError:
                    break
        os.write(master, b"q")
    finally:
        proc.terminate()
        proc.wait(10)
        os.close(master)
    text = re.sub(rb"\x1b\[[0-9;?<>=]*[A-Za-z~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b[=>]", b"", out)
    return text.decode("utf-8", "replace")


def test_layout_lists_analysis_runs_under_their_names(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", [trained(lr=0.1, seed=s) for s in (0, 1)])
    result = analyze(sweep, verbose=False)
    runs = [log_analysis_run(result), log_analysis_run(result)]  # two analyses: two runs, the first one kept
    import wandb

    wandb.teardown()  # W&B's service has written its last log lines
    before = snapshot(sweep, skip=sweep / "dashboard")
    out_dir, entries = layout(sweep)
    assert out_dir == sweep / "dashboard" and len(entries) == 2
    assert {e.run_id for e in entries} == {r.run_id for r in runs}
    for entry in entries:
        assert entry.job_type == ANALYSIS_JOB_TYPE
        # two analyses in one second share a name: the second is told apart by its run id
        assert entry.key.endswith((safe_name(entry.name), safe_name(f"{entry.name} ({entry.run_id})")))
        read = leet_summary(out_dir / entry.key)  # W&B's reader, through the dashboard's entry
        assert read["name"] == entry.name and read["run_id"] == entry.run_id
    assert snapshot(sweep, skip=sweep / "dashboard") == before  # nothing in the sweep moved or changed
    again, entries_again = layout(sweep)  # rebuilding gives the same entries
    assert sorted(e.key for e in entries_again) == sorted(e.key for e in entries)
    foreign = tmp_path / "not_a_dashboard"
    (foreign / "x").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        layout(sweep, foreign)


def test_dashboard_script_errors(tmp_path):
    empty = write_sweep(tmp_path / "sweep", [trained()])
    done = run_script([str(empty), "--no-open"], cwd=tmp_path, script=DASHBOARD, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "no W&B runs" in done.stderr


@pytest.fixture(scope="module")
def user_sweep(tmp_path_factory) -> Path:
    """The user's 2x2 sweep, -m model=resnet18,plain18 bn=true,false, 4 tiny real runs with offline W&B, analysed."""
    root = tmp_path_factory.mktemp("user")
    sweep = root / "multirun" / "train" / "2x2"
    done = run_script(["-m", "model=resnet18,plain18", "bn=true,false", *TINY, "logger=wandb", f"hydra.sweep.dir={sweep}"], cwd=root, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    analysed = run_script([str(sweep)], cwd=root, script=ANALYZE, timeout=300, env={"WANDB_DATA_DIR": str(root / "wandb_data")})
    assert analysed.returncode == 0, analysed.stderr[-3000:]
    (sweep / "analyze.out").write_text(analysed.stdout)
    return sweep


@pytest.mark.slow
def test_user_sweep_factor_summary_and_analysis_group(user_sweep):
    printed = (user_sweep / "analyze.out").read_text()
    assert "factors: shortcut x bn" in printed and "shortcut \\ bn" in printed
    assert printed.count("does not apply to these runs") == 2  # one LR, one depth: neither claim is tested
    claims = (user_sweep / "analysis" / "claims.md").read_text()
    assert "**final val acc** (shortcut x bn" in claims and "**final train loss** (shortcut x bn" in claims
    [analysis_run] = (user_sweep / "analysis" / "wandb").glob("offline-run-*")
    values = leet_summary(analysis_run)["summary"]
    assert values["factors/2x2/factors"] == "shortcut x bn" and "factors/2x2/bn=true/final_val_acc_mean" in values
    assert values["applies/claim1_bn_lr"] is False


@pytest.mark.slow
def test_dashboard_of_the_user_sweep(user_sweep):
    before = snapshot(user_sweep, skip=user_sweep / "dashboard")
    done = run_script([str(user_sweep), "--no-open"], cwd=user_sweep, script=DASHBOARD, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "5 W&B runs" in done.stdout and f"wandb leet {user_sweep / 'dashboard'}" in done.stdout
    out_dir = user_sweep / "dashboard"
    entries = sorted(p for p in out_dir.iterdir() if p.name.startswith("run-"))
    assert len(entries) == 5  # 4 jobs + the analysis run

    # each entry, read by W&B, is the run it names
    names = {}
    for entry in entries:
        read = leet_summary(entry)
        names[entry.name] = read["name"]
    job_names = {}
    for job in range(4):
        [run_dir] = (user_sweep / str(job) / "wandb").glob("offline-run-*")
        job_names[leet_summary(run_dir)["name"]] = run_dir
    assert sorted(names.values()) == sorted([*job_names, next(n for n in names.values() if n.startswith("analysis "))])
    shared = {"data.batch_size=32", "trainer.enable_progress_bar=False"}
    for key, name in names.items():
        label = key[len("run-20261201_000000-"):]
        if name.startswith("analysis "):
            assert label == safe_name(name)
        else:  # the run name less what every run shares: the overrides that tell the four apart
            assert label.split(",") == [t for t in name.split(",") if t not in shared]
            assert re.fullmatch(r"model=(resnet18|plain18),bn=(True|False)", label), label

    # leet's own workspace lists all five under those names
    screen = leet_screen(out_dir)
    for key in names:
        assert key in screen, (key, screen[-3000:])
    assert snapshot(user_sweep, skip=out_dir) == before  # the job folders: nothing moved or changed
    # every run of the sweep (and the analysis run) is in the sweep's own short group
    groups = set()
    for entry in entries:
        lines = subprocess.run([WANDB, "leet", "inspect", "--json", str(entry)], capture_output=True, text=True, timeout=60).stdout
        records = [json.loads(line) for line in lines.splitlines() if line.strip()]
        groups |= {r["run"]["run_group"] for r in records if r["type"] == "run"}
    assert groups == {sweep_group(user_sweep)} == {"train/2x2"}

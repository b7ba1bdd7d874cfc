"""DDP's other ranks inside Hydra jobs: each is started as a single run of *this job*, in its folder.

Lightning's own launcher starts ranks > 0 by re-running ``sys.argv`` (Lightning #11300,
lightning-hydra-template #393): inside a multirun that re-runs the *whole sweep* (``-m`` and all) in every
rank, and inside a joblib, submitit or Ray worker ``sys.argv`` is not even the training script.
:class:`HydraJobLauncher` starts every other rank of this job as a single run
(``python -c 'from bnres.runs.task import rank_main; rank_main()'``) with the job's own config source,
config name and overrides, and ``hydra.run.dir`` set to the job's folder: all ranks of a job share its
folder, and only rank 0 writes the record and the W&B run. :func:`prepare_trainer` puts it in place of
Lightning's; ``runner.run`` calls it for every trainer.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from bnres import _lightning
from bnres.distributed.sync_batchnorm import AllReduceSyncBatchNorm

log = logging.getLogger(__name__)

# set by our launcher in the environment of ranks > 0
CHILD_ENV = "BNRES_DDP_CHILD"
# Hydra overrides of the parent that a rank's single run replaces (launcher and sweeper choices stay: they
# may put keys in the job's config, e.g. hydra/launcher=packed's `packing`, and are unused in a single run)
_DROPPED_HYDRA_OVERRIDES = (
    "hydra.run.", "hydra.sweep.", "hydra.mode", "hydra.output_subdir", "hydra.job.name", "hydra.job.chdir",
    "hydra.job.num", "hydra.job.id",
)
# seconds a job waits for its other ranks to exit after rank 0 is done, before killing them
RANK_EXIT_TIMEOUT_S = 120.0
# seconds rank 0 may go on after another rank died before it is killed (a hang in a collective)
RANK_FAILURE_GRACE_S = 60.0

_active_launchers: list["HydraJobLauncher"] = []


def finish_launchers() -> None:
    """Wait for (or stop) the rank processes of every launcher this process started: the end of a job."""
    while _active_launchers:
        _active_launchers.pop().finish()


def _quote(value: str) -> str:
    """A Hydra override value that is taken literally (paths may hold '=', ',' or spaces)."""
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace('"', '\\"') + '"'


def rank_command(local_rank: int) -> tuple[list[str], str]:
    """The command (and working directory) that runs ``local_rank`` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    args: list[str] = []
    for source in hc.runtime.config_sources:
        if source.provider == "main":
            path = source.path if source.schema == "file" else f"{source.schema}://{source.path}"
            args += ["--config-path", path]
        elif source.provider == "command-line" and source.schema == "file":
            args += ["--config-dir", source.path]
    args += ["--config-name", str(hc.job.config_name)]
    overrides = list(hc.overrides.task)
    overrides += [o for o in hc.overrides.hydra if not o.lstrip("+~").startswith(_DROPPED_HYDRA_OVERRIDES)]
    overrides += [
        f"hydra.run.dir={_quote(str(hc.runtime.output_dir))}",
        "hydra.output_subdir=null",  # rank 0 already wrote the job's .hydra/
        f"hydra.job.name={hc.job.name}_rank{local_rank}",  # each rank logs to <job dir>/<name>_rank<k>.log
        f"hydra.job.chdir={str(bool(hc.job.chdir)).lower()}",
    ]
    code = "from bnres.runs.task import rank_main; rank_main()"
    return [sys.executable, "-c", code, *args, *overrides], str(hc.runtime.cwd)


def prepare_trainer(trainer: Any) -> None:
    """Adapt a freshly built trainer to Hydra jobs and CPU processes (``runner.run`` calls it):

    * inside a Hydra job, DDP's other ranks are started as runs of *this job* (module docstring);
    * ``sync_batchnorm`` on CPU (gloo): torch's ``SyncBatchNorm`` refuses CPU modules, so the BN layers
      are synchronised by :class:`AllReduceSyncBatchNorm` instead (same statistics, same gradients)."""
    from hydra.core.hydra_config import HydraConfig
    from pytorch_lightning.plugins.layer_sync import TorchSyncBatchNorm

    strategy = trainer.strategy
    launcher = _lightning.strategy_launcher(strategy)
    if type(launcher) is _lightning.SubprocessScriptLauncher and HydraConfig.initialized():
        _lightning.set_strategy_launcher(strategy, HydraJobLauncher(launcher.cluster_environment, launcher.num_processes, launcher.num_nodes))
    if type(_lightning.layer_sync(strategy)) is TorchSyncBatchNorm and strategy.root_device.type == "cpu":
        _lightning.set_layer_sync(strategy, AllReduceSyncBatchNorm())


class _RankObserver(threading.Thread):
    """Watches a job's other ranks. One that dies takes the rest down: its peers are killed at once
    (rank 0 then fails in its next collective and records the job ``failed``), and rank 0 itself is
    killed if it is still in the job ``RANK_FAILURE_GRACE_S`` later (a hang), as Lightning does."""

    def __init__(self, procs: list[subprocess.Popen]) -> None:
        super().__init__(daemon=True, name="bnres-rank-observer")
        self.procs = procs
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            codes = [p.poll() for p in self.procs]
            if all(c == 0 for c in codes):
                return
            failed = [(p.pid, c) for p, c in zip(self.procs, codes) if c not in (None, 0)]
            if failed:
                log.error("DDP rank process(es) %s died: stopping the job's other ranks", failed)
                for p in self.procs:
                    if p.poll() is None:
                        p.kill()
                if not self.done.wait(RANK_FAILURE_GRACE_S):
                    log.error("rank 0 still running %.0f s after another rank died: killing it", RANK_FAILURE_GRACE_S)
                    os.kill(os.getpid(), signal.SIGKILL)
                return


class HydraJobLauncher(_lightning.SubprocessScriptLauncher):
    """Lightning's subprocess launcher, with :func:`rank_command` as the command of ranks > 0."""

    observer: _RankObserver | None = None

    def launch(self, function: Callable, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            self.observer = _RankObserver(self.procs)
            self.observer.start()
            _active_launchers.append(self)
        _lightning.set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        self.procs = []
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        for local_rank in range(1, self.num_processes):
            child_env = {**os.environ, "LOCAL_RANK": str(local_rank), CHILD_ENV: "1"}
            if os.environ.get("PL_GLOBAL_SEED") is None:
                child_env.pop("PL_GLOBAL_SEED", None)
            command, cwd = rank_command(local_rank)
            log.info("starting DDP rank %d of this job (MASTER_PORT=%s): %s", local_rank, os.environ["MASTER_PORT"], " ".join(command[3:]))
            self.procs.append(subprocess.Popen(command, env=child_env, cwd=cwd))

    def finish(self, timeout: float = RANK_EXIT_TIMEOUT_S) -> None:
        """Stop watching the other ranks; wait for them to exit (killed after ``timeout``)."""
        if self.observer is not None:
            self.observer.done.set()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("DDP rank process %d did not exit within %.0f s: killed", proc.pid, timeout)
                proc.kill()
                proc.wait()

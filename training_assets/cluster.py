"""Who this process is in a cluster, and where it may write.

Two kinds of cluster, both configured by environment variables that their engines read:

- Multi-worker training (TensorFlow's MultiWorkerMirroredStrategy) reads TF_CONFIG:
  {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}.
  Every worker runs the same program in lock-step; the chief ("chief" task, or worker 0 when the
  cluster has no "chief" job) writes the real models, plots and tables. The other workers must
  still save (saving reads distributed variables, which is a collective step), so they save to a
  scratch directory of their own under $TMPDIR. BackupAndRestore gets one directory
  per worker: one shared directory fails on the HDF5 file lock, and a restarted worker must find
  its own backup.
- Distributed tuning (keras-tuner's chief/worker mode) reads KERASTUNER_TUNER_ID ("chief" in it
  for the oracle), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT. The chief serves the oracle
  and ends with the best hyperparameters; workers run trials and stop when the oracle says so;
  they too keep their files in scratch.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Iterator, Literal, Mapping

from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import ConfigError

TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')


@dataclass(frozen=True)
class ClusterRole:
    """This process's place in a TF_CONFIG cluster (one-process role when TF_CONFIG is unset)."""

    task_type: str = "worker"
    task_index: int = 0
    num_workers: int = 1  # chief + workers: the processes that train in lock-step
    has_chief_job: bool = False

    @property
    def is_chief(self) -> bool:
        # TensorFlow's rule (multi_worker_util.is_chief): the "chief" task, else worker 0.
        if self.has_chief_job:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def is_multi_worker(self) -> bool:
        return self.num_workers > 1

    @property
    def name(self) -> str:
        return f"{self.task_type}-{self.task_index}"


def cluster_role(environ: Mapping[str, str] | None = None) -> ClusterRole:
    """Parse TF_CONFIG; a malformed one is a ConfigError naming the problem, before TF starts."""
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG", "").strip()
    if not raw:
        return ClusterRole()
    try:
        spec = json.loads(raw)
        cluster, task = spec["cluster"], spec.get("task", {})
        jobs = {job: list(addresses) for job, addresses in cluster.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"environment variable TF_CONFIG={raw[:120]!r} is not a JSON object with "
                          f"'cluster' and 'task' entries; example: {TF_CONFIG_EXAMPLE}") from None
    task_type, task_index = task.get("type"), task.get("index", 0)
    if task_type not in jobs or not isinstance(task_index, int) or not (
            0 <= task_index < len(jobs[task_type])):
        raise ConfigError(f"TF_CONFIG task {task!r} is not in its cluster {jobs!r}: set "
                          "task.type to one of the cluster's jobs and task.index below its size")
    training_jobs = ("chief", "worker")
    if task_type not in training_jobs:
        raise ConfigError(f"TF_CONFIG task type {task_type!r}: this runner starts only 'chief' or "
                          "'worker' tasks (MultiWorkerMirroredStrategy has no parameter servers)")
    return ClusterRole(task_type=task_type, task_index=task_index,
                       num_workers=sum(len(jobs.get(job, [])) for job in training_jobs),
                       has_chief_job=bool(jobs.get("chief")))


def is_chief(environ: Mapping[str, str] | None = None) -> bool:
    """True where the experiment's results are written: a single process, the chief of a
    TF_CONFIG cluster, or keras-tuner's chief; False for their workers."""
    return cluster_role(environ).is_chief and not tuning_role(environ).is_worker


def worker_scratch_dir(environ: Mapping[str, str] | None = None) -> str:
    """This worker's own directory under $TMPDIR, the same after a restart (so a restarted worker
    finds its tuner state), and safe to delete once the run is over."""
    role, tuning = cluster_role(environ), tuning_role(environ)
    name = f"tuner-{tuning.tuner_id}" if tuning.is_worker else role.name
    path = os.path.join(tempfile.gettempdir(), "text_synthesis_workers", name)
    os.makedirs(path, exist_ok=True)
    return path


def writable_path(path: str | os.PathLike, environ: Mapping[str, str] | None = None) -> str:
    """`path` for the chief; the same path inside this worker's scratch directory otherwise.

    Use it for files every process writes (checkpoints, logs, tokenizers, plots): all workers run
    the same code, and only the chief's files are the experiment's results.
    """
    path = os.fspath(path)
    if is_chief(environ):
        return path
    scratch = worker_scratch_dir(environ)
    absolute = os.path.abspath(path)
    if absolute.startswith(scratch + os.sep):
        return path  # already redirected
    # /abs/models/gru.keras -> <scratch>/abs/models/gru.keras: distinct paths stay distinct
    return os.path.join(scratch, absolute.lstrip(os.sep))


def config_for_this_process(config: ExperimentConfig,
                            environ: Mapping[str, str] | None = None) -> ExperimentConfig:
    """The experiment's config with every output path moved to scratch on a non-chief worker.

    The runner calls it first; the stages then write where the config says and never clash
    (tokenizer, checkpoints, tuning trials, plots, downloads). The chief's config is unchanged,
    and so is a config it has moved already.
    """
    if is_chief(environ):
        return config
    moved = {key: writable_path(getattr(config, key), environ) for key in OUTPUT_PATH_KEYS}
    return config.model_copy(update=moved)


OUTPUT_PATH_KEYS = ("tokenizer_path", "models_dir", "plots_dir", "tuning_dir", "download_dir",
                    "shards_dir")


def backup_dir(base: str | os.PathLike, environ: Mapping[str, str] | None = None) -> str:
    """A BackupAndRestore directory of this worker's own: `base` alone, `base/<task>-<i>` in a cluster.

    One directory shared by the workers of a machine fails on the HDF5 file lock; one per worker
    lets a killed worker's restart resume from its own last epoch.
    """
    role = cluster_role(environ)
    base = os.fspath(base)
    return os.path.join(base, role.name) if role.is_multi_worker else base


# --- distributed tuning (keras-tuner chief / workers) ---------------------------------------

TUNER_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


@dataclass(frozen=True)
class TuningRole:
    """This process's part in keras-tuner's distributed search."""

    kind: Literal["standalone", "chief", "worker"] = "standalone"
    tuner_id: str | None = None
    oracle_ip: str | None = None
    oracle_port: int | None = None

    @property
    def is_chief(self) -> bool:
        return self.kind == "chief"

    @property
    def is_worker(self) -> bool:
        return self.kind == "worker"

    @property
    def is_distributed(self) -> bool:
        return self.kind != "standalone"


def tuning_role(environ: Mapping[str, str] | None = None) -> TuningRole:
    """Read keras-tuner's environment variables; an incomplete set is a ConfigError, not a hang.

    keras-tuner itself treats KERASTUNER_ORACLE_IP as the switch and a tuner id containing
    "chief" as the oracle; the same rules here, checked up front with a message that says the fix.
    """
    environ = os.environ if environ is None else environ
    present = {key: environ[key] for key in TUNER_ENV if environ.get(key)}
    if not present:
        return TuningRole()
    missing = [key for key in TUNER_ENV if key not in present]
    if missing:
        raise ConfigError(f"distributed tuning needs all of {list(TUNER_ENV)}; missing {missing}. "
                          "Example chief: KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=10.0.0.1 "
                          "KERASTUNER_ORACLE_PORT=8000; workers: KERASTUNER_TUNER_ID=tuner0 ...")
    port = present["KERASTUNER_ORACLE_PORT"]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"KERASTUNER_ORACLE_PORT={port!r} is not a TCP port: use e.g. 8000")
    tuner_id = present["KERASTUNER_TUNER_ID"]
    return TuningRole(kind="chief" if "chief" in tuner_id else "worker", tuner_id=tuner_id,
                      oracle_ip=present["KERASTUNER_ORACLE_IP"], oracle_port=int(port))


@contextlib.contextmanager
def family_oracle(family_index: int, environ: dict[str, str] | None = None) -> Iterator[TuningRole]:
    """Point keras-tuner at the oracle of the `family_index`-th tuned family: port + index.

    The chief serves one family's search at a time and keeps serving it until every worker has
    finished its last trial; a fast worker that moved on to the next family would otherwise ask
    that finished oracle for trials and stop at once. With one port per family a worker waits
    (gRPC wait_for_ready) until the chief serves its family. A no-op outside distributed tuning.
    """
    environ = os.environ if environ is None else environ
    role = tuning_role(environ)
    if not role.is_distributed or family_index == 0:
        yield role
        return
    port = role.oracle_port + family_index
    if port >= 65536:
        raise ConfigError(f"KERASTUNER_ORACLE_PORT={role.oracle_port} + family {family_index} "
                          "passes 65535: pick a lower base port")
    environ["KERASTUNER_ORACLE_PORT"] = str(port)
    try:
        yield TuningRole(role.kind, role.tuner_id, role.oracle_ip, port)
    finally:
        environ["KERASTUNER_ORACLE_PORT"] = str(role.oracle_port)

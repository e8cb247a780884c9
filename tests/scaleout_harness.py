"""Run cluster processes for the scale-out tests inside a private, loopback-only network namespace.

TensorFlow's gRPC server binds every address, so workers run in a network namespace of their own
(`unshare -rn`, loopback up): nothing listens outside it, and any port inside is free. Each
process is started with `nsenter` into that namespace, has a log file, a deadline, and is killed
(by its pid) when the test ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER_SCRIPT = Path(__file__).with_name("scaleout_worker.py")


class Namespace:
    """A network namespace kept alive by a sleeping process; start programs in it with `start`."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.processes: list[subprocess.Popen] = []
        try:
            self.holder = subprocess.Popen(
                ["unshare", "-rn", "sh", "-c", "ip link set lo up && echo ready && exec sleep 900"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            ready = self.holder.stdout.readline().strip() == "ready"
        except OSError as error:
            pytest.skip(f"cannot create a private network namespace (unshare -rn): {error}")
        if not ready:
            message = self.holder.stderr.read().strip()
            self.holder.kill()
            pytest.skip(f"cannot create a private network namespace (unshare -rn; needs root or "
                        f"unprivileged user namespaces): {message}")

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        """Run `python tests/scaleout_worker.py *args` (or `python -m ...` when args start with
        "-m") in the namespace; output in <workdir>/<name>.log."""
        log = open(self.workdir / f"{name}.log", "ab")
        program = args if args[0] == "-m" else [str(WORKER_SCRIPT), *args]
        command = ["nsenter", "-t", str(self.holder.pid), "-U", "-n", "--preserve-credentials",
                   sys.executable, *program]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**worker_environment(self.workdir), **env},
                                   cwd=self.workdir)
        log.close()
        process.name = name
        self.processes.append(process)
        return process

    def wait(self, processes: list[subprocess.Popen], timeout: float) -> None:
        """Wait for all to exit 0 within `timeout` seconds, else fail with the end of their logs."""
        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.kill(processes)
                pytest.fail(f"{process.name} did not finish in {timeout:.0f} s:\n{self.tail(process)}")
            if process.returncode != 0:
                self.kill(processes)
                pytest.fail(f"{process.name} exited with {process.returncode}:\n{self.tail(process)}")

    def wait_for(self, path: Path, processes: list[subprocess.Popen], timeout: float) -> None:
        """Wait until `path` exists while `processes` keep running; fail if one exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            for process in processes:
                if process.poll() is not None:
                    self.kill(processes)
                    pytest.fail(f"{process.name} exited with {process.returncode} before {path.name} "
                                f"appeared:\n{self.tail(process)}")
            if time.monotonic() > deadline:
                self.kill(processes)
                pytest.fail(f"{path.name} did not appear in {timeout:.0f} s:\n{self.tail(processes[-1])}")
            time.sleep(0.2)

    def kill(self, processes: list[subprocess.Popen]) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)

    def tail(self, process: subprocess.Popen, lines: int = 30) -> str:
        text = (self.workdir / f"{process.name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        self.kill(self.processes)
        self.holder.kill()
        self.holder.wait(timeout=30)


def worker_environment(workdir: Path) -> dict[str, str]:
    """One thread per op pool (the machine has 2 shared cores), logs quiet, temp files in workdir."""
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("TF_CONFIG", "KERASTUNER_"))}
    env.update(TMPDIR=str(tmp), TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="")
    return env


def tf_config(index: int, workers: int, base_port: int = 20000) -> dict[str, str]:
    cluster = {"worker": [f"127.0.0.1:{base_port + i}" for i in range(workers)]}
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}


def read_result(path: Path) -> dict:
    return json.loads(path.read_text())


WORDS = ("red", "fox", "jumps", "over", "lazy", "dog", "and", "runs")


def write_experiment(workdir: Path, **overrides) -> Path:
    """A tiny patterned corpus (a small model learns it in seconds) and a config for it, all in workdir."""
    # start word x stride x length: 160 distinct documents with a pattern to learn
    documents = [" ".join(WORDS[(start + k * stride) % len(WORDS)] for k in range(length))
                 for start in range(8) for stride in (1, 2, 3, 5, 7) for length in (4, 5, 6, 7)]
    (workdir / "corpus.txt").write_text("\n".join(documents) + "\n", encoding="utf-8")
    config = {
        "data_file": str(workdir / "corpus.txt"),
        "tokenizer": "char", "vocab_size": 64, "max_len": 16, "batch_size": 8,
        "tokenizer_path": str(workdir / "models" / "tokenizer.json"),
        "models_dir": str(workdir / "models"), "plots_dir": str(workdir / "plots"),
        "tuning_dir": str(workdir / "tuning"), "download_dir": str(workdir / "downloads"),
        "models_to_run": ["gru"], "tuner": "none", "strategy": "auto",
        "hyperparameters": {"gru": {"embedding_dim": 16, "units": 32, "num_layers": 1,
                                    "dropout": 0.2, "tie_embeddings": False}},
        "warmup_steps": 0, "final_training_epochs": 1, "early_stopping_patience": 5,
    }
    config.update(overrides)
    path = workdir / "experiment.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path

"""A Spark standalone cluster on loopback, from pyspark's own distribution: one master, two
workers of one core each, every one a JVM of its own.

pyspark's wheel ships ``bin/spark-class`` and the standalone ``Master``/``Worker`` classes but not
``sbin/start-*.sh``, so they are started as ``spark-class org.apache.spark.deploy.master.Master``
and ``... deploy.worker.Worker spark://HOST:PORT``, as those scripts would. Executors are JVMs the
workers start for an application, apart from the driver: what a job does per JVM, the Python
worker environment and the jars reaching executors are all tested for real.

The workers' environment is the caller's ``env``: executors inherit it (credentials from the AWS
default chain, ``PYSPARK_PYTHON``), as on a cluster whose nodes carry an instance role.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

_START_TIMEOUT_S = 90.0
_STOP_TIMEOUT_S = 15.0


@dataclass
class SparkCluster:
    """A running cluster: ``master`` is its URL (``spark://127.0.0.1:PORT``)."""

    master: str
    web_ui: str
    work_dirs: list[Path]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def finished_tasks(self) -> list[int]:
        """Tasks each worker's executors finished (their ``stderr``: Spark's executor log)."""
        counts = []
        for work in self.work_dirs:
            n = 0
            for log in work.glob("app-*/*/stderr"):
                n += log.read_text(errors="replace").count("Finished task")
            counts.append(n)
        return counts

    def applications(self) -> list[dict[str, object]]:
        """The master's record of finished applications (its JSON status page)."""
        with urllib.request.urlopen(f"{self.web_ui}/json/", timeout=10) as response:
            state = json.load(response)
        return list(state.get("completedapps", [])) + list(state.get("activeapps", []))


def _spark_class() -> Path:
    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive_workers(web_ui: str) -> int:
    try:
        with urllib.request.urlopen(f"{web_ui}/json/", timeout=5) as response:
            state = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return -1
    return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


def start_cluster(
    work: Path, env: dict[str, str], *, workers: int = 2, worker_memory: str = "1g"
) -> SparkCluster:
    """Start a master and ``workers`` workers (one core each) and wait until all registered.

    Raises:
        RuntimeError: the cluster did not come up in time (with the tail of its logs).
    """
    port, ui_port = _free_port(), _free_port()
    base_env = {**env, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
    cluster = SparkCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}", [])
    master_cmd = [str(_spark_class()), "org.apache.spark.deploy.master.Master", "--host",
                  "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)]  # fmt: skip
    _launch(cluster, master_cmd, base_env, work / "master.log")
    for i in range(workers):
        work_dir = work / f"worker{i}"
        work_dir.mkdir(parents=True, exist_ok=True)
        cluster.work_dirs.append(work_dir)
        worker_cmd = [str(_spark_class()), "org.apache.spark.deploy.worker.Worker",
                      "--host", "127.0.0.1", "--cores", "1", "--memory", worker_memory,
                      "--work-dir", str(work_dir), "--webui-port", str(_free_port()),
                      cluster.master]  # fmt: skip
        _launch(cluster, worker_cmd, base_env, work / f"worker{i}.log")
    deadline = time.monotonic() + _START_TIMEOUT_S
    while _alive_workers(cluster.web_ui) < workers:
        if time.monotonic() > deadline or any(p.poll() is not None for p in cluster.processes):
            stop_cluster(cluster)
            tails = "\n".join(log.read_text(errors="replace")[-2000:] for log in cluster.logs)
            raise RuntimeError(f"the Spark standalone cluster did not come up:\n{tails}")
        time.sleep(0.5)
    return cluster


def _launch(cluster: SparkCluster, cmd: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("wb") as out:
        process = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    cluster.processes.append(process)
    cluster.logs.append(log)


def stop_cluster(cluster: SparkCluster) -> None:
    """Stop the workers, then the master (each JVM's process group: executors go with them)."""
    for process in reversed(cluster.processes):
        if process.poll() is None:
            os.killpg(process.pid, 15)
    for process in cluster.processes:
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()

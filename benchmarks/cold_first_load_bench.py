"""Cold first load: ``cdf run`` against the plain reference job, each in a cold process on the
same raw files, interleaved.

    PYTHONPATH=src .venv/bin/python benchmarks/cold_first_load_bench.py --rows 1000000 --rounds 3

The data (``--rows`` suppliers + ``--rows`` parts for one tenant, ``cdf generate``'s defaults:
seed 42, 6% dirty, Parquet contract shape) is generated once. Each round then runs, in a fresh
lakehouse root holding hard links to the same raw files and an empty warehouse:

- **ours**: ``python -m cdf_pipeline.cli run --tenant bench --root <root> --json``;
- **reference**: ``python benchmarks/reference_job.py --root <root> --tenant bench``, the plain
  job (see its docstring): same files, same jars and Spark settings, the same contract with its
  rules written by hand as Column expressions, none of the silver job's guarantees.

Each is a cold interpreter and JVM, as a scheduler would start them. The order alternates from
round to round (ours first, then reference first, ...) so that drifting load on a shared machine
hits both sides alike. Printed per round: wall seconds of each process, the ratio and the load
average, and the CPU seconds of each process tree (Python and the JVM: on 2 cores, wall time
also depends on how the work packs onto them, CPU time less so); then the median ratios, and
where our job's time went (its stage spans, written by the ``jsonl`` exporter; median over the
rounds). Both must succeed, or the script fails; the rows
each put in silver are printed side by side (they may differ a little: the reference keeps the
newest of conflicting duplicate versions where the silver job quarantines them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

from cdf_generator.api import generate
from cdf_pipeline.telemetry.export import read_spans

TENANT = "bench"
HERE = Path(__file__).resolve().parent


def child_env(root: Path, spans: bool) -> dict[str, str]:
    """The caller's environment minus CDF/AWS settings; spans to ``<root>/spans.jsonl``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDF_", "AWS_"))}
    env.update(
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
        OTEL_METRICS_EXPORTER="none",
        OTEL_TRACES_EXPORTER="jsonl" if spans else "none",
        CDF__TELEMETRY__JSONL_PATH=str(root / "spans.jsonl"),
    )
    return env


def fresh_root(work: Path, source: Path, name: str) -> Path:
    """A lakehouse root with hard links to the generated raw files and nothing else."""
    root = work / name
    shutil.copytree(source / "raw", root / "raw", copy_function=os.link)
    return root


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone while we looked
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(cmd: list[str], root: Path, spans: bool) -> tuple[float, float, dict[str, Any]]:
    """Wall seconds of the child process, CPU seconds of its process tree (Python and the
    Spark JVM, sampled every 0.2 s: the last 0.2 s of a process may be missed), and its last
    stdout line as JSON."""
    started = time.perf_counter()
    cpu: dict[int, float] = {}
    with subprocess.Popen(
        cmd, env=child_env(root, spans), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.2):
                for pid in process_tree(proc.pid):
                    cpu[pid] = max(cpu.get(pid, 0.0), _cpu_s(pid))

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        out, err = proc.communicate()
        stop.set()
        thread.join()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(err[-5000:])
        raise SystemExit(f"{cmd[1:3]} exited {proc.returncode}")
    return seconds, sum(cpu.values()), json.loads(out.strip().splitlines()[-1])


def stage_seconds(path: Path, wall: float) -> dict[str, float]:
    """Seconds per stage of our run (entity stages keyed by entity), from its spans."""
    spans = read_spans(str(path))
    by_id = {s["span_id"]: s for s in spans}
    out: dict[str, float] = defaultdict(float)

    def label(s: dict[str, Any]) -> str:
        names = []
        while s is not None:
            entity = s["attributes"].get("cdf.entity")
            names.append(s["name"] + (f"[{entity}]" if entity else ""))
            s = by_id.get(s["parent_id"])  # type: ignore[assignment]
        return " / ".join(reversed(names[:-1])) or names[-1]

    for s in spans:
        if s["name"] == "normalise":  # planning only, one per file
            continue
        out[label(s)] += s["duration_ms"] / 1000
    runs = [s for s in spans if s["name"] == "cdf.silver_run"]
    if runs:
        first = min((s for s in spans if s["name"] == "stage_entity"), key=lambda s: s["start"])
        gap = datetime.fromisoformat(first["start"]) - datetime.fromisoformat(runs[0]["start"])
        out["cdf.silver_run / (before staging: tables, files, snapshots)"] = gap.total_seconds()
    root = next(s for s in spans if s["name"] == "cdf.run")
    out["(process: interpreter, imports, exit)"] = wall - root["duration_ms"] / 1000
    return dict(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="suppliers and parts each")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", help="folder for the data and the rounds' roots (default: tmp)")
    parser.add_argument("--no-spans", action="store_true", help="run ours without telemetry")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="cdf-cold-bench-"))
    source = work / "source"
    if not (source / "raw").exists():
        generate([TENANT], args.rows, args.rows, root_uri=str(source), seed=42)
    ours_cmd = [sys.executable, "-m", "cdf_pipeline.cli", "run", "--tenant", TENANT, "--json"]
    ref_cmd = [sys.executable, str(HERE / "reference_job.py"), "--tenant", TENANT]
    rows: list[tuple[int, float, float, float]] = []
    cpu_ratios: list[float] = []
    stages: list[dict[str, float]] = []
    for i in range(args.rounds):
        order = ("ours", "reference") if i % 2 == 0 else ("reference", "ours")
        seconds: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for side in order:
            root = fresh_root(work, source, f"round{i}-{side}")
            cmd = [*(ours_cmd if side == "ours" else ref_cmd), "--root", str(root)]
            seconds[side], cpu[side], result = run(cmd, root, spans=not args.no_spans)
            if side == "ours":
                assert result["status"] == "SUCCEEDED", result
                inserted = {e: c["inserted"] for e, c in result["entities"].items()}
                if not args.no_spans:
                    stages.append(stage_seconds(root / "spans.jsonl", seconds[side]))
            else:
                ref_rows = {e: c["ref_silver"] for e, c in result["counts"].items()}
            shutil.rmtree(root, ignore_errors=True)
        load = os.getloadavg()[0]
        rows.append((i + 1, seconds["ours"], seconds["reference"], load))
        cpu_ratios.append(cpu["ours"] / cpu["reference"])
        print(
            f"round {i + 1} ({order[0]} first): ours {seconds['ours']:6.1f} s, reference "
            f"{seconds['reference']:6.1f} s, ratio {seconds['ours'] / seconds['reference']:.2f}"
            f"  (load {load:.2f}); CPU ours {cpu['ours']:.0f} s, reference "
            f"{cpu['reference']:.0f} s, ratio {cpu_ratios[-1]:.2f}",
            flush=True,
        )
        # Same silver rows on both sides (the reference keeps the newest of duplicate versions
        # where the silver job quarantines conflicting ones, so it may hold a few more).
        print(f"  silver rows: ours {inserted}, reference {ref_rows}", flush=True)

    ratios = [o / r for _, o, r, _ in rows]
    print(
        f"\ndata: {args.rows:,} suppliers + {args.rows:,} parts, 1 tenant; {os.cpu_count()} "
        f"cores; median ours {median(o for _, o, _, _ in rows):.1f} s, reference "
        f"{median(r for _, _, r, _ in rows):.1f} s, median ratio {median(ratios):.2f}; "
        f"median CPU ratio {median(cpu_ratios):.2f}"
    )
    if stages:
        print(f"\n{'our stages (median over rounds)':<78}{'seconds':>8}")
        for label in sorted({k for s in stages for k in s}):
            print(f"{label:<78}{median(s.get(label, 0.0) for s in stages):>8.1f}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a node agent's start job spends its wall time: py-spy (with --idle, so time blocked on the
Docker socket counts) on node-1 while a service of N replicas converges; prints the share of the
start jobs' samples under each step. Diagnostic only; not part of the timed benchmarks.

    .venv/bin/pip install py-spy && .venv/bin/python -m bench.profile_start --replicas 30
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import time
from pathlib import Path

from bench import harness
from bench.harness import log, poll_until

# Frames worth naming (function, file suffix) -> label, innermost match wins.
STEPS = [
    ("report", "worker/node.py", "node.report (Redis WATCH/MULTI task write)"),
    ("service", "shared/storage/reads.py", "store.service (read spec)"),
    ("containers", "worker/engine.py", "engine.containers (list by label)"),
    ("ensure_image", "worker/engine.py", "engine.ensure_image (image inspect)"),
    ("ensure_network", "worker/engine.py", "engine.ensure_network (network list)"),
    ("create", "docker/models/containers.py", "containers.create (POST create + inspect)"),
    ("start", "worker/engine.py", "container.start (POST start)"),
    ("published_ports", "worker/engine.py", "published_ports (inspect again)"),
]


def frame_matches(frame: str, function: str, suffix: str) -> bool:
    # raw format frames look like "function (path/to/file.py:line)"
    name, _, where = frame.partition(" (")
    return name.rpartition(".")[2] == function and suffix in where


def summarise(raw: Path) -> str:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        # start_tasks runs every start, a single job's (start_task) and a batch's (run_batch) alike;
        # its worker threads (a batch starts several containers at once) run `_start`.
        if not any(frame_matches(f, fn, "worker/jobs.py") for f in frames for fn in ("start_tasks", "_start")):
            continue
        samples = int(n)
        total += samples
        label = "other (job code, logging, RQ)"
        for frame in frames:  # outermost first; keep the innermost named step
            for function, suffix, name in STEPS:
                if frame_matches(frame, function, suffix):
                    label = name
        counts[label] += samples
    lines = [f"start_task samples: {total}"]
    lines += [f"{100 * c / total:5.1f}%  {label}" for label, c in counts.most_common()] if total else []
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=30)
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument("--summarise", type=Path, help="only summarise an existing raw py-spy file")
    args = parser.parse_args()
    if args.summarise:
        print(summarise(args.summarise))
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    py_spy = shutil.which("py-spy") or str(harness.ROOT / ".venv" / "bin" / "py-spy")
    with harness.cluster(keep_logs=True) as cluster:
        pid = cluster.procs.procs["node-1"].pid
        raw = cluster.workdir / "node-1.raw"
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--idle",
                "--rate",
                str(args.rate),
                "--format",
                "raw",
                "-o",
                str(raw),
                "--pid",
                str(pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(2)
            start = time.perf_counter()
            cluster.create_service("prof", args.replicas)
            poll_until(lambda: cluster.running("prof", args.replicas), 120, "prof running")
            log(f"{args.replicas} running after {time.perf_counter() - start:.2f}s (under py-spy)")
        finally:
            spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
            spy.wait(timeout=30)
        print(summarise(raw))


if __name__ == "__main__":
    main()

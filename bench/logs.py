"""Log throughput: `GET /v1/tasks/{id}/logs?tail=all` (through the node's agent and Redis) against
`docker logs` of the same container.

A replica writes 50 MB to stdout (`base64` of random bytes) and then sleeps: once in 76-character
lines (about 660,000 of them), once in 16,000-character ones. Each run reads all of it both ways,
the order alternating, and checks both got every byte. MB/s = 10^6 bytes per second of wall time
from the request to the last byte.

    .venv/bin/python -m bench.logs --runs 5 --write
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import dataclass

import httpx

from bench import harness
from bench.harness import Samples, log, poll_until

RANDOM_BYTES = 37_500_000  # base64 makes 4/3 of it: 50 MB, plus a newline per line
# Characters per line: base64's own wrapping (many short lines: the engine's cost per line dominates),
# and 16,000 (the engine's own cost is small: what is left is the path's).
WORKLOADS = {"short": 76, "long": 16_000}
TIMEOUT = 300.0
MB = 1_000_000


def writer(line: int) -> str:
    return f"head -c {RANDOM_BYTES} /dev/urandom | base64 -w {line}; echo DONE; sleep 3600"


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def docker_logs(container_id: str) -> tuple[float, int]:
    """Seconds and bytes of `docker logs` (stdout and stderr) into a pipe that counts them."""
    start = time.perf_counter()
    proc = subprocess.Popen(["docker", "logs", container_id], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    size = 0
    while block := proc.stdout.read(1 << 20):
        size += len(block)
    proc.wait()
    return time.perf_counter() - start, size


def api_logs(client: httpx.Client, url: str) -> tuple[float, int]:
    """Seconds and bytes of the whole output through the API."""
    start = time.perf_counter()
    size = 0
    with client.stream("GET", url, params={"tail": "all"}) as response:
        response.raise_for_status()
        for block in response.iter_raw(1 << 20):
            size += len(block)
    return time.perf_counter() - start, size


@dataclass
class Result:
    line: int
    node: str
    size: int
    ours: Samples
    theirs: Samples
    cpu: dict[str, float]  # CPU seconds per read: the serving agent's, the API's, the docker CLI's


def written(container_id: str) -> bool:
    last = subprocess.run(["docker", "logs", "--tail", "1", container_id], capture_output=True, text=True)
    return last.stdout.strip() == "DONE"


def measure(cluster: harness.Cluster, service: str, line: int, runs: int) -> Result:
    body = {"service_name": service, "image": harness.IMAGE, "replicas": 1, "command": ["sh", "-c", writer(line)]}
    response = cluster.http.post(f"{cluster.url}/v1/services", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"POST /v1/services: {response.status_code} {response.text}")
    [task] = poll_until(lambda: cluster.running(service, 1), TIMEOUT, f"{service} running")
    container_id = task["container_id"]
    harness.wait_for(lambda: written(container_id), timeout=TIMEOUT, interval=0.5, what=f"{service}'s 50 MB")
    url = f"{cluster.url}/v1/tasks/{task['id']}/logs"
    ours, theirs = Samples(f"{service} ({line}) gorchester API"), Samples(f"{service} ({line}) docker logs")
    sizes: set[int] = set()
    pids = {"agent": cluster.procs.procs[task["node"]].pid, "API": cluster.procs.procs["api"].pid}
    cpu = dict.fromkeys([*pids, "docker CLI"], 0.0)
    with httpx.Client(timeout=httpx.Timeout(30, read=120)) as client:
        for run in range(runs):
            order = [("api", lambda: api_logs(client, url)), ("docker", lambda: docker_logs(container_id))]
            for name, read in order if run % 2 == 0 else reversed(order):
                before = {who: cpu_seconds(pid) for who, pid in pids.items()} | {"docker CLI": children_cpu()}
                seconds, size = read()
                after = {who: cpu_seconds(pid) for who, pid in pids.items()} | {"docker CLI": children_cpu()}
                for who in (pids if name == "api" else ["docker CLI"]):
                    cpu[who] += (after[who] - before[who]) / runs
                sizes.add(size)
                (ours if name == "api" else theirs).add(seconds)
                log(f"{service} run {run + 1}/{runs} {name}: {size / MB:.1f} MB in {seconds:.2f}s "
                    f"({size / MB / seconds:.1f} MB/s), load {harness.load()}")
    if len(sizes) != 1:
        raise RuntimeError(f"the two paths did not read the same bytes: {sorted(sizes)}")
    cluster.delete_service(service)
    return Result(line, task["node"], sizes.pop(), ours, theirs, cpu)


def render(runs: int, results: list[Result]) -> str:
    def rate(result: Result, samples: Samples) -> str:
        speeds = sorted(result.size / MB / seconds for seconds in samples.values)
        return f"**{result.size / MB / samples.median:.1f}** ({speeds[0]:.1f}–{speeds[-1]:.1f})"

    rows = []
    for result in results:
        lines = f"{result.size / MB:.1f} MB in {result.line:,}-character lines"
        cpu = result.cpu
        rows.append([lines, rate(result, result.ours), rate(result, result.theirs),
                     f"**{result.theirs.median / result.ours.median:.2f}x**",
                     f"{cpu['agent']:.2f} / {cpu['API']:.2f}", f"{cpu['docker CLI']:.2f}"])
    table = harness.markdown_table(
        ["output (`base64` of random bytes)", "`GET /v1/tasks/{id}/logs?tail=all` MB/s (min–max)",
         "`docker logs` MB/s (min–max)", "API / docker logs", "CPU s per read: agent / API",
         "CPU s per read: docker CLI"],
        rows,
    )
    raw = "\n".join(f"- {samples.name}: {samples.all()}" for r in results for samples in (r.ours, r.theirs))
    return (
        f"_Command:_ `.venv/bin/python -m bench.logs --runs {runs} --write`\n\n"
        f"_Machine:_ {harness.machine()}\n\n"
        f"One replica's whole output, not following, through the API (agent → Redis → API → client) and "
        f"with `docker logs` (the CLI, same container, same engine); medians of {runs} runs each, the order "
        f"alternating, both reading every byte. CPU is the mean per read of the processes on each side "
        f"(the engine's own, the same for both, is not counted):\n\n{table}\n\n"
        f"<details><summary>All runs (seconds, in run order)</summary>\n\n{raw}\n\n</details>\n"
    )


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0])
    with harness.cluster(args.keep_logs) as cluster:
        results = [measure(cluster, service, line, args.runs) for service, line in WORKLOADS.items()]
    report = render(args.runs, results)
    print(report)
    if args.write:
        harness.write_section("logs", report)


if __name__ == "__main__":
    main()

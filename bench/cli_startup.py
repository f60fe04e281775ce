"""Command-line start-up: the wall time of `gorchester get services` (the installed console script, output
piped) against `curl` of the same endpoint and `docker ps`, in the same run, on the same machine.

The API is the real process (uvicorn) on a redis-server of the benchmark's own holding SERVICES services
(written through the Store); each command runs RUNS times in turn (gorchester, curl, docker, ...) so a
burst of other work on the shared machine hits all three alike. Target (issue 18): under 150 ms.

    .venv/bin/python -m bench.cli_startup --runs 20 --write
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import harness
from bench.harness import Samples, log
from shared.config import validate_service
from tests.support.procs import free_port

SERVICES = 10
TARGET = 0.150  # seconds for a client command


def gorchester_script() -> str:
    """The console script installed beside this interpreter (the venv's), as a user runs it."""
    script = Path(sys.executable).with_name("gorchester")
    if not script.exists():
        raise SystemExit(f"{script} is not installed (pip install -e .)")
    return str(script)


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.decode(errors='replace')[:300]}")
    return elapsed


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0], default_runs=20)
    if shutil.which("curl") is None:
        raise SystemExit("curl is not installed")
    loads = [harness.load()]
    samples = {name: Samples(name) for name in ("gorchester get services", "curl", "docker ps")}
    with harness.workdir(args.keep_logs) as path, harness.store_and_processes(path, "cli") as (store, procs, env):
        for index in range(SERVICES):
            spec = {"service_name": f"s{index}", "image": harness.IMAGE, "replicas": 1, "command": harness.COMMAND}
            store.create_service(validate_service(spec), time.time())
        url = procs.api(free_port())
        client_env = {**env, "GORCHESTER_API": url, "GORCHESTER_CONFIG": str(path / "no-contexts.yaml")}
        commands = {
            "gorchester get services": [gorchester_script(), "get", "services"],
            "curl": ["curl", "-sf", f"{url}/v1/services"],
            "docker ps": [*harness.docker_cli(), "ps"],
        }
        log(f"API {url}: {SERVICES} services; {args.runs} runs of each command")
        for argv in commands.values():
            timed(argv, client_env)  # warm the page cache: every command is measured warm
        for _ in range(args.runs):
            for name, argv in commands.items():
                samples[name].add(timed(argv, client_env))
    report = render(samples, args.runs, loads)
    print(report)
    if args.write:
        harness.write_section("cli-startup", report)


def render(samples: dict[str, Samples], runs: int, loads: list[str]) -> str:
    rows = []
    for name, measured in samples.items():
        values = measured.values
        target = ("met" if measured.median < TARGET else "**missed**") if name.startswith("gorchester") else "—"
        rows.append([f"`{name}`", f"{min(values) * 1000:.0f}", f"**{measured.median * 1000:.0f}**",
                     f"{max(values) * 1000:.0f}", target])
    table = harness.markdown_table(
        ["command", "min ms", "median ms", "max ms", f"target median < {TARGET * 1000:.0f} ms"], rows
    )
    return (
        f"_Command:_ `.venv/bin/python -m bench.cli_startup --runs {runs} --write`\n\n"
        f"_Machine:_ {harness.machine()}; load averages at start: {', '.join(loads)}\n\n"
        f"Wall time of each command as a new process (output piped), {runs} runs each, interleaved; "
        f"the API holds {SERVICES} services; `curl` and `docker ps` are the floor a client command is held to.\n\n"
        f"{table}\n"
    )


if __name__ == "__main__":
    main()

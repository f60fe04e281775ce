"""The node agent's usage sampler: CPU and memory of each running replica, every metrics interval.

Source: the container's cgroup files when this process can see them (cgroup v1 `cpuacct.usage` and
`memory.usage_in_bytes` less `total_inactive_file`; cgroup v2 `cpu.stat` usage_usec and
`memory.current` less `inactive_file`). They are where the engine's defaults put them (cgroupfs
`docker/<id>` or systemd `docker-<id>.scope`), else where /proc/<pid>/cgroup of the container's
init process says (found once per container): an engine with a cgroup parent of its own, as each
host of a bed has (cli/hostbed.py), puts them elsewhere. A read takes microseconds, against about
a second per container for the engine's stats API, which blocks while it measures. When the files
are not there (an agent in a container of its own, whose pids and cgroups are not the engine's)
the sampler falls back to `container.stats(stream=False)`.

Every read runs in a small thread pool and the sampler waits for them at most most of an interval:
a read still running then (a slow engine answer) is collected by a later pass, and that container
is not read again meanwhile, so one slow container never delays the others nor piles up threads.

CPU is a rate: the cumulative CPU time between two reads over the time between them (the engine
answer carries its own previous reading). Memory is the working set, usage less inactive page
cache, as `docker stats` and the kubelet count it. Both are also given as a percent of what the
service reserves per container (`resources`), which is what the autoscaler compares to its target.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from shared import telemetry
from shared.fit import allocations
from shared.records import NodeRecord, TaskRecord, TaskState
from worker.node import Node

log = logging.getLogger("rq.worker.gorchester")

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_ROOT = "/proc"
POOL_SIZE = 4
WAIT_SHARE = 0.8  # of the interval, the longest a pass waits for its reads


@dataclass(frozen=True)
class Reading:
    monotonic: float
    wall: float
    memory_bytes: int
    cpu_ns: int | None = None  # cumulative CPU time (cgroup)
    cpu_cores: float | None = None  # a rate measured by the source itself (engine)
    source: str = "cgroup"


def _read_int(path: str) -> int:
    with open(path) as handle:
        return int(handle.read().split()[0])


def _stat(path: str) -> dict[str, int]:
    result = {}
    with open(path) as handle:
        for line in handle:
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                result[key] = int(value)
    return result


class CgroupReader:
    """A container's CPU time and working set from its cgroup files; None when they are not found."""

    def __init__(self, root: str = CGROUP_ROOT, proc: str = PROC_ROOT):
        self.root = root
        self.proc = proc
        self.v2 = os.path.exists(os.path.join(root, "cgroup.controllers"))
        self.located: dict[str, dict[str, str]] = {}  # container id -> controller ("" on v2) -> its cgroup path

    def _dirs(self, controller: str, container_id: str) -> list[str]:
        base = self.root if self.v2 else os.path.join(self.root, controller)
        found = self.located.get(container_id, {}).get("" if self.v2 else controller)
        return [
            os.path.join(base, "docker", container_id),  # cgroupfs driver
            os.path.join(base, "system.slice", f"docker-{container_id}.scope"),  # systemd driver
            *([os.path.join(base, found.lstrip("/"))] if found is not None else []),  # any parent (locate)
        ]

    def locate(self, container_id: str, pid: int) -> bool:
        """Learn the container's cgroups from /proc/<pid>/cgroup of its init process; whether they name it
        (a pid that is no longer the container's, or of another pid namespace, does not). Tried once per
        container: a container not found so is read through the engine from then on."""
        paths: dict[str, str] = {}
        self.located[container_id] = paths
        try:
            with open(os.path.join(self.proc, str(pid), "cgroup")) as handle:
                lines = handle.read().splitlines()
        except OSError:
            return False
        for line in lines:  # "4:cpu,cpuacct:/parent/<id>" (v1), "0::/parent/<id>" (v2)
            fields = line.split(":", 2)
            if len(fields) != 3 or container_id not in fields[2]:
                continue
            _, controllers, path = fields
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
        return bool(paths)

    def forget(self, live: Collection[str]) -> None:
        """Drop what was located of containers not in `live`."""
        for container_id in [cid for cid in self.located if cid not in live]:
            self.located.pop(container_id, None)

    def _find(self, controller: str, container_id: str, filename: str) -> str | None:
        for folder in self._dirs(controller, container_id):
            path = os.path.join(folder, filename)
            if os.path.exists(path):
                return path
        return None

    def read(self, container_id: str) -> Reading | None:
        try:
            if self.v2:
                cpu_path = self._find("cpu", container_id, "cpu.stat")
                mem_path = self._find("memory", container_id, "memory.current")
                if cpu_path is None or mem_path is None:
                    return None
                cpu_ns = _stat(cpu_path)["usage_usec"] * 1000
                usage = _read_int(mem_path)
                inactive = _stat(os.path.join(os.path.dirname(mem_path), "memory.stat")).get("inactive_file", 0)
            else:
                cpu_path = self._find("cpuacct", container_id, "cpuacct.usage")
                mem_path = self._find("memory", container_id, "memory.usage_in_bytes")
                if cpu_path is None or mem_path is None:
                    return None
                cpu_ns = _read_int(cpu_path)
                usage = _read_int(mem_path)
                inactive = _stat(os.path.join(os.path.dirname(mem_path), "memory.stat")).get("total_inactive_file", 0)
        except (OSError, ValueError, KeyError):
            return None  # the container went away between the check and the read
        return Reading(time.monotonic(), time.time(), max(usage - inactive, 0), cpu_ns=cpu_ns)


def engine_reading(stats: dict[str, Any]) -> Reading:
    """A reading from the engine's stats document (`container.stats(stream=False)`), as `docker stats` does."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    total = int((cpu.get("cpu_usage") or {}).get("total_usage") or 0)
    cores = None
    cpu_delta = total - int((pre.get("cpu_usage") or {}).get("total_usage") or 0)
    system_delta = int(cpu.get("system_cpu_usage") or 0) - int(pre.get("system_cpu_usage") or 0)
    if pre.get("system_cpu_usage") and system_delta > 0:
        online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
        cores = max(cpu_delta, 0) / system_delta * online
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    used = max(int(memory.get("usage") or 0) - int(inactive or 0), 0)
    return Reading(time.monotonic(), time.time(), used, cpu_ns=total, cpu_cores=cores, source="engine")


class Sampler:
    def __init__(self, node: Node, record: NodeRecord, interval: float, cgroups: CgroupReader | None = None):
        self.node = node
        self.record = record
        self.interval = interval
        self.cgroups = cgroups or CgroupReader()
        self.pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="metrics")
        self.pending: dict[str, tuple[TaskRecord, Future[Reading | None]]] = {}
        self.previous: dict[str, Reading] = {}

    def read(self, container_id: str) -> Reading | None:
        reading = self.cgroups.read(container_id)
        if reading is None and container_id not in self.cgroups.located:
            # Not where the engine's defaults put them: ask where its init process is (once per container).
            pid = ((self.node.engine.inspect(container_id) or {}).get("State") or {}).get("Pid")
            if isinstance(pid, int) and pid > 0 and self.cgroups.locate(container_id, pid):
                reading = self.cgroups.read(container_id)
        if reading is not None:
            return reading
        return engine_reading(self.node.engine.stats(container_id))

    def step(self) -> None:
        """One pass, for the agent's repeat loop."""
        self.sample_once()

    def sample_once(self) -> list[telemetry.TaskSample]:
        """One pass: read every running replica of this node, write samples and the node's usage."""
        tasks = list(self.node.store.node_tasks(self.node.id).good.values())
        running = [
            task for task in tasks
            if task.node == self.node.id and task.state is TaskState.RUNNING and task.container_id
        ]
        for task in running:
            assert task.container_id is not None
            if task.container_id not in self.pending:
                self.pending[task.container_id] = (task, self.pool.submit(self.read, task.container_id))
        if self.pending:
            wait([future for _, future in self.pending.values()], timeout=self.interval * WAIT_SHARE)

        samples: list[telemetry.TaskSample] = []
        errors = 0
        for container_id, (task, future) in list(self.pending.items()):
            if not future.done():
                continue  # a slow read: collected by a later pass, not started again meanwhile
            del self.pending[container_id]
            try:
                reading = future.result()
            except Exception as exc:  # noqa: BLE001 - a container gone or an engine error: skip it this time
                log.debug("sampling %s failed: %s", task.id, exc)
                reading = None
            if reading is None:
                errors += 1
                continue
            sample = self._sample(task, reading)
            if sample is not None:
                samples.append(sample)
        live = {task.container_id for task in running if task.container_id}
        self.previous = {cid: reading for cid, reading in self.previous.items() if cid in live}
        self.cgroups.forget(live)
        self._write(samples, tasks, errors)
        return samples

    def _sample(self, task: TaskRecord, reading: Reading) -> telemetry.TaskSample | None:
        assert task.container_id is not None
        cores = reading.cpu_cores
        before = self.previous.get(task.container_id)
        if reading.cpu_ns is not None:
            self.previous[task.container_id] = reading
        if cores is None:
            if before is None or before.cpu_ns is None or reading.cpu_ns is None:
                return None  # the first read of a container: its rate is known from the next one
            elapsed = reading.monotonic - before.monotonic
            if elapsed <= 0:
                return None
            cores = max(reading.cpu_ns - before.cpu_ns, 0) / 1e9 / elapsed
        millicores = cores * 1000
        return telemetry.TaskSample(
            task=task.id,
            service=task.service,
            node=self.node.id,
            gen=task.gen,
            container_id=task.container_id,
            sampled_at=reading.wall,
            cpu_millicores=round(millicores, 2),
            cpu_percent=round(millicores / task.cpu_millicores * 100, 2) if task.cpu_millicores else None,
            memory_bytes=reading.memory_bytes,
            memory_percent=round(reading.memory_bytes / task.memory_bytes * 100, 2) if task.memory_bytes else None,
            source=reading.source,
        )

    def usage(self, samples: list[telemetry.TaskSample], tasks: list[TaskRecord]) -> dict[str, Any]:
        """The node's totals: capacity, what its tasks reserve, and what they were measured to use."""
        held = allocations(tasks).get(self.node.id)
        cpu_used = sum(sample.cpu_millicores for sample in samples)
        memory_used = sum(sample.memory_bytes for sample in samples)
        capacity = {"cpu_millicores": self.record.cpu_millicores, "memory_bytes": self.record.memory_bytes}
        cpu_cap, memory_cap = capacity["cpu_millicores"], capacity["memory_bytes"]
        return {
            "capacity": capacity,
            "allocated": held.model_dump() if held else {"cpu_millicores": 0, "memory_bytes": 0},
            "used": {"cpu_millicores": round(cpu_used, 2), "memory_bytes": memory_used},
            "cpu_percent": round(cpu_used / cpu_cap * 100, 2) if cpu_cap else None,
            "memory_percent": round(memory_used / memory_cap * 100, 2) if memory_cap else None,
            "containers": len(samples),
            "sampled_at": time.time(),
        }

    def _write(self, samples: list[telemetry.TaskSample], tasks: list[TaskRecord], errors: int) -> None:
        sources = Counter(sample.source for sample in samples)
        counts = [("gorchester_metrics_samples", float(amount), {"node": self.node.id, "source": source})
                  for source, amount in sources.items()]
        if errors:
            counts.append(("gorchester_metrics_sample_errors", float(errors), {"node": self.node.id}))
        # Not registered (yet, or Redis lost its data): nothing written; the heartbeat registers it again.
        self.node.store.write_usage(self.node.id, samples, self.usage(samples, tasks), self.interval, counts)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

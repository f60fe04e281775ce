"""The agent's sampler without Redis or Docker: cgroup files in a temporary folder, fake reads."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.parsed import Records
from shared.records import NodeRecord, TaskRecord, TaskState
from worker.usage_sampler import CgroupReader, Reading, Sampler, engine_reading

CID = "abc123"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v1_cgroupfs_layout(tmp_path: Path):
    write(tmp_path / "cpuacct/docker" / CID / "cpuacct.usage", "2500000000\n")
    write(tmp_path / "memory/docker" / CID / "memory.usage_in_bytes", "10000000\n")
    write(tmp_path / "memory/docker" / CID / "memory.stat", "cache 5\ntotal_inactive_file 4000000\n")
    reading = CgroupReader(str(tmp_path)).read(CID)
    assert reading is not None
    assert reading.cpu_ns == 2_500_000_000 and reading.memory_bytes == 6_000_000 and reading.source == "cgroup"


def test_cgroup_v2_systemd_layout(tmp_path: Path):
    write(tmp_path / "cgroup.controllers", "cpu memory\n")
    scope = tmp_path / "system.slice" / f"docker-{CID}.scope"
    write(scope / "cpu.stat", "usage_usec 1500\nuser_usec 1000\n")
    write(scope / "memory.current", "8192\n")
    write(scope / "memory.stat", "anon 100\ninactive_file 4096\n")
    reading = CgroupReader(str(tmp_path)).read(CID)
    assert reading is not None and reading.cpu_ns == 1_500_000 and reading.memory_bytes == 4096


def test_cgroups_under_an_engines_own_parent_are_found_from_the_init_process(tmp_path: Path):
    # An engine run with --cgroup-parent /gorchester-bed-host1 (a host of a bed): neither default layout.
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    write(root / "cpuacct/gorchester-bed-host1" / CID / "cpuacct.usage", "2500000000\n")
    write(root / "memory/gorchester-bed-host1" / CID / "memory.usage_in_bytes", "10000000\n")
    write(root / "memory/gorchester-bed-host1" / CID / "memory.stat", "total_inactive_file 4000000\n")
    write(proc / "42/cgroup", f"9:name=systemd:/gorchester-bed-host1/{CID}\n5:cpu,cpuacct:/gorchester-bed-host1/{CID}\n"
                              f"3:memory:/gorchester-bed-host1/{CID}\n0::/\n")
    write(proc / "43/cgroup", "5:cpu,cpuacct:/user.slice\n3:memory:/user.slice\n")  # a pid reused by another process
    reader = CgroupReader(str(root), str(proc))
    assert reader.read(CID) is None
    assert not reader.locate(CID, 43) and not reader.locate(CID, 44)  # not the container's; no such process
    assert CID in reader.located and reader.read(CID) is None  # looked for: the sampler asks the engine now
    assert reader.locate(CID, 42)
    reading = reader.read(CID)
    assert reading is not None and reading.cpu_ns == 2_500_000_000 and reading.memory_bytes == 6_000_000
    reader.forget(live={"another"})
    assert reader.read(CID) is None


def test_cgroup_v2_under_an_engines_own_parent(tmp_path: Path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "gorchester-bed-host2" / CID / "cpu.stat", "usage_usec 1500\n")
    write(root / "gorchester-bed-host2" / CID / "memory.current", "8192\n")
    write(root / "gorchester-bed-host2" / CID / "memory.stat", "inactive_file 4096\n")
    write(proc / "7/cgroup", f"0::/gorchester-bed-host2/{CID}\n")
    reader = CgroupReader(str(root), str(proc))
    assert reader.locate(CID, 7)
    reading = reader.read(CID)
    assert reading is not None and reading.cpu_ns == 1_500_000 and reading.memory_bytes == 4096


def test_missing_cgroup_files_read_as_none(tmp_path: Path):
    assert CgroupReader(str(tmp_path)).read(CID) is None


def test_engine_stats_document_like_docker_stats():
    stats = {
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000_000_000}, "system_cpu_usage": 20_000_000_000, "online_cpus": 4,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 2_500_000_000}, "system_cpu_usage": 16_000_000_000},
        "memory_stats": {"usage": 50_000_000, "stats": {"total_inactive_file": 10_000_000}},
    }
    reading = engine_reading(stats)
    assert reading.cpu_cores == pytest.approx(0.5)  # 0.5 s of CPU over 4 s of 4 CPUs' time / 4 = 1 s wall
    assert reading.memory_bytes == 40_000_000 and reading.source == "engine"


def fake_sampler(tasks: list[TaskRecord], read, interval: float = 0.5) -> Sampler:
    store = SimpleNamespace(
        node_tasks=lambda _: Records({t.id: t for t in tasks}, {}, {}),
        write_usage=lambda *args: False,  # not registered: nothing written
    )
    node = SimpleNamespace(id="node-1", store=store)
    record = NodeRecord(id="node-1", address="127.0.0.1", cpu_millicores=2000, memory_bytes=1 << 30)
    sampler = Sampler(node, record, interval)  # type: ignore[arg-type]
    sampler.read = read  # type: ignore[method-assign]
    return sampler


def running(slot: int) -> TaskRecord:
    return TaskRecord(
        id=f"web.{slot}", service="web", slot=slot, node="node-1", state=TaskState.RUNNING,
        container_id=f"c{slot}", cpu_millicores=100, memory_bytes=64 << 20, gen=1,
    )


def test_cpu_is_a_rate_between_reads_and_shares_are_of_the_reservation():
    clock = {"t": 100.0, "ns": 0}

    def read(_: str) -> Reading:
        return Reading(clock["t"], clock["t"], 32 << 20, cpu_ns=clock["ns"])

    sampler = fake_sampler([running(1)], read)
    assert sampler.sample_once() == []  # the first read only sets the baseline
    clock["t"] += 2.0
    clock["ns"] += 100_000_000  # 0.1 s of CPU in 2 s: 50 millicores
    [sample] = sampler.sample_once()
    assert sample.cpu_millicores == pytest.approx(50)
    assert sample.cpu_percent == pytest.approx(50)  # of 100m
    assert sample.memory_percent == pytest.approx(50)  # 32 MiB of 64 MiB
    usage = sampler.usage([sample], [running(1)])
    assert usage["used"] == {"cpu_millicores": 50, "memory_bytes": 32 << 20}
    assert usage["allocated"] == {"cpu_millicores": 100, "memory_bytes": 64 << 20}
    assert usage["capacity"]["cpu_millicores"] == 2000
    sampler.close()


def test_a_slow_container_does_not_delay_the_others():
    release = threading.Event()
    calls: dict[str, int] = {}

    def read(container_id: str) -> Reading:
        calls[container_id] = calls.get(container_id, 0) + 1
        if container_id == "c1":
            release.wait(10)
        return Reading(time.monotonic(), time.time(), 1, cpu_cores=0.05, source="engine")

    sampler = fake_sampler([running(1), running(2), running(3)], read, interval=0.3)
    started = time.monotonic()
    first = sampler.sample_once()
    assert time.monotonic() - started < 1.0  # waited at most most of an interval
    assert sorted(s.task for s in first) == ["web.2", "web.3"]
    second = sampler.sample_once()
    assert sorted(s.task for s in second) == ["web.2", "web.3"]
    assert calls["c1"] == 1  # the slow read is not started again while it runs
    release.set()
    time.sleep(0.05)
    third = sampler.sample_once()
    assert "web.1" in {s.task for s in third}
    sampler.close()

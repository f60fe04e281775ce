"""Several hosts on one machine: each a network namespace with its own address and its own `dockerd`.

The layout of a bed named NAME with N hosts (root only):

    netns ghNAMEsw : the bed's switch, bridge `br0`; bridged host-to-host frames stay in this
                     namespace, so the root namespace's FORWARD chain (DROP under Docker) never
                     sees them
    ghNAMEr (root ns) <-veth-> uplink (in the switch, on br0)     10.231.B.1/24: the control plane's address
    hI (in the switch, on br0) <-veth-> eth0 (in netns ghNAMEhI)  10.231.B.(10+I)/24: host I's address

Each host's engine has its own data root, exec root, socket, pid file, default bridge subnet
(10.232.16B+I.0/24, room for a per-node container subnet), address pool for user networks, cgroup
parent, key (so its own engine ID) and hostname. The engine runs under `ip netns exec` (a mount
namespace of its own: its mounts never leak into the root namespace) with the cgroup mounts, which
`ip netns exec` hides by remounting /sys, mounted again. Processes of the project run in a host with
`nsenter --net` (`command_in`), which changes only the network namespace.

Pitfalls solved here, each found by trying on this kind of machine: engines sharing
/etc/docker/key.json report one engine ID (hence `deprecated-key-path`); a killed dockerd leaves its
containers running (they are killed by their cgroup); dockerd's shutdown waits 10 s for PID-1
processes that ignore SIGTERM (containers are removed first); busybox's wget crashes inside these
hosts (use nc).

The bed's state (its name, index and hosts) is a JSON file under RUN_ROOT, so `down` from another
process (or after a crash) finds everything. `python -m cli.hostbed up|down|status` and
deploy/hostbed.sh drive it by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from shared.redis_url import sentinel_target

RUN_ROOT = Path("/run/gorchester-hostbed")  # sockets, pid files, exec roots, state (tmpfs: gone on reboot)
DATA_ROOT = Path("/var/lib/gorchester-hostbed")  # engines' data roots (images, containers)
MAX_HOSTS = 15
MAX_BEDS = 16
NAME_CHARS = 6  # interface names are at most 15 characters: "gh" + name + "r"
ENGINE_START_TIMEOUT = 60.0
STOP_GRACE = 10.0


class HostBedError(Exception):
    """The bed cannot be made or used; the message says why, for a terminal."""


@dataclass(frozen=True)
class Host:
    index: int
    bed: str
    lan: int  # the bed's index B: LAN 10.231.B.0/24

    @property
    def name(self) -> str:
        return f"host{self.index}"

    @property
    def netns(self) -> str:
        return f"gh{self.bed}h{self.index}"

    @property
    def address(self) -> str:
        return f"10.231.{self.lan}.{10 + self.index}"

    @property
    def switch_port(self) -> str:
        """The switch side of the host's cable: down is a partition."""
        return f"h{self.index}"

    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / self.bed / self.name

    @property
    def data_dir(self) -> Path:
        return DATA_ROOT / self.bed / self.name

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "docker.pid"

    @property
    def containerd_pidfile(self) -> Path:
        """Where the engine's own containerd (started by dockerd under its exec root) keeps its pid."""
        return self.run_dir / "exec" / "containerd" / "containerd.pid"

    @property
    def cgroup_parent(self) -> str:
        return f"gorchester-{self.bed}-{self.name}"

    @property
    def bridge_cidr(self) -> str:
        """The engine's default bridge: the host's own container subnet."""
        return f"10.232.{16 * self.lan + self.index}.1/24"

    @property
    def address_pool(self) -> str:
        """Where the engine takes the subnets of user-defined networks (16 of /24)."""
        # 10.216-231: clear of the cluster's pod range (GORCHESTER_POD_CIDR, 10.244.0.0/16 by default).
        return f"base=10.{216 + self.lan}.{16 * self.index}.0/20,size=24"


@dataclass(frozen=True)
class HostBed:
    name: str
    lan: int
    hosts: int

    # -- naming -----------------------------------------------------------------------------------

    @property
    def switch(self) -> str:
        return f"gh{self.name}sw"

    @property
    def root_link(self) -> str:
        return f"gh{self.name}r"

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bed's LAN: where the control plane listens."""
        return f"10.231.{self.lan}.1"

    @property
    def state_file(self) -> Path:
        return RUN_ROOT / self.name / "bed.json"

    def host(self, index: int) -> Host:
        if not 1 <= index <= self.hosts:
            raise HostBedError(f"host{index}: the bed has hosts 1 to {self.hosts}")
        return Host(index, self.name, self.lan)

    def all_hosts(self) -> list[Host]:
        return [self.host(index) for index in range(1, self.hosts + 1)]

    # -- state ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, name: str) -> HostBed:
        path = RUN_ROOT / name / "bed.json"
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise HostBedError(f"no host bed {name!r} ({path}: {exc})") from None

    @classmethod
    def existing(cls) -> list[str]:
        return sorted(path.parent.name for path in RUN_ROOT.glob("*/bed.json"))

    # -- up ---------------------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, hosts: int) -> HostBed:
        """Bring up a bed of `hosts` hosts; on any failure, whatever was made is removed again."""
        _require_root()
        if not (name.isascii() and name.isalnum() and name.islower() and 1 <= len(name) <= NAME_CHARS):
            raise HostBedError(f"bed name {name!r}: 1-{NAME_CHARS} lowercase letters or digits")
        if not 1 <= hosts <= MAX_HOSTS:
            raise HostBedError(f"hosts: 1 to {MAX_HOSTS}, got {hosts}")
        for tool in ("ip", "nsenter", "unshare", "dockerd", "docker"):
            if shutil.which(tool) is None:
                raise HostBedError(f"{tool} is not installed (deploy/setup.sh installs what the bed needs)")
        if name in cls.existing():
            raise HostBedError(f"a host bed {name!r} exists already; `python -m cli.hostbed down {name}` first")
        bed = cls(name, _free_lan(), hosts)
        bed.state_file.parent.mkdir(parents=True, exist_ok=True)
        bed.state_file.write_text(json.dumps(asdict(bed)))
        try:
            bed._network_up()
            for host in bed.all_hosts():
                bed.start_engine(host.index, wait=False)
            for host in bed.all_hosts():
                bed.wait_engine(host.index)
        except BaseException:
            bed.destroy()
            raise
        return bed

    def _network_up(self) -> None:
        sw, root = self.switch, self.root_link
        _run("ip", "netns", "add", sw)
        _run("ip", "-n", sw, "link", "set", "lo", "up")
        _run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", sw, "link", "set", "br0", "up")
        _run("ip", "link", "add", root, "type", "veth", "peer", "name", "uplink", "netns", sw)
        _run("ip", "-n", sw, "link", "set", "uplink", "master", "br0", "up")
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", root)
        _run("ip", "link", "set", root, "up")
        for host in self.all_hosts():
            _run("ip", "netns", "add", host.netns)
            _run("ip", "-n", host.netns, "link", "set", "lo", "up")
            _run("ip", "-n", sw, "link", "add", host.switch_port, "type", "veth", "peer", "name", "eth0",
                 "netns", host.netns)
            _run("ip", "-n", sw, "link", "set", host.switch_port, "master", "br0", "up")
            _run("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _run("ip", "-n", host.netns, "link", "set", "eth0", "up")

    # -- engines ----------------------------------------------------------------------------------

    def start_engine(self, index: int, *, wait: bool = True) -> None:
        host = self.host(index)
        (host.run_dir / "exec").mkdir(parents=True, exist_ok=True)
        host.data_dir.mkdir(parents=True, exist_ok=True)
        # The engine ID comes from a key file, shared with the machine's own engine unless named here
        # (Docker 20.10 has no flag for it, only this setting).
        config = host.run_dir / "daemon.json"
        config.write_text(json.dumps({"deprecated-key-path": str(host.data_dir / "key.json")}))
        dockerd = [
            "dockerd",
            "--config-file", str(config),
            "--host", host.docker_host,
            "--pidfile", str(host.pidfile),
            "--exec-root", str(host.run_dir / "exec"),
            "--data-root", str(host.data_dir),
            "--storage-driver", "overlay2",
            "--exec-opt", "native.cgroupdriver=cgroupfs",
            "--cgroup-parent", f"/{host.cgroup_parent}",
            "--bip", host.bridge_cidr,
            "--default-address-pool", host.address_pool,
        ]  # fmt: skip
        # `ip netns exec` remounts /sys for the namespace, which hides the cgroup mounts dockerd needs.
        script = "set -e\n" + "".join(
            f"mkdir -p {target}; mount -t {fstype} -o {options} {fstype} {target}\n"
            for target, fstype, options in _cgroup_mounts()
        ) + f"hostname {host.name}\nexec " + " ".join(dockerd)
        log = open(host.run_dir / "dockerd.log", "ab")  # noqa: SIM115 - handed to the engine's process
        with log:
            subprocess.Popen(
                ["ip", "netns", "exec", host.netns, "unshare", "--uts", "--", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        if wait:
            self.wait_engine(index)

    def wait_engine(self, index: int) -> None:
        host = self.host(index)
        deadline = time.monotonic() + ENGINE_START_TIMEOUT
        while time.monotonic() < deadline:
            if _engine_answers(host):
                return
            time.sleep(0.1)
        tail = _tail(host.run_dir / "dockerd.log")
        raise HostBedError(f"{host.name}: dockerd did not answer within {ENGINE_START_TIMEOUT:g}s\n{tail}")

    def kill_engine(self, index: int) -> None:
        """The engine dies (SIGKILL); its containers keep running, as they do when dockerd crashes."""
        host = self.host(index)
        pid = _engine_pid(host)
        if pid is not None:
            containerd = _containerd_pid(host)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10.0)
            # Its containerd dies with it (a parent-death signal), but lingers as a zombie until PID 1
            # reaps it; a dockerd started meanwhile takes the pid file for a live containerd, waits for
            # its socket and gives up ("timeout waiting for containerd to start"): start a new one instead.
            if containerd is not None and _wait_gone(containerd, 10.0):
                host.containerd_pidfile.unlink(missing_ok=True)

    def stop_engine(self, index: int) -> None:
        """Stop the engine and everything it runs; containers are removed first (fast), orphans killed."""
        host = self.host(index)
        if _engine_answers(host):
            ids = _docker(host, "ps", "-aq").split()
            if ids:
                _docker(host, "rm", "-f", *ids, timeout=60)
        pid = _engine_pid(host)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, STOP_GRACE):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5.0)
        self._kill_orphans(host)
        for path in (host.pidfile, host.socket):
            path.unlink(missing_ok=True)

    def kill_host(self, index: int) -> None:
        """A power loss: the engine and every container process of the host die at once (the caller
        kills the host's own processes, such as its agent)."""
        host = self.host(index)
        self.kill_engine(index)
        self._kill_orphans(host)
        for path in (host.pidfile, host.socket):
            path.unlink(missing_ok=True)

    def partition(self, index: int, cut: bool = True) -> None:
        """Cut the host's cable at the switch (or mend it): nothing reaches it and it reaches nothing."""
        host = self.host(index)
        _run("ip", "-n", self.switch, "link", "set", host.switch_port, "down" if cut else "up")

    def _kill_orphans(self, host: Host) -> None:
        """Container processes of a dead engine live on in the host: find them by their cgroup parent."""
        for _ in range(25):
            pids = _cgroup_pids(host.cgroup_parent)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    # -- images and processes -----------------------------------------------------------------------

    def load_images(self, images: list[str]) -> list[str]:
        """Make images of the machine's own engine available on every host (no registry in reach),
        as `kind load docker-image` does. Returns a line for each image the machine's engine does not
        have (the hosts' engines will try to pull it, and say why they could not)."""
        missing = []
        for image in images:
            saved = subprocess.run(["docker", "save", image], capture_output=True, check=False)
            if saved.returncode != 0:
                why = saved.stderr.decode(errors="replace").strip()
                missing.append(f"{image}: not on this machine's engine ({why})")
                continue
            for host in self.all_hosts():
                loaded = subprocess.run(["docker", "-H", host.docker_host, "load"], input=saved.stdout,
                                        capture_output=True, check=False)
                if loaded.returncode != 0:
                    raise HostBedError(f"{host.name}: docker load {image}: "
                                       f"{loaded.stderr.decode(errors='replace').strip()}")
        return missing

    def agent_env(self, index: int, redis_url: str) -> dict[str, str]:
        """What a node agent inside host `index` needs: its engine, its address, and Redis reached
        through the bed's gateway (the control plane's address on the bed)."""
        host = self.host(index)
        parts = urlsplit(redis_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        target = sentinel_target(redis_url)
        ports = [port for _, port in target.sentinels] if target is not None else [parts.port]
        netloc += ",".join(f"{self.gateway}:{port}" for port in ports)
        return {
            "DOCKER_HOST": host.docker_host,
            "GORCHESTER_NODE_ADDRESS": host.address,
            "GORCHESTER_REDIS_URL": urlunsplit(parts._replace(netloc=netloc)),
        }

    def command_in(self, index: int, argv: list[str]) -> list[str]:
        """`argv` run inside host `index`'s network namespace (and only that: files and cgroups are shared)."""
        return ["nsenter", f"--net=/run/netns/{self.host(index).netns}", "--", *argv]

    # -- down -------------------------------------------------------------------------------------

    def destroy(self) -> None:
        """Remove everything of the bed, whatever state it is in (idempotent)."""
        _require_root()
        hosts = self.all_hosts()
        for host in hosts:
            with contextlib.suppress(HostBedError, OSError, subprocess.SubprocessError):
                self.stop_engine(host.index)
        for host in hosts:
            for controller in _cgroup_dirs(host.cgroup_parent):
                for path in sorted(controller.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                    if path.is_dir():
                        with contextlib.suppress(OSError):
                            path.rmdir()
                with contextlib.suppress(OSError):
                    controller.rmdir()
            _run("ip", "netns", "del", host.netns, check=False)
            shutil.rmtree(host.data_dir, ignore_errors=True)
            shutil.rmtree(host.run_dir, ignore_errors=True)
        _run("ip", "netns", "del", self.switch, check=False)  # takes br0, the host ports and the uplink with it
        _run("ip", "link", "del", self.root_link, check=False)
        shutil.rmtree(DATA_ROOT / self.name, ignore_errors=True)
        shutil.rmtree(RUN_ROOT / self.name, ignore_errors=True)


# -- helpers ---------------------------------------------------------------------------------------


def _require_root() -> None:
    if os.geteuid() != 0:
        raise HostBedError("a host bed needs root (network namespaces and one dockerd per host)")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise HostBedError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    return result


def _docker(host: Host, *args: str, timeout: float = 10.0) -> str:
    try:
        result = subprocess.run(["docker", "-H", host.docker_host, *args], capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return ""
    return result.stdout


def _engine_answers(host: Host) -> bool:
    if not host.socket.exists():
        return False
    return bool(_docker(host, "version", "--format", "{{.Server.Version}}", timeout=5).strip())


def _engine_pid(host: Host) -> int | None:
    return _pid_of(host.pidfile, "dockerd")


def _containerd_pid(host: Host) -> int | None:
    return _pid_of(host.containerd_pidfile, "containerd")


def _pid_of(pidfile: Path, command: str) -> int | None:
    """The pid in `pidfile` if a process of `command` has it."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if comm == command else None


def _alive(pid: int) -> bool:
    """Whether `pid` runs: a zombie (dead, not yet reaped by its parent) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    """Whether `pid` is dead within `timeout` (reaped if it is a child of ours)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _cgroup_mounts() -> list[tuple[str, str, str]]:
    """(target, fstype, options) of every cgroup mount of this mount namespace, outermost first."""
    out = _run("findmnt", "-rn", "-o", "TARGET,FSTYPE,FS-OPTIONS", "-R", "/sys/fs/cgroup").stdout
    mounts = []
    for line in out.splitlines():
        target, fstype, options = line.split(" ", 2)
        options = ",".join(part for part in options.split(",") if part != "seclabel")
        mounts.append((target, fstype, options))
    return mounts


def _cgroup_dirs(parent: str) -> list[Path]:
    root = Path("/sys/fs/cgroup")
    return [path for path in root.glob(f"*/{parent}") if path.is_dir()] + (
        [root / parent] if (root / parent).is_dir() else []
    )


def _cgroup_pids(parent: str) -> set[int]:
    pids: set[int] = set()
    for directory in _cgroup_dirs(parent):
        for procs in directory.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in procs.read_text().split())
    return pids


def _free_lan() -> int:
    """A bed index whose LAN (10.231.B.0/24) no interface of this machine uses yet."""
    taken = _run("ip", "-4", "-o", "addr", "show").stdout
    used = {int(line.split("10.231.")[1].split(".")[0]) for line in taken.splitlines() if " 10.231." in line}
    for name in HostBed.existing():
        with contextlib.suppress(HostBedError):
            used.add(HostBed.load(name).lan)
    for index in range(MAX_BEDS):
        if index not in used:
            return index
    raise HostBedError(f"every one of the {MAX_BEDS} bed networks (10.231.0-{MAX_BEDS - 1}.0/24) is in use")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def bed(name: str, hosts: int, images: list[str] | None = None) -> Iterator[HostBed]:
    """A bed for the duration of a block (tests, benchmarks); removed even when the block fails."""
    made = HostBed.create(name, hosts)
    try:
        missing = made.load_images(images or [])
        if missing:
            raise HostBedError("; ".join(missing))
        yield made
    finally:
        made.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.hostbed", description="hosts on one machine, by hand")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="bring up a bed of N hosts")
    up.add_argument("name")
    up.add_argument("hosts", type=int)
    up.add_argument("--image", action="append", default=[], help="an image of this machine's engine to load")
    down = sub.add_parser("down", help="remove a bed (all of them without a name)")
    down.add_argument("name", nargs="?")
    sub.add_parser("status", help="list the beds and their hosts")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            made = HostBed.create(args.name, args.hosts)
            for line in made.load_images(args.image):
                print(line, file=sys.stderr)
            for host in made.all_hosts():
                print(f"{host.name}\t{host.address}\t{host.docker_host}\tnetns {host.netns}")
        elif args.command == "down":
            for name in [args.name] if args.name else HostBed.existing():
                HostBed.load(name).destroy()
        else:
            for name in HostBed.existing():
                made = HostBed.load(name)
                hosts = ", ".join(
                    f"{h.name} {h.address} engine {'up' if _engine_answers(h) else 'down'}" for h in made.all_hosts()
                )
                print(f"{name}: LAN 10.231.{made.lan}.0/24 (control plane {made.gateway}); {hosts}")
    except HostBedError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

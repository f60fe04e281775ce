"""README.md's "Install on three hosts", followed to the letter inside three hosts of the bed.

The wheel is built from a copy of the source, installed into a fresh virtualenv per host, and every
block of the section is run as written (bash for commands, files written as shown), with only the bed's
addresses for 10.0.0.11-13, a directory per host for /opt/gorchester, /etc/gorchester and /etc/redis,
and each node's engine socket (DOCKER_HOST, in its agent-<node>.env) in place of the README's. Every
command runs inside its host's network namespace with nothing of this test's environment but PATH.
Redis is TLS only with an ACL user; the API is HTTPS with an admin token. Then the same commands with a
wrong password, or without TLS, must stop at once saying so.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
import redis

from cli.hostbed import HostBed
from tests.support.install_guide import Guide, for_node, localised, service_settings
from tests.support.multihost import http_get_in, remove_cluster
from tests.support.procs import ROOT, TEST_IMAGE, VENV_BIN, wait_for

CLUSTER = "prod"  # the README's GORCHESTER_CLUSTER
SOURCE_IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", "test-artifacts", "orchestrator-data", ".*_cache"
)
# CAP_DAC_READ_SEARCH (2), CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13): the agent unit's.
AGENT_CAPABILITIES = 1 << 2 | 1 << 10 | 1 << 12 | 1 << 13
CONFIG = f"""\
cluster_name: "{CLUSTER}"
services:
  - service_name: "web"
    image: "{TEST_IMAGE}"
    replicas: 3
    command: ["sh", "-c", "hostname > /www/id && exec httpd -f -p 80 -h /www"]
    network: "app"
    ports:
      - container_port: 80
"""


class Site:
    """Three hosts of the bed as the README's three machines: a directory tree per host, and commands run
    inside the host's namespace with a bare environment."""

    def __init__(self, bed: HostBed, root: Path):
        self.bed = bed
        self.root = root
        self.guide = Guide.read()
        self.addresses = {host.index: host.address for host in bed.all_hosts()}
        self.procs: dict[str, subprocess.Popen] = {}

    def dir(self, index: int) -> Path:
        return self.root / f"host{index}"

    def dirs(self, index: int, etc: str = "etc") -> dict[str, str]:
        base = self.dir(index)
        return {"/opt/gorchester": str(base / "opt/gorchester"), "/etc/gorchester": str(base / etc / "gorchester"),
                "/etc/redis": str(base / etc / "redis"), "wheelhouse": str(self.root / "wheelhouse")}

    def text(self, index: int, text: str, *, node: bool = False, etc: str = "etc") -> str:
        return localised(for_node(text, index) if node else text, self.addresses, self.dirs(index, etc))

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "HOME": str(self.root), "LANG": "C.UTF-8"}

    def argv(self, index: int, script: str, confined: list[str] | None = None) -> list[str]:
        """bash running `script` inside host `index`, under the `confined` command if one is given."""
        return self.bed.command_in(index, [*(confined or []), "bash", "-euo", "pipefail", "-c", script])

    def run(self, index: int, tag: str, *, node: bool = False, timeout: float = 300) -> str:
        """A command block of the README on host `index`; fails the test with its output if it fails."""
        script = self.text(index, self.guide.block(tag), node=node)
        result = subprocess.run(self.argv(index, script), cwd=self.dir(index), env=self.env(), capture_output=True,
                                text=True, timeout=timeout)
        assert result.returncode == 0, f"{tag} on host{index}:\n{script}\n{result.stdout}{result.stderr}"
        return result.stdout

    def write_files(self, index: int, *, etc: str = "etc") -> None:
        """The README's files, those a host of this role holds (per-node files for its own node)."""
        for path, content in self.guide.files().items():
            per_node = "node-2" in path
            target = Path(self.text(index, path, node=per_node, etc=etc))
            if "/etc/redis/" in path and index != 1:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            body = self.text(index, content, node=per_node, etc=etc)
            if per_node:  # the bed's difference: each host's engine has a socket of its own
                body += f"DOCKER_HOST={self.bed.host(index).docker_host}\n"
            target.write_text(body)

    def start(
        self, name: str, index: int, tag: str, *, etc: str = "etc", confined: list[str] | None = None
    ) -> subprocess.Popen:
        """A `run` block of the README, in the background; `confined` is a command it runs under."""
        script = self.text(index, self.guide.block(f"run {tag}"), node=tag == "agent", etc=etc)
        argv = self.argv(index, script, confined)
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(argv, cwd=self.dir(index), env=self.env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture
def site(hostbed: HostBed, tmp_path: Path) -> Iterator[Site]:
    made = Site(hostbed, tmp_path)
    try:
        yield made
    finally:
        made.stop()
        remove_cluster(hostbed, CLUSTER)


def build_and_install(site: Site) -> None:
    source = site.root / "source"
    shutil.copytree(ROOT, source, ignore=SOURCE_IGNORED)
    build = localised(site.guide.block("build"), site.addresses, {"wheelhouse": str(site.root / "wheelhouse")})
    env = {**site.env(), "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}  # "any machine with Python and pip"
    subprocess.run(["bash", "-euo", "pipefail", "-c", build], cwd=source, env=env, check=True, timeout=600,
                   capture_output=True)
    wheels = {path.name.split("-")[0].lower() for path in (site.root / "wheelhouse").glob("*.whl")}
    assert "gorchester" in wheels and "rq" in wheels and "docker" in wheels
    assert not wheels & {"pytest", "playwright", "schemathesis", "hypothesis", "mypy", "ruff"}  # runtime only
    installs = []
    for index in site.addresses:
        site.dir(index).mkdir()
        script = site.text(index, site.guide.block("every-host"))
        installs.append(subprocess.Popen(site.argv(index, script), cwd=site.dir(index), env=site.env(),
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for proc in installs:  # the three hosts install side by side, as three machines would
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output


def copy_to_nodes(site: Site, *paths: str) -> None:
    """What the README copies from 10.0.0.11 to the other hosts, at the same paths."""
    for path in paths:
        origin = Path(site.text(1, path))
        for index in site.addresses:
            if index != 1:
                target = Path(site.text(index, path))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


def fetch(site: Site, index: int, container_id: str, target: str) -> str:
    """GET /id from `target` (a name or an address) with nc, inside a container on host `index`."""
    script = f"printf 'GET /id HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {target} 80 | tail -n 1"
    with contextlib.closing(docker.DockerClient(base_url=site.bed.host(index).docker_host, timeout=30)) as client:
        code, output = client.containers.get(container_id).exec_run(["sh", "-c", script])
    return output.decode(errors="replace").strip() if code == 0 else ""


def resolve(site: Site, index: int, container_id: str, name: str) -> set[str]:
    """The addresses `name` resolves to inside a container on host `index` (busybox nslookup)."""
    with contextlib.closing(docker.DockerClient(base_url=site.bed.host(index).docker_host, timeout=30)) as client:
        code, output = client.containers.get(container_id).exec_run(["nslookup", name])
    text = output.decode(errors="replace")
    assert code == 0, text
    answer = text.partition(f"Name:\t{name}")[2]  # the lines after the server's own address
    return set(re.findall(r"Address:\s*(\d+\.\d+\.\d+\.\d+)", answer))


def prepare(site: Site) -> None:
    """Steps 1-5 of the section: the package on every host, secrets, Redis running on host 1, settings."""
    build_and_install(site)
    site.run(1, "secrets")
    copy_to_nodes(site, "/etc/gorchester/tls/ca.crt", "/etc/gorchester/redis.password")
    for index in site.addresses:
        site.write_files(index)
    (site.dir(1) / "etc/redis").mkdir(parents=True, exist_ok=True)
    site.run(1, "redis-users")
    # Redis as the README configures it (Debian's unit would run it; here the test does).
    conf = site.text(1, "/etc/redis/gorchester.conf")
    data = site.dir(1) / "redis-data"
    data.mkdir()
    log = open(site.root / "redis.log", "ab")  # noqa: SIM115 - owned by the process
    site.procs["redis"] = subprocess.Popen(site.bed.command_in(1, ["redis-server", conf]), cwd=data, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: port_open(site.addresses[1], 6379), timeout=20, what="redis on host 1")


def test_three_hosts_installed_from_the_readme(site: Site) -> None:
    prepare(site)
    site.start("api", 1, "api")
    site.start("scheduler", 1, "scheduler")
    for index in site.addresses:
        # Host 3's agent keeps only the capabilities its systemd unit leaves it (and no new privileges), so
        # the unit's CapabilityBoundingSet is proven enough for Docker's socket, the pod network and DNS.
        site.start(f"agent-{index}", index, "agent", confined=unit_capabilities() if index == 3 else None)
    ca = site.text(1, "/etc/gorchester/tls/ca.crt")
    api = f"https://{site.addresses[1]}:8443"
    wait_for(lambda: httpx.get(f"{api}/v1/health", verify=ca_context(ca), timeout=2).status_code == 200,
             timeout=60, what=f"the API over HTTPS ({site.log('api')[-500:]})")

    # A remote client (on host 2) applies a config with the CA and the admin token, as the README shows.
    (site.dir(2) / "config.yaml").write_text(CONFIG)
    copy_to_nodes(site, "/etc/gorchester/admin.token")  # "with the CA and the admin token"
    output = site.run(2, "client", timeout=180)
    for node in ("node-1", "node-2", "node-3"):
        assert node in output
    token = Path(site.text(1, "/etc/gorchester/admin.token")).read_text().strip()
    tasks = httpx.get(f"{api}/v1/tasks", params={"service": "web"}, verify=ca_context(ca), timeout=5,
                      headers={"Authorization": f"Bearer {token}"}).json()
    assert sorted(task["state"] for task in tasks) == ["running"] * 3
    assert {task["node"] for task in tasks} == {"node-1", "node-2", "node-3"}
    for task in tasks:  # each replica answers at its own host's address, from another host
        [port] = task["ports"]
        index = int(task["node"].rpartition("-")[2])
        assert port["host_ip"] == site.addresses[index]
        assert http_get_in(site.bed, index % 3 + 1, port["host_ip"], port["host_port"]) == "HTTP/1.1 200 OK"
    # Host 3's confined agent keeps its part of the pod network: the cluster DNS answers its replica with
    # all three replicas, routes and firewall rules let that replica reach the others, and them reach it.
    by_node = {task["node"]: task for task in tasks}
    mine = by_node["node-3"]["container_id"]
    assert resolve(site, 3, mine, "web.app") == {task["address"] for task in tasks}
    for task in tasks:
        assert fetch(site, 3, mine, task["address"]) == task["id"].replace(".", "-")
    assert fetch(site, 1, by_node["node-1"]["container_id"], by_node["node-3"]["address"]) == (
        by_node["node-3"]["id"].replace(".", "-"))
    status = Path(f"/proc/{site.procs['agent-3'].pid}/status").read_text()
    kept = {name: int(value, 16) for name, value in re.findall(r"^(CapBnd|CapEff):\s*([0-9a-f]+)$", status, re.M)}
    assert kept == {"CapBnd": AGENT_CAPABILITIES, "CapEff": AGENT_CAPABILITIES}  # it ran confined

    # Redis lets in only the ACL user, only over TLS, and not to administer it.
    password = Path(site.text(1, "/etc/gorchester/redis.password")).read_text().strip()
    address = site.addresses[1]
    with pytest.raises(redis.ConnectionError):
        redis.Redis(address, 6379, username="gorchester", password=password, socket_timeout=5).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(address, 6379, ssl=True, ssl_ca_certs=ca, socket_timeout=5).ping()
    with contextlib.closing(redis.Redis(address, 6379, ssl=True, ssl_ca_certs=ca, username="gorchester",
                                        password=password, socket_timeout=5)) as client:
        assert client.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.config_get("requirepass")


def test_a_wrong_password_or_no_tls_stops_each_process_at_start(site: Site) -> None:
    """The README's run commands, with the settings file spoilt two ways, each exit at once naming the fix
    (a Redis that merely does not answer is waited for instead; tested elsewhere)."""
    prepare(site)

    spoilt = {
        "wrong-password": ("etc-wrong", "refused user 'gorchester' with a password"),
        "no-tls": ("etc-plain", "serves TLS on that port (tls-port); use rediss://"),
    }
    for etc, _ in spoilt.values():
        for index in (1, 3):
            site.write_files(index, etc=etc)
            copy_tree = Path(site.text(index, "/etc/gorchester/tls", etc=etc))
            shutil.copytree(Path(site.text(index, "/etc/gorchester/tls")), copy_tree, dirs_exist_ok=True)
    for index in (1, 3):
        Path(site.text(index, "/etc/gorchester/redis.password", etc="etc-wrong")).write_text("not-the-password\n")
        Path(site.text(index, "/etc/gorchester/redis.password", etc="etc-plain")).write_text(
            Path(site.text(index, "/etc/gorchester/redis.password")).read_text())
        settings = Path(site.text(index, "/etc/gorchester/gorchester.env", etc="etc-plain"))
        settings.write_text(re.sub(r"rediss://(\S+)\?\S*", r"redis://\1", settings.read_text()))
    Path(site.text(1, "/etc/gorchester/admin.token", etc="etc-wrong")).write_text("t" * 32 + "\n")
    Path(site.text(1, "/etc/gorchester/admin.token", etc="etc-plain")).write_text("t" * 32 + "\n")

    started = {}
    for case, (etc, _) in spoilt.items():
        started[f"{case}-api"] = site.start(f"{case}-api", 1, "api", etc=etc)
        started[f"{case}-scheduler"] = site.start(f"{case}-scheduler", 1, "scheduler", etc=etc)
        started[f"{case}-agent"] = site.start(f"{case}-agent", 3, "agent", etc=etc)
    for name, proc in started.items():
        assert proc.wait(timeout=60) != 0, name
        message = spoilt[name.rpartition("-")[0]][1]
        assert message in site.log(name), f"{name}: {site.log(name)[-800:]}"
        assert "Traceback" not in site.log(name) or name.endswith("-api"), site.log(name)[-800:]


def unit_capabilities() -> list[str]:
    """setpriv with the agent unit's CapabilityBoundingSet= and NoNewPrivileges=."""
    service = service_settings(ROOT / "deploy" / "gorchester-agent@.service")
    [kept] = service["CapabilityBoundingSet"]
    assert service["NoNewPrivileges"] == ["yes"]
    caps = ",".join(f"+{cap.lower().removeprefix('cap_')}" for cap in kept.split())
    return ["setpriv", f"--bounding-set=-all,{caps}", "--inh-caps=-all", "--no-new-privs", "--"]


def ca_context(path: str):  # noqa: ANN201 - an ssl.SSLContext
    import ssl

    return ssl.create_default_context(cafile=path)


def port_open(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) == 0

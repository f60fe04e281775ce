"""Requests an attacker or a careless client sends (issue 11's findings), and how they must be answered.

Each must be refused: a 4xx, or 503 while Redis is down. A 2xx means hostile input was accepted; any
other 5xx, no answer, or an answer later than its time limit is a defect of the cluster.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from bench import harness

LIMIT = 2.0  # seconds any answer may take (the API's promise, Redis down or not)
SLOW_BODY_LIMIT = 10.0 + LIMIT  # the API's deadline for a whole body, plus the answer's own limit
SLEEP = ["sleep", "3600"]


def _service(name: str, **fields: object) -> dict[str, object]:
    return {"service_name": name, "image": harness.IMAGE, "replicas": 1, "command": SLEEP, **fields}


def _json(data: object) -> bytes:
    return json.dumps(data).encode()


def _alias_bomb() -> bytes:
    """An ~18 KB YAML document that aliases one 8 KB string 2,500 times: 20 MB once expanded (the
    reproduced attack stored such a body as a 20 MB service)."""
    text = "x" * 8_000
    refs = ", ".join(["*s"] * 2_500)
    body = f'service_name: hbomb\nimage: gorchester/busybox:latest\nreplicas: 1\ncommand: [&s "{text}", {refs}]\n'
    return body.encode()


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}
HUGE = "1" + "0" * 400

PROBES: list[Probe] = [
    Probe("service_name with a newline", "POST", "/v1/services", _json(_service("nl\n")), JSON),
    Probe("image with a newline", "POST", "/v1/services", _json(_service("himg", image=harness.IMAGE + "\n")), JSON),
    Probe("env key with a newline", "POST", "/v1/services", _json(_service("henv", env=["A\nB=1"])), JSON),
    Probe("network with a newline", "POST", "/v1/services", _json(_service("hnet", network="qnet\n")), JSON),
    Probe("extra_hosts with a newline", "POST", "/v1/services",
          _json(_service("hhosts", extra_hosts=["h\n:10.0.0.1"])), JSON),
    Probe("volume name with a newline", "POST", "/v1/services", _json(_service("hvol", volumes=["v\n:/data"])), JSON),
    Probe("cluster_name with a newline", "POST", "/v1/apply",
          _json({"cluster_name": "c\n", "services": [_service("hcl")]}), JSON),
    Probe("memory_bytes 10**400", "POST", "/v1/services",
          b'{"service_name":"hmem","image":"gorchester/busybox:latest","replicas":1,'
          b'"resources":{"cpu_millicores":100,"memory_bytes":' + HUGE.encode() + b"}}", JSON),
    Probe("YAML alias bomb", "POST", "/v1/services", _alias_bomb(), YAML),
    Probe("JSON nested 100,000 deep", "POST", "/v1/apply", b"[" * 100_000, JSON),
    Probe("YAML nested 5,000 deep", "POST", "/v1/apply", b"[" * 5_000, YAML),
    Probe("duplicate key in JSON", "POST", "/v1/services",
          b'{"service_name":"hdup","service_name":"hdup2","image":"gorchester/busybox:latest","replicas":1}', JSON),
    Probe("duplicate key in YAML", "POST", "/v1/services",
          b"service_name: hdupy\nimage: gorchester/busybox:latest\nreplicas: 1\nreplicas: 2\n", YAML),
    Probe("replicas: 0x10 in YAML", "POST", "/v1/services",
          b"service_name: hhex\nimage: gorchester/busybox:latest\nreplicas: 0x10\n", YAML),
    Probe("events since=nan", "GET", "/v1/events?since=nan"),
    Probe("events since=inf", "GET", "/v1/events?since=inf"),
    Probe("events since=-1", "GET", "/v1/events?since=-1"),
    Probe("events since=1e300", "GET", "/v1/events?since=1e300"),
    Probe("events limit=²", "GET", "/v1/events?limit=%C2%B2"),
    Probe("logs tail=²", "GET", "/v1/tasks/web.1/logs?tail=%C2%B2"),
    Probe("http_path with a space", "POST", "/v1/services",
          _json(_service("hhc1", health_check={"http_path": "/a b", "port": 80})), JSON),
    Probe("http_path with CRLF", "POST", "/v1/services",
          _json(_service("hhc2", health_check={"http_path": "/a\r\nX-Injected: 1", "port": 80})), JSON),
    Probe("health interval 10**12", "POST", "/v1/services",
          _json(_service("hhc3", health_check={"port": 80, "interval": 10**12})), JSON),
    Probe("bind mount of /", "POST", "/v1/services", _json(_service("hroot", volumes=["/:/host"])), JSON),
    Probe("bind mount of the Docker socket", "POST", "/v1/services",
          _json(_service("hsock", volumes=["/var/run/docker.sock:/var/run/docker.sock"])), JSON),
    Probe("bind mount of /etc/shadow", "POST", "/v1/services",
          _json(_service("hshadow", volumes=["/etc/shadow:/shadow:ro"])), JSON),
    Probe("network_mode host", "POST", "/v1/services", _json(_service("hhostnet", network_mode="host")), JSON),
    Probe("text/plain body", "POST", "/v1/services",
          b"service_name: hplain\nimage: gorchester/busybox:latest\nreplicas: 1\n", {"Content-Type": "text/plain"}),
    Probe("form body", "POST", "/v1/services", b"service_name=hform&image=x&replicas=1",
          {"Content-Type": "application/x-www-form-urlencoded"}),
    Probe("cross-site Origin", "POST", "/v1/services", _json(_service("horigin")),
          {**JSON, "Origin": "http://evil.example"}),
    Probe("foreign Host (DNS rebinding)", "GET", "/v1/services", None, {"Host": "evil.example"}),
    Probe("negative scale", "POST", "/v1/services/web/scale", _json({"replicas": -1}), JSON),
    Probe("scale 10**400", "POST", "/v1/services/web/scale", b'{"replicas":' + HUGE.encode() + b"}", JSON),
    Probe("control character in a path", "GET", "/v1/services/%0A"),
]
SLOW_BODY = "Content-Length 100, 6 bytes sent"


@dataclass
class Answer:
    probe: str
    status: int | None
    seconds: float
    error: str | None = None

    def defect(self, limit: float = LIMIT) -> str | None:
        """Why this answer is a defect of the cluster, or None when it is a proper refusal."""
        if self.status is None:
            return f"no answer ({self.error})"
        if self.seconds > limit:
            return f"answered {self.status} after {self.seconds:.2f} s (limit {limit:g} s)"
        if 200 <= self.status < 300:
            return f"accepted ({self.status})"
        if self.status >= 500 and self.status != 503:
            return f"server error {self.status}"
        if not 400 <= self.status < 600:
            return f"unexpected status {self.status}"
        return None


def send(client: httpx.Client, api: str, probe: Probe) -> Answer:
    started = time.monotonic()
    try:
        response = client.request(probe.method, api + probe.path, content=probe.body, headers=probe.headers,
                                  timeout=LIMIT + 3)
    except httpx.HTTPError as exc:
        return Answer(probe.name, None, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
    return Answer(probe.name, response.status_code, time.monotonic() - started)


def send_slow_body(api: str) -> Answer:
    """A body that never arrives whole: the API must give up within its body deadline."""
    parts = urlsplit(api)
    started = time.monotonic()
    head = (
        f"POST /v1/services HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=SLOW_BODY_LIMIT + 3) as sock:
            sock.sendall(head + b'{"a":1')
            reply = sock.recv(4096)
    except OSError as exc:
        return Answer(SLOW_BODY, None, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
    seconds = time.monotonic() - started
    status_line = reply.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        return Answer(SLOW_BODY, None, seconds, f"connection closed without an answer ({reply[:60]!r})")
    return Answer(SLOW_BODY, int(status_line[1]), seconds)

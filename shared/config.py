"""The configuration format of the seed README as pydantic models, and a loader that reports every error.

Rules live on the models; `load_config` turns pydantic's errors into `path: rule` lines such as
`services[1].resources.memory_bytes: must be at least 16777216`.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from shared import defaults

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
HOSTNAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]{0,253}[A-Za-z0-9])?$")
IMAGE_REF = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$", re.IGNORECASE)


class Strict(BaseModel):
    """Unknown fields are errors: a typo in a config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class RestartPolicy(StrEnum):
    NO = "no"
    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    UNLESS_STOPPED = "unless-stopped"


class NetworkMode(StrEnum):
    BRIDGE = "bridge"
    HOST = "host"
    NONE = "none"


class HealthCheckType(StrEnum):
    HTTP = "http"
    TCP = "tcp"
    COMMAND = "command"


class PortMapping(Strict):
    host_port: StrictInt = Field(0, ge=0, le=65535, description="0, null or absent: the engine picks a free port")
    container_port: StrictInt = Field(ge=1, le=65535)
    protocol: Protocol = Protocol.TCP

    @field_validator("host_port", mode="before")
    @classmethod
    def _unset_port(cls, value: object) -> object:
        """`host_port:` with no value (YAML null) means "not specified", which the seed makes random."""
        return 0 if value is None else value


class Resources(Strict):
    cpu_millicores: StrictInt = Field(ge=defaults.MIN_CPU_MILLICORES)
    memory_bytes: StrictInt = Field(ge=defaults.MIN_MEMORY_BYTES)


class ScalePolicy(Strict):
    min_replicas: StrictInt = Field(1, ge=1)
    max_replicas: StrictInt | None = Field(None, ge=1, description="defaults to the service's replicas")
    target_cpu: StrictFloat | None = Field(None, ge=defaults.MIN_TARGET_CPU, le=100.0)
    target_memory: StrictFloat | None = Field(None, ge=defaults.MIN_TARGET_MEMORY, le=100.0)
    cooldown_seconds: StrictInt = Field(defaults.DEFAULT_COOLDOWN_SECONDS, ge=defaults.MIN_COOLDOWN_SECONDS)

    @model_validator(mode="after")
    def _bounds(self) -> ScalePolicy:
        if self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must not exceed max_replicas ({self.max_replicas})")
        return self

    def effective_target_cpu(self) -> float | None:
        """With no target named at all, scale on CPU at the default target."""
        if self.target_cpu is None and self.target_memory is None:
            return defaults.DEFAULT_TARGET_CPU
        return self.target_cpu


class HealthCheck(Strict):
    type: HealthCheckType | None = Field(None, description="inferred from the other fields when absent")
    http_path: str | None = None
    port: StrictInt | None = Field(None, ge=1, le=65535)
    command: list[str] | None = Field(None, min_length=1)
    interval: StrictInt = Field(defaults.DEFAULT_HEALTH_INTERVAL, ge=1)
    timeout: StrictInt = Field(defaults.DEFAULT_HEALTH_TIMEOUT, ge=0, description="0: as long as the interval")
    retries: StrictInt = Field(defaults.DEFAULT_HEALTH_RETRIES, ge=0)

    @field_validator("http_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @model_validator(mode="after")
    def _fields_for_type(self) -> HealthCheck:
        kind = self.type or self.inferred_type()
        if kind is None:
            raise ValueError("type is required (http, tcp or command) when it cannot be inferred")
        if kind is HealthCheckType.HTTP:
            _require(self, "http_path", "port", kind=kind)
        elif kind is HealthCheckType.TCP:
            _require(self, "port", kind=kind)
        else:
            _require(self, "command", kind=kind)
        return self

    def inferred_type(self) -> HealthCheckType | None:
        if self.type is not None:
            return self.type
        if self.command:
            return HealthCheckType.COMMAND
        if self.http_path:
            return HealthCheckType.HTTP
        if self.port:
            return HealthCheckType.TCP
        return None

    def effective_timeout(self) -> int:
        return self.timeout or self.interval


def _require(check: HealthCheck, *names: str, kind: HealthCheckType) -> None:
    missing = [name for name in names if getattr(check, name) is None]
    if missing:
        raise ValueError(f"{', '.join(missing)} required for type {kind.value}")


class VolumeMount(BaseModel):
    """One parsed `volumes` entry: a bind mount (absolute source) or a named volume."""

    source: str
    target: str
    read_only: bool
    named: bool


def parse_volume(text: str) -> VolumeMount:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"{text!r}: must be SOURCE:TARGET or SOURCE:TARGET:ro")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ValueError(f"{text!r}: mode must be ro or rw, got {mode!r}")
    if not target.startswith("/"):
        raise ValueError(f"{text!r}: container path must be absolute")
    named = not source.startswith("/")
    if named and not VOLUME_NAME.match(source):
        raise ValueError(f"{text!r}: source must be an absolute host path or a volume name")
    return VolumeMount(source=source, target=target, read_only=mode == "ro", named=named)


class ServiceSpec(Strict):
    service_name: str
    image: str = Field(min_length=1)
    replicas: StrictInt = Field(ge=0, le=defaults.MAX_REPLICAS)
    ports: list[PortMapping] = Field(default_factory=list)
    env: list[str] = Field(default_factory=list)
    command: list[str] | None = Field(None, min_length=1)
    volumes: list[str] = Field(default_factory=list)
    network: str | None = Field(
        None,
        description="a user-defined bridge network to join (made when missing), where the service name resolves; "
        "unset: Docker's default bridge, no discovery",
    )
    network_mode: NetworkMode = NetworkMode.BRIDGE
    dns: list[str] = Field(default_factory=list)
    extra_hosts: list[str] = Field(default_factory=list)
    restart_policy: RestartPolicy = RestartPolicy.NO
    resources: Resources | None = None
    scale_policy: ScalePolicy | None = None
    health_check: HealthCheck | None = None

    @field_validator("restart_policy", mode="before")
    @classmethod
    def _restart_no(cls, value: Any) -> Any:
        """YAML 1.1 reads an unquoted `restart_policy: no` (the seed's default value) as false."""
        return RestartPolicy.NO if value is False else value

    @field_validator("service_name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not DNS_LABEL.match(value):
            raise ValueError(
                "must be a DNS label: 1-63 lowercase letters, digits or '-', not starting or ending with '-'"
            )
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not IMAGE_REF.match(value):
            raise ValueError("must be an image reference such as nginx:alpine or registry/repo:tag")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, values: list[str]) -> list[str]:
        seen: set[str] = set()
        for item in values:
            key, sep, _ = item.partition("=")
            if not sep or not ENV_KEY.match(key):
                raise ValueError(f"{item!r}: must be KEY=value with KEY of letters, digits, '_', '.' or '-'")
            if key in seen:
                raise ValueError(f"{key!r}: set more than once")
            seen.add(key)
        return values

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, values: list[str]) -> list[str]:
        targets: set[str] = set()
        for item in values:
            mount = parse_volume(item)
            if mount.target in targets:
                raise ValueError(f"{mount.target!r}: mounted more than once")
            targets.add(mount.target)
        return values

    @field_validator("network")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value is not None and not VOLUME_NAME.match(value):
            raise ValueError("must be a Docker network name (letters, digits, '_', '.', '-')")
        return value

    @field_validator("dns")
    @classmethod
    def _dns(cls, values: list[str]) -> list[str]:
        for item in values:
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(f"{item!r}: must be an IP address") from None
        return values

    @field_validator("extra_hosts")
    @classmethod
    def _extra_hosts(cls, values: list[str]) -> list[str]:
        for item in values:
            host, sep, target = item.partition(":")
            if not sep or not HOSTNAME.match(host):
                raise ValueError(f"{item!r}: must be HOST:IP or HOST:host-gateway")
            if target != "host-gateway":
                try:
                    ipaddress.ip_address(target)
                except ValueError:
                    raise ValueError(f"{item!r}: {target!r} is neither an IP address nor host-gateway") from None
        return values

    @model_validator(mode="after")
    def _cross_field(self) -> ServiceSpec:
        published: set[tuple[int, str]] = set()
        exposed: set[tuple[int, str]] = set()
        for port in self.ports:
            if port.host_port and (port.host_port, port.protocol) in published:
                raise ValueError(f"ports: host_port {port.host_port}/{port.protocol.value} is published twice")
            if (port.container_port, port.protocol) in exposed:
                raise ValueError(f"ports: container_port {port.container_port}/{port.protocol.value} is mapped twice")
            published.add((port.host_port, port.protocol))
            exposed.add((port.container_port, port.protocol))
        if self.network_mode is not NetworkMode.BRIDGE:
            if self.ports:
                raise ValueError(f"ports: cannot be published with network_mode {self.network_mode.value}")
            if self.network is not None:
                raise ValueError(f"network: cannot be set with network_mode {self.network_mode.value}")
        policy = self.scale_policy
        if policy is not None:
            high = policy.max_replicas if policy.max_replicas is not None else max(self.replicas, policy.min_replicas)
            if not policy.min_replicas <= self.replicas <= high:
                raise ValueError(
                    f"replicas: must be within scale_policy [min_replicas {policy.min_replicas}, "
                    f"max_replicas {high}], got {self.replicas}"
                )
        return self

    def network_name(self) -> str:
        """The Docker network the replicas are on: the user-defined one, else Docker's built-in
        `bridge`, `host` or `none` (as `docker inspect` names them)."""
        return self.network or self.network_mode.value

    def max_replicas(self) -> int:
        """The autoscaler's ceiling: scale_policy.max_replicas, or the declared replicas."""
        policy = self.scale_policy
        if policy is None:
            return self.replicas
        return policy.max_replicas if policy.max_replicas is not None else max(self.replicas, policy.min_replicas)

    def cpu_request(self) -> int:
        return self.resources.cpu_millicores if self.resources else 0

    def memory_request(self) -> int:
        return self.resources.memory_bytes if self.resources else 0

    def template(self) -> dict[str, Any]:
        """What a container is made from: every field but the replica count and the autoscaling policy."""
        return self.model_dump(mode="json", exclude={"replicas", "scale_policy"})


class Config(Strict):
    env: Literal["local", "dev", "prod", "development", "production"] = defaults.DEFAULT_ENV  # type: ignore[assignment]
    listen_addr: str = defaults.DEFAULT_LISTEN_ADDR
    data_dir: str = defaults.DEFAULT_DATA_DIR
    cluster_name: str = defaults.DEFAULT_CLUSTER_NAME
    services: list[ServiceSpec]

    @field_validator("listen_addr")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT or :PORT with a port from 1 to 65535")
        return value

    @field_validator("cluster_name")
    @classmethod
    def _cluster(cls, value: str) -> str:
        if not DNS_LABEL.match(value):
            raise ValueError("must be a DNS label: 1-63 lowercase letters, digits or '-'")
        return value

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        errors = duplicate_names([service.service_name for service in self.services])
        if errors:
            raise ValueError(errors[0])
        return self

    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.listen_addr.rpartition(":")
        return host or "0.0.0.0", int(port)


class ConfigError(Exception):
    """A document that parsed but broke rules; `errors` holds every `path: rule` line."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


class ConfigSyntaxError(Exception):
    """A document that is not YAML/JSON at all, or not a mapping."""


_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown field",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "bool_type": "must be true or false",
}


def _rule(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind in ("enum", "literal_error"):
        return f"must be one of {ctx.get('expected', '')}".replace("'", "")
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return _MESSAGES.get(kind, error["msg"][:1].lower() + error["msg"][1:])


def format_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def format_errors(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    """One `path: rule` line per error.

    A cross-field rule names the field it is about as `field: ...`; that field joins the path.
    """
    lines = []
    for error in exc.errors():
        loc = prefix + tuple(error["loc"])
        rule = _rule(error)
        field, sep, rest = rule.partition(": ")
        if error["type"] == "value_error" and sep and field.isidentifier():
            loc, rule = loc + (field,), rest
        path = format_path(loc)
        lines.append(f"{path}: {rule}" if path else rule)
    return lines


def duplicate_names(names: list[Any]) -> list[str]:
    seen: dict[Any, int] = {}
    errors = []
    for index, name in enumerate(names):
        if not isinstance(name, str):  # not a name (possibly unhashable); its own error says so
            continue
        if name in seen:
            errors.append(f"services[{index}].service_name: {name!r} is already used by services[{seen[name]}]")
        seen.setdefault(name, index)
    return errors


def parse_document(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigSyntaxError(f"not valid YAML: {exc}") from None


def validate_config(data: Any) -> Config:
    """A whole config, or a single service document like the seed's Examples 1-3 wrapped into one."""
    if not isinstance(data, dict):
        raise ConfigSyntaxError("the document must be a mapping with a `services` list or a single service")
    if "service_name" in data and "services" not in data:
        data = {"services": [data]}
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        errors = format_errors(exc)
        services = data.get("services")
        if isinstance(services, list):
            names = [item.get("service_name") if isinstance(item, dict) else None for item in services]
            errors += [line for line in duplicate_names(names) if line not in errors]
        raise ConfigError(errors) from None


def validate_service(data: Any, prefix: tuple[Any, ...] = ()) -> ServiceSpec:
    try:
        return ServiceSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, prefix)) from None


def load_config(text: str) -> Config:
    return validate_config(parse_document(text))

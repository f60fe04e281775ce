"""The configuration format of the seed README as pydantic models, and a loader that reports every error.

Rules live on the models; `load_config` turns pydantic's errors into `path: rule` lines such as
`services[1].resources.memory_bytes: must be at least 16777216`.

Every string has a whole-string pattern and a length bound, every list and number an upper bound,
all as pydantic constraints, so the OpenAPI document (generated from these models) shows what is
enforced. Patterns are in the subset where Rust's regex (pydantic-core's engine, whose `$` is the
end of the text) and ECMA-262 (JSON Schema's) agree; Python's `re` checks the same patterns only
with `fullmatch`, as its `$` also matches before a final newline.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from shared import defaults
from shared.constraints import CONSTRAINT, CONSTRAINT_RULE, Constraint
from shared.constraints import parse as parse_constraint
from shared.document import ConfigSyntaxError, load_yaml

# Characters no field may hold: C0 controls, DEL, C1 controls and the Unicode line and paragraph
# separators; they would reach Redis keys, RQ job ids, Docker object names, logs and terminals.
# Items of `command` and `health_check.command` and env values may hold TAB and LF (scripts, PEM
# keys): they go to the container as they are, never to a shell of ours. NUL is refused everywhere.
CONTROL = r"\x00-\x1F\x7F-\x9F\u2028\u2029"
CONTROL_BUT_TAB_LF = r"\x00-\x08\x0B-\x1F\x7F-\x9F\u2028\u2029"

# Bounds of lengths and counts (numbers' bounds are in shared/defaults.py).
MAX_NAME_LENGTH = 64  # Docker network and volume names
MAX_IMAGE_LENGTH = 512
MAX_PATH_LENGTH = 4096  # data_dir, host and container paths (Linux's PATH_MAX)
MAX_ITEM_LENGTH = 32 * 1024  # one env entry, one command argument
MAX_HTTP_PATH_LENGTH = 2048
MAX_ENV_ITEMS = 1000
MAX_COMMAND_ITEMS = 1000
MAX_PORTS = 1000
MAX_VOLUMES = 100
MAX_DNS_SERVERS = 16
MAX_EXTRA_HOSTS = 1000
MAX_CONSTRAINTS = 32
MAX_SERVICES = 1000
MAX_SPEC_BYTES = 256 * 1024  # one service's spec as stored (JSON)
MAX_SERVICES_BYTES = 1024 * 1024  # every service of one config as stored (JSON)

_HOSTNAME = r"[A-Za-z0-9]([-A-Za-z0-9.]{0,251}[A-Za-z0-9])?"  # at most 253, as DNS allows
_IP_TEXT = r"[0-9A-Fa-f:.]{2,45}"  # what an IPv4 or IPv6 address is written with; ipaddress decides
_ENV_KEY = r"[A-Za-z_][A-Za-z0-9_.-]*"
_DOCKER_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_PCHAR = r"[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2}"  # RFC 3986 pchar
# A path segment that is not `.` or `..` and holds no `/`, `:` or control character.
_SEGMENT = rf"[^/:.{CONTROL}][^/:{CONTROL}]*|\.[^/:.{CONTROL}][^/:{CONTROL}]*|\.\.[^/:{CONTROL}]+"
_PATH = rf"(/({_SEGMENT}))+"  # absolute and normalised: no `.`, `..` or empty segment, no trailing `/`

TEXT = rf"^[^{CONTROL}]*$"
SCRIPT_TEXT = rf"^[^{CONTROL_BUT_TAB_LF}]*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
IMAGE_REF = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"
DOCKER_NAME = rf"^{_DOCKER_NAME}$"
ENV_ITEM = rf"^{_ENV_KEY}=[^{CONTROL_BUT_TAB_LF}]*$"
VOLUME = rf"^(/|{_PATH}|{_DOCKER_NAME}):{_PATH}(:(ro|rw))?$"
IP_ADDRESS = rf"^{_IP_TEXT}$"
EXTRA_HOST = rf"^{_HOSTNAME}:({_IP_TEXT}|host-gateway)$"
HTTP_PATH = rf"^/({_PCHAR}|/)*(\?({_PCHAR}|[/?])*)?$"  # origin-form: path, optional query
LISTEN_ADDR = rf"^({_HOSTNAME}|\[{_IP_TEXT}\])?:[0-9]{{1,5}}$"

ENV_RULE = "must be KEY=value with KEY of letters, digits, '_', '.' or '-'"
LISTEN_RULE = "must be HOST:PORT or :PORT with a port from 1 to 65535"
CONTROL_RULE = "must not contain control characters"
_PATTERN_RULES = {
    DNS_LABEL: "must be a DNS label: 1-63 lowercase letters, digits or '-', not starting or ending with '-'",
    IMAGE_REF: "must be an image reference such as nginx:alpine or registry/repo:tag",
    DOCKER_NAME: "must be a Docker network name (letters, digits, '_', '.', '-')",
    ENV_ITEM: ENV_RULE,
    VOLUME: "must be SOURCE:TARGET[:ro|rw] with normalised absolute paths or a volume name as SOURCE",
    IP_ADDRESS: "must be an IP address",
    EXTRA_HOST: "must be HOST:IP or HOST:host-gateway",
    HTTP_PATH: "must be a URL path and optional query of RFC 3986 characters (percent-encode others)",
    LISTEN_ADDR: LISTEN_RULE,
    CONSTRAINT: CONSTRAINT_RULE,
}

# For the list rules, which check items part by part (always with fullmatch).
_CONTROL_CHARACTER = re.compile(f"[{CONTROL}]")
_SCRIPT_CONTROL_CHARACTER = re.compile(f"[{CONTROL_BUT_TAB_LF}]")
_ENV_KEY_RE = re.compile(_ENV_KEY)
_DOCKER_NAME_RE = re.compile(_DOCKER_NAME)
_IP_TEXT_RE = re.compile(_IP_TEXT)
_HOSTNAME_RE = re.compile(_HOSTNAME)


def _text(pattern: str, max_length: int | None, min_length: int | None = None) -> StringConstraints:
    """Strings only (no bytes, no numbers), whole-string pattern, bounded length."""
    return StringConstraints(strict=True, pattern=pattern, max_length=max_length, min_length=min_length)


DnsLabel = Annotated[str, _text(DNS_LABEL, None)]  # 1-63 by the pattern, which says so in its message
ImageRef = Annotated[str, _text(IMAGE_REF, MAX_IMAGE_LENGTH, min_length=1)]
NetworkName = Annotated[str, _text(DOCKER_NAME, MAX_NAME_LENGTH)]
EnvItem = Annotated[str, _text(ENV_ITEM, MAX_ITEM_LENGTH)]
Argument = Annotated[str, _text(SCRIPT_TEXT, MAX_ITEM_LENGTH)]
VolumeItem = Annotated[str, _text(VOLUME, 2 * MAX_PATH_LENGTH + 3)]
IpAddress = Annotated[str, _text(IP_ADDRESS, 45)]
ExtraHost = Annotated[str, _text(EXTRA_HOST, 253 + 1 + 45)]
HttpPath = Annotated[str, _text(HTTP_PATH, MAX_HTTP_PATH_LENGTH)]
ListenAddr = Annotated[str, _text(LISTEN_ADDR, 253 + 1 + 5)]
ConstraintText = Annotated[str, _text(CONSTRAINT, 400)]
PathText = Annotated[str, _text(TEXT, MAX_PATH_LENGTH)]


class Strict(BaseModel):
    """Unknown fields are errors: a typo in a config must not be silently ignored."""

    # rust-regex is pydantic's default; named because the patterns rely on its `$` (end of text).
    model_config = ConfigDict(extra="forbid", frozen=True, regex_engine="rust-regex")


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


class FailureAction(StrEnum):
    """What a failed rolling update does (Swarm's `failure_action`)."""

    ROLLBACK = "rollback"  # back to the previous spec, with the same controls
    PAUSE = "pause"  # stop replacing replicas until `gorchester rollout resume`
    CONTINUE = "continue"  # go on with the next batch; the failed replica restarts by its policy


class ServiceMode(StrEnum):
    REPLICATED = "replicated"  # `replicas` replicas, placed where they fit
    GLOBAL = "global"  # one replica on every ready node its placement constraints allow (Swarm's global)


class UpdateOrder(StrEnum):
    START_FIRST = "start-first"  # the new container starts beside the old one, which stops once it is ready
    STOP_FIRST = "stop-first"  # the old container stops before the new one starts


class HealthCheckType(StrEnum):
    HTTP = "http"
    TCP = "tcp"
    COMMAND = "command"


# What a request may send for host_port (null is read as 0, see PortMapping._unset_port); the stored
# and returned value is always an integer.
_HOST_PORT_REQUEST = {
    "anyOf": [{"type": "integer", "minimum": 0, "maximum": 65535}, {"type": "null"}],
    "default": 0,
    "description": "0, null or absent: the engine picks a free port",
}


class PortMapping(Strict):
    host_port: Annotated[StrictInt, WithJsonSchema(_HOST_PORT_REQUEST, mode="validation")] = Field(
        0, ge=0, le=65535, description="0, null or absent: the engine picks a free port"
    )
    container_port: StrictInt = Field(ge=1, le=65535)
    protocol: Protocol = Protocol.TCP

    @field_validator("host_port", mode="before")
    @classmethod
    def _unset_port(cls, value: object) -> object:
        """`host_port:` with no value (YAML null) means "not specified", which the seed makes random."""
        return 0 if value is None else value


class Resources(Strict):
    cpu_millicores: StrictInt = Field(ge=defaults.MIN_CPU_MILLICORES, le=defaults.MAX_CPU_MILLICORES)
    memory_bytes: StrictInt = Field(ge=defaults.MIN_MEMORY_BYTES, le=defaults.MAX_MEMORY_BYTES)


class ScalePolicy(Strict):
    min_replicas: StrictInt = Field(1, ge=1, le=defaults.MAX_REPLICAS)
    max_replicas: StrictInt | None = Field(
        None, ge=1, le=defaults.MAX_REPLICAS, description="defaults to the service's replicas"
    )
    target_cpu: StrictFloat | None = Field(None, ge=defaults.MIN_TARGET_CPU, le=100.0, allow_inf_nan=False)
    target_memory: StrictFloat | None = Field(None, ge=defaults.MIN_TARGET_MEMORY, le=100.0, allow_inf_nan=False)
    cooldown_seconds: StrictInt = Field(
        defaults.DEFAULT_COOLDOWN_SECONDS, ge=defaults.MIN_COOLDOWN_SECONDS, le=defaults.MAX_COOLDOWN_SECONDS
    )

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


class Placement(Strict):
    """Where a service's replicas may go (Swarm's `placement`): every constraint must hold for a node,
    and a node takes at most `max_replicas_per_node` of them."""

    constraints: list[ConstraintText] = Field(
        default_factory=list, max_length=MAX_CONSTRAINTS,
        description="node.id, node.address or node.labels.KEY, then == or !=, then a value",
    )
    max_replicas_per_node: StrictInt | None = Field(None, ge=1, le=defaults.MAX_REPLICAS)

    def parsed(self) -> tuple[Constraint, ...]:
        return tuple(parse_constraint(text) for text in self.constraints)


class UpdateConfig(Strict):
    """How a template change is rolled out, and rolled back (Swarm's `update_config`). Absent: one
    replica at a time, start-first where no fixed host_port stops it, rolled back on failure."""

    parallelism: StrictInt = Field(
        defaults.DEFAULT_UPDATE_PARALLELISM, ge=0, le=defaults.MAX_REPLICAS,
        description="replicas replaced at once; 0: all at once",
    )
    delay: StrictInt = Field(0, ge=0, le=defaults.MAX_UPDATE_SECONDS, description="seconds between batches")
    failure_action: FailureAction = FailureAction.ROLLBACK
    monitor: StrictInt = Field(
        0, ge=0, le=defaults.MAX_UPDATE_SECONDS,
        description="seconds a new replica must have run (and be ready) to count as updated; "
        "a failure before the update completes fails it",
    )
    order: UpdateOrder | None = Field(
        None, description="absent: start-first, or stop-first when the service publishes a fixed host_port"
    )


class HealthCheck(Strict):
    type: HealthCheckType | None = Field(None, description="inferred from the other fields when absent")
    http_path: HttpPath | None = None
    port: StrictInt | None = Field(None, ge=1, le=65535)
    command: list[Argument] | None = Field(None, min_length=1, max_length=MAX_COMMAND_ITEMS)
    interval: StrictInt = Field(defaults.DEFAULT_HEALTH_INTERVAL, ge=1, le=defaults.MAX_HEALTH_SECONDS)
    timeout: StrictInt = Field(
        defaults.DEFAULT_HEALTH_TIMEOUT, ge=0, le=defaults.MAX_HEALTH_SECONDS, description="0: as long as the interval"
    )
    retries: StrictInt = Field(defaults.DEFAULT_HEALTH_RETRIES, ge=0, le=defaults.MAX_HEALTH_RETRIES)

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
    if target == "/":
        raise ValueError(f"{text!r}: container path must not be /")
    _check_path(text, target, "container path")
    named = not source.startswith("/")
    if named and not _DOCKER_NAME_RE.fullmatch(source):
        raise ValueError(f"{text!r}: source must be an absolute host path or a volume name")
    if not named:
        _check_path(text, source, "host path")
    return VolumeMount(source=source, target=target, read_only=mode == "ro", named=named)


def _check_path(text: str, path: str, what: str) -> None:
    """Normalised, so that host-path rules can compare paths segment by segment."""
    if len(path) > MAX_PATH_LENGTH:
        raise ValueError(f"{text[:64]!r}...: {what} must be at most {MAX_PATH_LENGTH} characters")
    if path != "/" and any(part in ("", ".", "..") for part in path[1:].split("/")):
        raise ValueError(f"{text!r}: {what} must be normalised (no '.', '..' or empty segment, no trailing '/')")


def _has_control(text: str) -> bool:
    return _CONTROL_CHARACTER.search(text) is not None


def _script_has_control(text: str) -> bool:
    return _SCRIPT_CONTROL_CHARACTER.search(text) is not None


def _env_has_control(text: str) -> bool:
    key, _, value = text.partition("=")
    return _has_control(key) or _script_has_control(value)


def _judged_items(values: Any, limit: int, has_control: Callable[[str], bool] = _has_control) -> list[str]:
    """The items a list's own rule judges: strings without control characters, and only when the
    list is within its length limit. The rest is left to the item and list constraints, whose
    errors name the item (`env[3]: must not contain control characters`)."""
    if not isinstance(values, list) or len(values) > limit:
        return []
    return [item for item in values if isinstance(item, str) and not has_control(item)]


def _is_ip_address(text: str) -> bool:
    if not _IP_TEXT_RE.fullmatch(text):
        return False  # ipaddress also takes IPv6 zones (`fe80::1%eth0`), which Docker does not
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class ServiceSpec(Strict):
    service_name: DnsLabel
    image: ImageRef
    replicas: StrictInt | None = Field(
        None, ge=0, le=defaults.MAX_REPLICAS, exclude_if=lambda value: value is None,  # absent: a global service
        description="required with mode replicated; not allowed with global",
    )
    ports: list[PortMapping] = Field(default_factory=list, max_length=MAX_PORTS)
    env: list[EnvItem] = Field(default_factory=list, max_length=MAX_ENV_ITEMS)
    command: list[Argument] | None = Field(None, min_length=1, max_length=MAX_COMMAND_ITEMS)
    volumes: list[VolumeItem] = Field(default_factory=list, max_length=MAX_VOLUMES)
    network: NetworkName | None = Field(
        None,
        description="a user-defined bridge network to join (made when missing), where the service name resolves; "
        "unset: Docker's default bridge, no discovery",
    )
    network_mode: NetworkMode = NetworkMode.BRIDGE
    dns: list[IpAddress] = Field(default_factory=list, max_length=MAX_DNS_SERVERS)
    extra_hosts: list[ExtraHost] = Field(default_factory=list, max_length=MAX_EXTRA_HOSTS)
    restart_policy: RestartPolicy = RestartPolicy.NO
    resources: Resources | None = None
    scale_policy: ScalePolicy | None = None
    health_check: HealthCheck | None = None
    placement: Placement | None = None
    update_config: UpdateConfig | None = None
    mode: ServiceMode = ServiceMode.REPLICATED

    # The list rules below run before the item constraints (same patterns, checked with fullmatch),
    # to say which entry breaks which part of the rule.

    @field_validator("replicas", mode="before")
    @classmethod
    def _replicas_given(cls, value: Any) -> Any:
        if value is None:  # absent is the default (a global service's); null is not a count
            raise ValueError("must be an integer")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, values: Any) -> Any:
        seen: set[str] = set()
        for item in _judged_items(values, MAX_ENV_ITEMS, _env_has_control):
            key, sep, _ = item.partition("=")
            if not sep or not _ENV_KEY_RE.fullmatch(key):
                raise ValueError(f"{item!r}: {ENV_RULE}")
            if key in seen:
                raise ValueError(f"{key!r}: set more than once")
            seen.add(key)
        return values

    @field_validator("volumes", mode="before")
    @classmethod
    def _volumes(cls, values: Any) -> Any:
        targets: set[str] = set()
        for item in _judged_items(values, MAX_VOLUMES):
            mount = parse_volume(item)
            if mount.target in targets:
                raise ValueError(f"{mount.target!r}: mounted more than once")
            targets.add(mount.target)
        return values

    @field_validator("dns", mode="before")
    @classmethod
    def _dns(cls, values: Any) -> Any:
        for item in _judged_items(values, MAX_DNS_SERVERS):
            if not _is_ip_address(item):
                raise ValueError(f"{item!r}: must be an IP address")
        return values

    @field_validator("extra_hosts", mode="before")
    @classmethod
    def _extra_hosts(cls, values: Any) -> Any:
        for item in _judged_items(values, MAX_EXTRA_HOSTS):
            host, sep, target = item.partition(":")
            if not sep or not _HOSTNAME_RE.fullmatch(host):
                raise ValueError(f"{item!r}: must be HOST:IP or HOST:host-gateway")
            if target != "host-gateway" and not _is_ip_address(target):
                raise ValueError(f"{item!r}: {target!r} is neither an IP address nor host-gateway")
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
        if self.mode is ServiceMode.GLOBAL:
            if self.replicas is not None:
                raise ValueError("replicas: not allowed with mode global (one replica runs on every matching node)")
            if self.scale_policy is not None:
                raise ValueError("scale_policy: not allowed with mode global (its replicas follow its nodes)")
        elif self.replicas is None:
            raise ValueError("replicas: is required")
        update = self.update_config
        if update is not None and update.order is UpdateOrder.START_FIRST and any(p.host_port for p in self.ports):
            raise ValueError(
                "update_config.order: start-first cannot be used with a fixed host_port "
                "(the new container would need the port the old one holds)"
            )
        policy = self.scale_policy
        if policy is not None and self.replicas is not None:
            high = policy.max_replicas if policy.max_replicas is not None else max(self.replicas, policy.min_replicas)
            if not policy.min_replicas <= self.replicas <= high:
                raise ValueError(
                    f"replicas: must be within scale_policy [min_replicas {policy.min_replicas}, "
                    f"max_replicas {high}], got {self.replicas}"
                )
        return self

    @model_validator(mode="after")
    def _stored_size(self) -> ServiceSpec:
        size = len(self.__pydantic_serializer__.to_json(self))
        if size > MAX_SPEC_BYTES:
            raise ValueError(
                f"service {self.service_name!r}: must be at most {MAX_SPEC_BYTES} bytes as JSON, got {size}"
            )
        return self

    def network_name(self) -> str:
        """The Docker network the replicas are on: the user-defined one, else Docker's built-in
        `bridge`, `host` or `none` (as `docker inspect` names them)."""
        return self.network or self.network_mode.value

    @property
    def is_global(self) -> bool:
        return self.mode is ServiceMode.GLOBAL

    @property
    def count(self) -> int:
        """The replicas a replicated service declares; a global one's follow its nodes (the scheduler's
        pins), so it declares none: 0."""
        return self.replicas or 0

    def max_replicas(self) -> int:
        """The autoscaler's ceiling: scale_policy.max_replicas, or the declared replicas."""
        policy = self.scale_policy
        if policy is None:
            return self.count
        return policy.max_replicas if policy.max_replicas is not None else max(self.count, policy.min_replicas)

    def cpu_request(self) -> int:
        return self.resources.cpu_millicores if self.resources else 0

    def memory_request(self) -> int:
        return self.resources.memory_bytes if self.resources else 0

    def update_controls(self) -> UpdateConfig:
        """The rollout controls, the defaults filled in (order resolved by the published ports).

        Remembered per spec object, as template_hash is: a pass asks once per replica."""
        cached = _CONTROLS.get(id(self))
        if cached is not None and cached[0] is self:
            return cached[1]
        update = self.update_config or UpdateConfig.model_validate({})
        if update.order is None:
            fixed = any(port.host_port for port in self.ports)
            update = update.model_copy(update={"order": UpdateOrder.STOP_FIRST if fixed else UpdateOrder.START_FIRST})
        if len(_CONTROLS) >= 4096:
            _CONTROLS.clear()
        _CONTROLS[id(self)] = (self, update)
        return update

    def template(self) -> dict[str, Any]:
        """What a container is made from: every field but the replica count, the autoscaling policy, the
        rollout controls and the mode (which never changes)."""
        return self.model_dump(mode="json", exclude={"replicas", "scale_policy", "update_config", "mode"})


_CONTROLS: dict[int, tuple[ServiceSpec, UpdateConfig]] = {}  # id(spec) -> (spec, its controls); specs are frozen


class Config(Strict):
    env: Literal["local", "dev", "prod", "development", "production"] = defaults.DEFAULT_ENV  # type: ignore[assignment]
    listen_addr: ListenAddr = defaults.DEFAULT_LISTEN_ADDR
    data_dir: PathText = defaults.DEFAULT_DATA_DIR
    cluster_name: DnsLabel = defaults.DEFAULT_CLUSTER_NAME
    services: list[ServiceSpec] = Field(max_length=MAX_SERVICES)

    @field_validator("listen_addr")
    @classmethod
    def _listen(cls, value: str) -> str:
        if not 1 <= int(value.rpartition(":")[2]) <= 65535:  # ASCII digits: LISTEN_ADDR says so
            raise ValueError(LISTEN_RULE)
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

    @model_validator(mode="after")
    def _stored_size(self) -> Config:
        size = len(pydantic_core.to_json(self.services))
        if size > MAX_SERVICES_BYTES:
            raise ValueError(f"services: must be at most {MAX_SERVICES_BYTES} bytes as JSON, got {size}")
        return self

    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.listen_addr.rpartition(":")
        return host or "0.0.0.0", int(port)


class ConfigError(Exception):
    """A document that parsed but broke rules; `errors` holds every `path: rule` line."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown field",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "string_unicode": "must be valid Unicode (no lone surrogates)",
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
    if kind == "too_long":
        return f"must have at most {ctx['max_length']} items"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters"
    if kind == "string_pattern_mismatch":
        return _pattern_rule(error["input"], ctx["pattern"])
    if kind in ("enum", "literal_error"):
        return f"must be one of {ctx.get('expected', '')}".replace("'", "")
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return _MESSAGES.get(kind, error["msg"][:1].lower() + error["msg"][1:])


def _pattern_rule(text: str, pattern: str) -> str:
    """A string that breaks a pattern: control characters first, whatever else is wrong with it."""
    has_control = {ENV_ITEM: _env_has_control, SCRIPT_TEXT: _script_has_control}.get(pattern, _has_control)
    control = has_control(text)
    if control or pattern in (TEXT, SCRIPT_TEXT):
        return CONTROL_RULE
    if pattern == HTTP_PATH and not text.startswith("/"):
        return "must start with '/'"
    return _PATTERN_RULES.get(pattern, f"must match {pattern}")


def format_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = str(part) if str(part).isprintable() else repr(part)  # an unknown key may hold anything
            path += f".{name}" if path else name
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
    return validate_config(load_yaml(text))

"""Find the Redis a local cluster uses: the one GORCHESTER_REDIS_URL names if it answers, else our own.

Our own requires a password: made once (secrets) and kept in `<dir>/password` (0600), given to
redis-server through a 0600 `<dir>/redis.conf` (never on a command line, where `ps` shows it) and
to the cluster's processes through GORCHESTER_REDIS_PASSWORD_FILE.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Sequence
from pathlib import Path

import redis

from cli.launcher import Child, Launcher
from shared.storage.connection import connect

DEFAULT_PORT = 6379
PASSWORD_FILE = "password"
CONFIG_FILE = "redis.conf"
PRIVATE = 0o600


def answers(url: str) -> bool:
    try:
        return bool(connect(url, timeout=1.0).ping())
    except (redis.RedisError, ValueError, OSError):
        return False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pick_port(requested: int | None) -> int:
    """The requested port as is (a busy one fails loudly later), else 6379 when free, else any free port."""
    if requested is not None:
        return requested
    return DEFAULT_PORT if port_free(DEFAULT_PORT) else free_port()


def write_private(path: Path, text: str) -> None:
    """`text` into `path`, readable and writable by this user only (0600) from its first byte, atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE), "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


def password(directory: Path) -> tuple[str, Path]:
    """The password of the Redis under `directory` and its file: made the first time, then kept.

    The file is set to 0600 each time, so a copy that lost its mode does not stay readable."""
    path = directory / PASSWORD_FILE
    with contextlib.suppress(FileNotFoundError, UnicodeDecodeError):
        os.chmod(path, PRIVATE)
        kept = path.read_text(encoding="utf-8").strip().splitlines()
        if kept and kept[0].strip():
            return kept[0].strip(), path
    made = secrets.token_urlsafe(32)
    write_private(path, made + "\n")
    return made, path


def server_config(directory: Path, secret: str) -> Path:
    """A 0600 redis.conf under `directory` that requires `secret` (read by redis-server at start)."""
    quoted = secret.replace("\\", "\\\\").replace('"', '\\"')
    path = directory / CONFIG_FILE
    write_private(path, f"# written by gorchester from {PASSWORD_FILE}; 0600: it holds the password\n"
                        f'requirepass "{quoted}"\n')
    return path


def server_argv(
    port: int,
    data_dir: Path,
    *,
    persist: bool = True,
    binary: str = "redis-server",
    config: Path | None = None,
    bind: Sequence[str] = ("127.0.0.1",),
) -> list[str]:
    """A redis-server in the foreground on `bind` (loopback; a host bed's control plane adds its
    address on the bed, cli/hostbed.py); with `persist`, an append-only file under `data_dir` (fsync
    every second) that outlives the process; `config` first (redis.conf: the password). Tests and
    benchmarks start theirs from here too."""
    persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if persist else ["--appendonly", "no"]
    return [
        binary,
        *([str(config)] if config is not None else []),
        "--bind", *bind,
        "--port", str(port),
        "--dir", str(data_dir),
        *persistence,
        "--save", "",
        "--daemonize", "no",
        "--logfile", "",
    ]  # fmt: skip


def start_embedded(
    launcher: Launcher, binary: str, data_dir: Path, port: int, bind: Sequence[str] = ("127.0.0.1",)
) -> tuple[Child, str, Path]:
    """A redis-server on `bind` (loopback), requiring the password kept under `data_dir`, whose
    append-only file there outlives the cluster. Returns it, its loopback URL (no password in it) and
    the password file."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret, password_file = password(data_dir)
    argv = server_argv(port, data_dir, binary=binary, config=server_config(data_dir, secret), bind=bind)
    return launcher.start("redis", argv), f"redis://127.0.0.1:{port}/0", password_file


# -- replicated: a master, replicas and three sentinels (`gorchester up --redis-replicas N`) -------------

MASTER_NAME = "gorchester"  # the name the sentinels know the master by (the URL's /MASTER)
SENTINELS = 3
QUORUM = 2
# Sentinel's down-after-milliseconds: a master silent this long is failed over. Measured on this machine
# (a write accepted again ~D + 1.25 s after the master's death): 1000 ms gave a false second failover
# under load, which lost acknowledged writes; 2000 ms answers in ~3.3 s, within the 5 s asked.
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 3000  # a failover that aborts (a split vote, no good replica) is tried again after twice this
# A supervisor (`gorchester up`) starts a data server that died again only after this long: the sentinels
# promote a replica first (about 3.3 s) and the old master comes back as its replica. Started at once,
# it would be the master again before any sentinel saw it down, and no failover would ever be seen.
REJOIN_AFTER = 2 * DOWN_AFTER_MS / 1000 + 1.0


def _quoted(secret: str) -> str:
    return '"' + secret.replace("\\", "\\\\").replace('"', '\\"') + '"'


def replicated_config(directory: Path, secret: str, master: tuple[str, int] | None, announce: str) -> Path:
    """A 0600 redis.conf of one data server of a replicated set: the password (also to its master, as
    any of them may become a replica) and, for a replica, its master. redis-server rewrites this file
    when the sentinels repoint it; it is read again at a restart. No `min-replicas-to-write`: a new
    master would refuse writes until another replica has resynced with it (up to 20 s measured here);
    the API's changes wait for a replica's acknowledgement instead (WAIT, api/context.py)."""
    lines = [
        "# written by gorchester; 0600: it holds the password. The sentinels rewrite `replicaof` here.",
        f"requirepass {_quoted(secret)}",
        f"masterauth {_quoted(secret)}",
        f"replica-announce-ip {announce}",
        "repl-diskless-sync-delay 0",  # a replica that (re)joins is sent the data at once, not after 5 s
    ]
    if master is not None:
        lines.append(f"replicaof {master[0]} {master[1]}")
    path = directory / CONFIG_FILE
    write_private(path, "\n".join(lines) + "\n")
    return path


def sentinel_config(directory: Path, secret: str, port: int, master: tuple[str, int], bind: Sequence[str]) -> Path:
    """A 0600 sentinel.conf: it watches the master, and the sentinel rewrites it as it learns."""
    lines = [
        "# written by gorchester; 0600: it holds the password. The sentinel rewrites it as it learns.",
        f"port {port}",
        f"bind {' '.join(bind)}",
        f"dir {directory}",
        f"requirepass {_quoted(secret)}",
        f"sentinel sentinel-pass {_quoted(secret)}",
        f"sentinel announce-ip {master[0]}",
        f"sentinel monitor {MASTER_NAME} {master[0]} {master[1]} {QUORUM}",
        f"sentinel auth-pass {MASTER_NAME} {_quoted(secret)}",
        f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {MASTER_NAME} 1",
    ]
    path = directory / "sentinel.conf"
    write_private(path, "\n".join(lines) + "\n")
    return path


def settled(sentinels: Sequence[tuple[str, int]], secret: str, replicas: int) -> bool:
    """Every sentinel answers and knows the master up, the other sentinels and `replicas` replicas in sync.
    Only then does the set survive the master's loss: a sentinel learns of replicas from the master's
    INFO, asked every 10 s, and one that does not know a replica neither promotes it nor repoints it to
    the new master (it would stay behind, following the old master when it returns)."""
    for host, port in sentinels:
        try:
            with redis.Redis(host, port, password=secret, decode_responses=True, socket_timeout=2,
                             socket_connect_timeout=2) as sentinel:
                state = sentinel.sentinel_master(MASTER_NAME)
                known = sentinel.sentinel_slaves(MASTER_NAME)
        except (redis.RedisError, OSError):
            return False
        if int(state["num-other-sentinels"]) != len(sentinels) - 1 or "s_down" in state["flags"]:
            return False
        if len(known) != replicas or any(
            replica.get("master-link-status") != "ok" or "s_down" in replica.get("flags", "") for replica in known
        ):
            return False
    return True


def rejoin_after(name: str) -> float:
    """The least wait before a supervisor starts the process `name` of replicated_argvs again."""
    return 0.0 if name.startswith("sentinel-") else REJOIN_AFTER


def replicated_argvs(
    binary: str, data_dir: Path, port: int, replicas: int, bind: Sequence[str] = ("127.0.0.1",)
) -> tuple[dict[str, list[str]], str, Path]:
    """The command lines of a master on `port`, `replicas` replicas and three sentinels (name -> argv, in
    start order), the cluster's URL (`redis+sentinel://`, no password in it) and the password file.
    Every server keeps its append-only file under `data_dir`; the set is made afresh at each start with
    the first server as master (the others copy it)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret, password_file = password(data_dir)
    address = bind[-1]  # where every process, and the servers among themselves, reach a server
    master = (address, port)
    argvs: dict[str, list[str]] = {}
    directory = data_dir
    argvs["redis"] = server_argv(port, directory, binary=binary, bind=bind,
                                 config=replicated_config(directory, secret, None, address))
    for index in range(1, replicas + 1):
        directory = data_dir / f"replica-{index}"
        directory.mkdir(mode=0o700, exist_ok=True)
        config = replicated_config(directory, secret, master, address)
        argvs[f"redis-replica-{index}"] = server_argv(free_port(), directory, binary=binary, bind=bind, config=config)
    sentinel_ports = []
    for index in range(1, SENTINELS + 1):
        directory = data_dir / f"sentinel-{index}"
        directory.mkdir(mode=0o700, exist_ok=True)
        sentinel_port = free_port()
        sentinel_ports.append(sentinel_port)
        config = sentinel_config(directory, secret, sentinel_port, master, bind)
        argvs[f"sentinel-{index}"] = [binary, str(config), "--sentinel", "--daemonize", "no", "--logfile", ""]
    hosts = ",".join(f"{address}:{sentinel_port}" for sentinel_port in sentinel_ports)
    return argvs, f"redis+sentinel://{hosts}/{MASTER_NAME}/0", password_file

"""`gorchester down [--config FILE]`: stop the local cluster `gorchester up` started with that config.

`up` writes its pid to `<data_dir>/gorchester-up.pid` and removes it when it stops; `down` sends
that process SIGTERM (the same orderly stop as Ctrl-C: components, then the cluster's containers,
then Redis) and waits until it has exited. A pidfile whose process is gone, or is not a
`gorchester up`, is stale: it is removed and nothing is signalled.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from cli.arguments import seconds
from cli.configfile import read_config

PIDFILE = "gorchester-up.pid"
DEFAULT_CONFIG = "config.yaml"
DEFAULT_TIMEOUT = 60.0  # up gives each child 10 s, and removes the containers in between
POLL = 0.1


def pidfile_path(data_dir: str | Path) -> Path:
    return Path(data_dir).resolve() / PIDFILE


def write_pidfile(data_dir: str | Path) -> Path:
    path = pidfile_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    return path


def remove_pidfile(path: Path) -> None:
    """Remove the pidfile if it is still this process's (a later `up` may have replaced it)."""
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().split()[0]) == os.getpid():
            path.unlink()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "down", help="stop a local cluster started by `gorchester up`",
        description="Stop the `gorchester up` of FILE's data_dir (SIGTERM) and wait until it has exited.",
    )
    parser.add_argument(
        "-f", "--config", default=DEFAULT_CONFIG, metavar="FILE",
        help=f"the config `up` was given; its data_dir holds the pidfile (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help=f"how long to wait for it to stop (default {DEFAULT_TIMEOUT:g})",
    )
    parser.set_defaults(run=run)


def alive(pid: int) -> bool:
    """Running and not a zombie (an exited child its parent has not reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def is_up_process(pid: int) -> bool:
    """Whether pid runs `gorchester up` (a pid reused by another program must not be signalled)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc to ask: trust the pidfile
    return "up" in [part.decode(errors="replace") for part in argv] and any(b"gorchester" in part for part in argv)


def remove_left_bed(data_dir: str | Path) -> None:
    """The host bed of an `up --hosts` of this data_dir that was killed before it could remove it."""
    from cli.cluster import bed_name
    from cli.hostbed import HostBed, HostBedError

    name = bed_name(Path(data_dir))
    if name in HostBed.existing():
        print(f"removing the host bed {name} a killed `gorchester up` left", flush=True)
        try:
            HostBed.load(name).destroy()
        except HostBedError as exc:
            print(f"could not remove the host bed {name}: {exc}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    config, _ = read_config(args.config)
    path = pidfile_path(config.data_dir)
    try:
        pid = int(path.read_text().split()[0])
    except FileNotFoundError:
        print(f"{config.cluster_name} is not running (no {path})")
        remove_left_bed(config.data_dir)
        return 0
    except (OSError, ValueError, IndexError) as exc:
        print(f"{path}: not a pidfile ({exc}); remove it if no `gorchester up` runs", file=sys.stderr)
        return 1
    if not alive(pid) or not is_up_process(pid):
        with contextlib.suppress(OSError):
            path.unlink()
        print(f"{config.cluster_name} is not running (removed the stale pidfile of pid {pid})")
        remove_left_bed(config.data_dir)
        return 0
    print(f"stopping {config.cluster_name} (gorchester up, pid {pid})...", flush=True)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError:
        print(f"not allowed to signal pid {pid} (started by another user?)", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout
    while alive(pid):
        if time.monotonic() > deadline:
            print(f"pid {pid} still runs after {args.timeout:g}s; see {Path(config.data_dir).resolve() / 'logs'}",
                  file=sys.stderr)
            return 1
        time.sleep(POLL)
    print("stopped", flush=True)
    return 0

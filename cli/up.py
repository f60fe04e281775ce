"""`gorchester up`: a whole cluster on this machine, in the foreground, until Ctrl-C or SIGTERM.

A part that dies before the cluster is up makes up fail; once it is up, a part that dies is started
again (cli/supervision.py) and the cluster's containers keep running.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from types import FrameType

from cli.arguments import port, positive
from cli.cluster import LocalCluster, StartupError, health
from cli.configfile import read_config
from cli.down import remove_pidfile, write_pidfile
from cli.launcher import Launcher

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_INTERVAL = 0.5  # seconds between checks that every child is still alive


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run a local cluster (Redis, API, scheduler, node agents) and apply a config",
        description="Start a local cluster, apply FILE, and stop everything on Ctrl-C or SIGTERM.",
    )
    parser.add_argument("-f", "--config", required=True, metavar="FILE", help="the config.yaml to apply")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--nodes", type=positive, default=2, metavar="N", help="node agents on this machine's engine (default 2)"
    )
    where.add_argument(
        "--hosts", type=positive, metavar="N",
        help="N hosts on this machine instead, each a network namespace with its own Docker engine and "
        "agent (root only), as kind does; the config's images are loaded into each engine",
    )
    parser.add_argument(
        "--redis-port", type=port, metavar="PORT",
        help="port of the embedded redis-server (default 6379 when free, else any free port)",
    )
    parser.add_argument(
        "--redis-replicas", type=positive, metavar="N",
        help="N replicas of the embedded Redis and three sentinels, which fail over to a replica when the "
        "master dies (processes follow through a redis+sentinel:// URL)",
    )
    parser.set_defaults(run=run)


def supervise(launcher: Launcher, stop: threading.Event) -> None:
    """Until stopped: a child that exits is started again after its back-off, never the end of the
    cluster (its containers keep running); each exit is one line on stderr."""
    while not stop.is_set():
        now = time.monotonic()
        for line in launcher.supervise(now):
            print(line, file=sys.stderr, flush=True)
        due = launcher.next_restart()
        stop.wait(POLL_INTERVAL if due is None else min(POLL_INTERVAL, max(due - now, 0.0)))


def run(args: argparse.Namespace) -> int:
    config, text = read_config(args.config)
    stop = threading.Event()
    if args.hosts is not None and os.geteuid() != 0:
        print("--hosts needs root: it makes network namespaces and runs a Docker engine per host", file=sys.stderr)
        return 2
    cluster = LocalCluster(config, args.nodes, args.redis_port, stop, hosts=args.hosts,
                           redis_replicas=args.redis_replicas or 0)
    running = health(cluster.url)
    if running is not None:
        other = running.get("cluster")
        if other not in (None, config.cluster_name):
            print(f"cluster {other} already answers at {cluster.url}; stop it or change listen_addr",
                  file=sys.stderr)
            return 1
        print(f"{config.cluster_name} already running at {cluster.url}")
        return 0

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    pidfile = write_pidfile(config.data_dir)  # for `gorchester down`
    status = 0
    try:
        if args.hosts is not None:
            for line in cluster.start_hosts():
                print(f"warning: {line}", file=sys.stderr, flush=True)
        if not stop.is_set():
            cluster.start_redis()
        if not stop.is_set():
            cluster.start_components()
        if not stop.is_set():
            changes = cluster.apply(text)
            print(f"{config.cluster_name} is up; applied {args.config}: {changes}", flush=True)
            print(f"  API    {cluster.url}", flush=True)
            embedded = " (embedded)" if cluster.embedded_redis else ""
            print(f"  Redis  {cluster.redis_url}{embedded}", flush=True)
            print(f"  Logs   {cluster.log_dir}", flush=True)
            if cluster.bed is not None:
                for host in cluster.bed.all_hosts():
                    print(f"  node-{host.index} {host.name} {host.address} (engine {host.docker_host})", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
        supervise(cluster.launcher, stop)
    except StartupError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        status = 1
    finally:
        for sig in STOP_SIGNALS:  # a second Ctrl-C must not interrupt the orderly stop
            signal.signal(sig, signal.SIG_IGN)
        print(f"stopping {config.cluster_name}...", flush=True)
        for warning in cluster.shutdown():
            print(warning, file=sys.stderr, flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        remove_pidfile(pidfile)
    print("stopped", flush=True)
    return status

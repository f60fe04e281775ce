"""`gorchester agent NODE_ID`: this host's node agent, the same worker `rq worker node-1` runs when
RQ_WORKER_CLASS names worker.agent.NodeAgent (as the install guide's settings file does)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="run this host's node agent",
        description="Run the node agent for NODE_ID against this host's Docker engine until SIGTERM or Ctrl-C "
        "(then it finishes the job at hand). Settings come from GORCHESTER_* variables, as for every process.",
    )
    parser.add_argument("node_id", metavar="NODE_ID", help="this node's id, e.g. node-1 (also its queue's name)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from worker.agent import NodeAgent  # only this command needs the worker and its Docker client

    NodeAgent([args.node_id]).work(logging_level="INFO")
    return 0

"""Docker's event stream turned into task states: exits and removals of this node's containers."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from shared import labels
from shared.records import TaskState
from worker.exits import REMOVED, exit_fields
from worker.loops import repeat
from worker.node import Node

log = logging.getLogger("rq.worker.gorchester")


class EventWatcher:
    def __init__(self, node: Node):
        self.node = node
        self.oom: set[str] = set()  # containers whose `oom` event came before their `die`

    def run(self, stop: threading.Event) -> None:
        """Follow the stream forever; when it breaks (engine restart), reconnect with back-off."""
        repeat(stop, 0.5, self.follow, "docker event stream")

    def follow(self) -> None:
        stream = self.node.engine.events({"type": "container", "label": f"{labels.CLUSTER}={self.node.cluster}"})
        log.info("node %s: following the engine's events", self.node.id)  # again after each break
        for event in stream:
            self.handle(event)

    def handle(self, event: dict[str, Any]) -> None:
        actor = event.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        if attrs.get(labels.NODE) != self.node.id or labels.TASK not in attrs:
            return
        container_id = actor.get("ID", "")
        task_id, gen = attrs[labels.TASK], int(attrs.get(labels.GEN, "0"))
        # The record the container was made for: another record of the slot (made again) is not its.
        incarnation = attrs.get(labels.INCARNATION, "")
        action = event.get("Action", "")
        if action == "oom":
            self.oom.add(container_id)
        elif action == "die":
            state = (self.node.engine.inspect(container_id) or {}).get("State")
            # `docker rm -f` kills first: the die of a container being removed is a removal, not a crash.
            removed = state is None or state.get("Status") == "removing"
            oom = container_id in self.oom or bool(state and state.get("OOMKilled"))
            self.oom.discard(container_id)
            fields = exit_fields(int(attrs.get("exitCode", "-1")), oom=oom, removed=removed)
            self.node.report(task_id, gen, incarnation=incarnation, when=TaskState.RUNNING, **fields)
        elif action == "destroy":
            self.oom.discard(container_id)
            self.node.report(
                task_id, gen, incarnation=incarnation, when=TaskState.RUNNING,
                state=TaskState.FAILED, reason=REMOVED, finished_at=time.time(),
            )

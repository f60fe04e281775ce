"""Whether a change to a service has rolled out, judged from its view (`GET /v1/services`), as
`kubectl rollout status` judges a Deployment. Pure: the views in, a verdict out.

A service a change created, or changed without a new template (its replicas), is rolled out when it
runs its desired replicas, all healthy. One whose template changed rolls out that version in a
rolling update (the view's `update`): not before the update completes, and never when it is rolled
back. A service the change deleted is rolled out once it is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    name: str
    done: bool
    progress: str  # `web updating 1/3`, `web 2/3 running, 1 healthy`
    failure: str | None = None  # why it will not roll out without another change

    @property
    def line(self) -> str:
        return f"{self.name}: {self.failure}" if self.failure else self.progress


def verdict(name: str, view: dict[str, Any] | None, version: int | None) -> Verdict:
    """The rollout of `version` of service `name` (None: the change deleted it), from its view (None:
    no such service)."""
    if version is None:
        return Verdict(name, view is None, f"{name} deleted" if view is None else f"{name} deleting")
    if view is None:
        return Verdict(name, False, f"{name} gone", "deleted while rolling out")
    status = view["status"]
    if status["health"] == "failed":
        return Verdict(name, False, f"{name} failed", f"failed: {status['reason']}")
    update = view.get("update")
    if update is not None and update["version"] >= version:
        if update["state"] == "rolled_back":
            return Verdict(name, False, f"{name} rolled back", f"rolled back: {update['reason']}")
        if update["state"] == "updating":
            return Verdict(name, False, f"{name} updating {update['updated_replicas']}/{update['total']}")
    desired, running, healthy = status["desired_replicas"], status["running_replicas"], status["healthy_replicas"]
    done = running == desired and healthy == desired
    return Verdict(name, done, f"{name} {running}/{desired} running" + ("" if healthy == running else
                                                                          f", {healthy} healthy"))

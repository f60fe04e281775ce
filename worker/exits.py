"""What a finished container means for its task: the state and reason an exit is reported as."""

from __future__ import annotations

import time
from typing import Any

from shared.records import TaskState

REMOVED = "container removed"


def exit_fields(exit_code: int, *, oom: bool = False, removed: bool = False) -> dict[str, Any]:
    """Task fields for an exit; a clean exit is STOPPED, anything else (or removal, or OOM) FAILED."""
    if removed:
        reason = REMOVED
    elif oom:
        reason = "OOM killed"
    else:
        reason = f"exited with code {exit_code}"
    clean = exit_code == 0 and not (oom or removed)
    return {
        "state": TaskState.STOPPED if clean else TaskState.FAILED,
        "exit_code": exit_code,
        "reason": reason,
        "finished_at": time.time(),
    }
